"""`lxmert serve`: an HTTP JSON API and a web page over `lxmert.pipeline("vqa")`.

One concept per module (imports point down this list):

- `limits`: what a request may be (sizes, dimensions, lengths) and `RequestError`;
- `batching`: `DynamicBatcher`, concurrent requests answered by one forward;
- `catalog`: the store images the page offers and their pictures;
- `service`: `VQAService`, a question's path (regions -> batcher -> answers), no HTTP;
- `app`: the Starlette app (routes, request parsing, JSON errors) and the static page;
- `server`: uvicorn, in the foreground or a background thread.

Needs the `serve` extra (`pip install 'lxmert[serve]'`: Starlette, uvicorn,
python-multipart); `limits`, `batching`, `catalog` and `service` import without it. The
names below are imported on first use. See docs/serving.md.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Limits": "lxmert.serve.limits",
    "RequestError": "lxmert.serve.limits",
    "DynamicBatcher": "lxmert.serve.batching",
    "ImageCatalog": "lxmert.serve.catalog",
    "VQAService": "lxmert.serve.service",
    "create_app": "lxmert.serve.app",
    "run_server": "lxmert.serve.server",
    "BackgroundServer": "lxmert.serve.server",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lxmert.serve' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
