"""The ``lxmert`` command line.

Every module in this package that defines ``register(subparsers)`` contributes subcommands;
they are discovered at start-up so that each feature owns its own CLI file and none of them
edits a shared table. Subcommands stay thin: parse, call the public API (`lxmert.api` and
the feature packages), report. Building the parser imports no torch: the commands import
what they need when they run.

Errors a user can cause (the package's own error types, bad values, missing or unwritable
files, an allocation a flag made too large) print as one line naming the file, key or
value and exit 1; `--debug` shows the traceback. A run stopped by SIGTERM / SIGINT exits
128 + the signal number after its checkpoint; a closed stdout (`| head`) is not an error.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import logging
import os
import pkgutil
import sys
from typing import Sequence

from lxmert import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lxmert", allow_abbrev=False,
        description="LXMERT: cross-modality encoder representations from transformers "
                    "(Tan & Bansal, 2019). `lxmert COMMAND --help` describes each command.",
    )
    parser.add_argument("--version", action="version", version=f"lxmert {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    for command in subparsers.choices.values():
        # flags only as documented: `--random-init` must not silently mean `--random-init-detector`
        command.allow_abbrev = False
        with contextlib.suppress(argparse.ArgumentError):  # every command takes --debug; some declare it
            command.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def _describe(err: BaseException) -> str:
    """One line for an error a user can act on: the message, or for an OSError the path
    and the reason ("no space left on device", "read-only file system", ...)."""
    if isinstance(err, OSError) and err.errno is not None and err.filename is not None:
        reason = "no space left on device" if err.errno == errno.ENOSPC else os.strerror(err.errno)
        where = f"{err.filename} -> {err.filename2}" if err.filename2 else str(err.filename)
        return f"{where}: {reason}"
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    text = "; ".join(line.strip() for line in text.splitlines() if line.strip()) or type(err).__name__
    return f"out of memory: {text}" if isinstance(err, MemoryError) else text


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from lxmert.errors import LxmertError, NonFiniteLossError

    # the package's warnings (dropped answers, fresh heads, fallbacks) as readable lines
    logging.basicConfig(level=logging.WARNING, format="lxmert: %(levelname)s: %(message)s")

    # MemoryError: numpy's "Unable to allocate 59.6 GiB for an array with shape ..." from a
    # size a flag asked for is the user's to fix, like a bad value
    handled = (LxmertError, ValueError, KeyError, OSError, NonFiniteLossError, MemoryError)
    try:
        result = args.func(args)
        sys.stdout.flush()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of our stdout went away (`lxmert inspect X | head`): not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except handled as err:
        if getattr(args, "debug", False):
            raise
        print(f"lxmert {args.command}: error: {_describe(err)}", file=sys.stderr)
        signum = getattr(err, "signum", None)
        return 128 + signum if isinstance(signum, int) else 1
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
