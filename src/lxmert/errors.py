"""The package's own error types.

Every error a user can cause with a file, a flag or a recipe is one of these (or an
OSError naming the path), with a message that names the file, line or key. The command
line prints such errors as one line and exits 1; anything else is a bug and keeps its
traceback. Each type also derives from the builtin a caller would expect (ValueError for
bad content, FloatingPointError for a diverged loss), so `except ValueError` keeps working.
"""

from __future__ import annotations

__all__ = ["LxmertError", "DataFormatError", "CheckpointError", "RecipeError", "NonFiniteLossError"]


class LxmertError(Exception):
    """Base of the errors a user's input or environment can cause (not bugs)."""


class DataFormatError(LxmertError, ValueError):
    """A data file that does not follow its format; the message names the file and entry."""


class CheckpointError(LxmertError, ValueError):
    """A checkpoint that cannot be read or does not fit the model (names keys and shapes)."""


class RecipeError(LxmertError, ValueError):
    """A recipe (TOML file or `--set` override) with an unknown key or a bad value."""


class NonFiniteLossError(LxmertError, FloatingPointError):
    """The training loss became NaN or Inf; the message names the step and the last checkpoint."""
