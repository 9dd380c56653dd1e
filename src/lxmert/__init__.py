"""lxmert: LXMERT (Tan & Bansal, 2019), faithful to the release, fast, and complete.

The public names are imported lazily, so `import lxmert.features` (or a CLI command that
only touches feature files) does not pay for importing torch and the models.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "LxmertConfig": "lxmert.config",
    "LxmertModel": "lxmert.modeling",
    "LxmertPreTrainedModel": "lxmert.modeling",
    "LxmertForPreTraining": "lxmert.modeling",
    "LxmertForQuestionAnswering": "lxmert.modeling",
    "LxmertForNLVR2": "lxmert.modeling",
    "LxmertForClassification": "lxmert.modeling",
    "LxmertTokenizer": "lxmert.text",
    "AnswerTable": "lxmert.text",
    "normalize_answer": "lxmert.text",
    "pipeline": "lxmert.pipeline",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lxmert' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
