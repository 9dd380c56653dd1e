"""The HTTP face of `VQAService`: a Starlette app with a JSON API and the web page.

Starlette (ASGI) under uvicorn rather than a hand-written `http.server`: request parsing,
multipart uploads (python-multipart), keep-alive, slow or vanished clients and
concurrency are solved problems there, tested by many users; what is ours is only the
routes below.

    GET  /                      the web page (static/index.html; assets under /static/)
    GET  /healthz               liveness: the process answers HTTP
    GET  /readyz                readiness: model warmed up and batcher running (503 otherwise)
    GET  /api/model             task, model class and config, answers, store, detector, limits
    GET  /api/images            the store images the page offers ({"kind", "images": [...]})
    GET  /api/images/{id}/picture   that image's picture (PNG/JPEG), 404 when it has none
    POST /api/vqa               answer: JSON {"image_id", "question", "top_k"} or multipart
                                form with an "image" file (or "image_id"), "question", "top_k"
    GET  /api/stats             batch sizes formed, outcomes, queue depths, memory, open files

Errors are JSON `{"error": {"code", "message"}}` with a 4xx status for a bad request
(400 bad value, 404 unknown image id or route, 405, 413 too large, 415 not an image or
unsupported body) and 503 when busy; an internal error is a 500 in the same shape, and
the server keeps running.
"""

from __future__ import annotations

import contextlib
import json
import logging
from importlib import resources
from pathlib import Path
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from lxmert.serve.limits import RequestError, check_question, parse_top_k
from lxmert.serve.service import VQAService

__all__ = ["create_app", "static_dir"]

logger = logging.getLogger(__name__)

#: bytes past the upload limit that are still read (and dropped) before answering 413, so
#: that a client which sends its whole body before reading (most do) sees the answer
#: instead of a reset connection; a larger body is cut off
DRAIN_BYTES = 64 * 1024 * 1024
#: bytes of one non-file form field
FIELD_BYTES = 64 * 1024


def static_dir() -> Path:
    """The page's files, shipped as package data (lxmert/serve/static)."""
    return Path(str(resources.files("lxmert.serve") / "static"))


def create_app(service: VQAService) -> Starlette:
    """The ASGI app over `service`; its lifespan starts and stops the service."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            service.stop()

    page = (static_dir() / "index.html").read_text(encoding="utf-8")

    async def index(request: Request) -> Response:
        return HTMLResponse(page)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if service.ready:
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False, "error": {"code": "not_ready", "message": "starting or stopping"}},
                            status_code=503)

    async def model_info(request: Request) -> Response:
        return JSONResponse(service.info())

    async def images(request: Request) -> Response:
        catalog = service.catalog
        return JSONResponse({"kind": catalog.kind, "images": catalog.entries(),
                             "total": len(catalog.store) if catalog.store is not None else 0})

    async def picture(request: Request) -> Response:
        img_id = request.path_params["img_id"]
        found = await run_in_threadpool(service.catalog.picture, img_id)
        if found is None:
            raise RequestError(404, "no_picture", f"image id {img_id!r} has no picture on this server")
        data, media_type = found
        return Response(data, media_type=media_type, headers={"Cache-Control": "max-age=3600"})

    async def vqa(request: Request) -> Response:
        fields, upload = await read_fields(request, service)
        question = check_question(fields.get("question"), service.limits)
        top_k = parse_top_k(fields.get("top_k"), service.limits)
        image_id = fields.get("image_id")
        if image_id is not None and not isinstance(image_id, str):
            raise RequestError(400, "bad_image_id", f"image_id must be a string, got {type(image_id).__name__}")
        if image_id == "":
            image_id = None
        result = await service.answer(question, top_k=top_k, image_id=image_id, upload=upload)
        service.count("answered")
        return JSONResponse(result)

    async def stats(request: Request) -> Response:
        return JSONResponse(service.stats())

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestError)
        service.count(exc.code)
        return JSONResponse(exc.to_json(), status_code=exc.status)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        service.count(code)
        return JSONResponse({"error": {"code": code, "message": str(exc.detail)}}, status_code=exc.status_code,
                            headers=exc.headers)

    async def internal_error(request: Request, exc: Exception) -> Response:
        service.count("internal_error")
        logger.error("internal error on %s %s: %r", request.method, request.url.path, exc)
        return JSONResponse({"error": {"code": "internal_error", "message": "internal error (see the server's log)"}},
                            status_code=500)

    routes = [
        Route("/", index),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/api/model", model_info),
        Route("/api/images", images),
        Route("/api/images/{img_id:str}/picture", picture),
        Route("/api/vqa", vqa, methods=["POST"]),
        Route("/api/stats", stats),
        Mount("/static", StaticFiles(directory=static_dir()), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={RequestError: refused, HTTPException: http_error, Exception: internal_error})


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, at most `limit` bytes (RequestError 413 past it)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit + DRAIN_BYTES:
        raise RequestError(413, "upload_too_large", f"the request has {int(declared)} bytes; at most {limit} "
                                                    f"are accepted")
    body = bytearray()
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total <= limit:
                body += chunk
            elif total > limit + DRAIN_BYTES:
                break
    except ClientDisconnect:  # nobody is left to answer; not a server error
        raise RequestError(400, "client_disconnected", "the client went away before sending the whole request") \
            from None
    if total > limit:
        raise RequestError(413, "upload_too_large", f"the request has {'over ' if total > limit + DRAIN_BYTES else ''}"
                                                    f"{total} bytes; at most {limit} are accepted")
    return bytes(body)


async def read_fields(request: Request, service: VQAService) -> tuple[dict[str, Any], bytes | None]:
    """(the fields of a JSON or multipart request, the bytes of its uploaded "image" file or None)."""
    body = await read_body(request, service.limits.max_upload_bytes)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RequestError(400, "bad_json", f"the body is not valid JSON ({err})") from None
        if not isinstance(data, dict):
            raise RequestError(400, "bad_json", 'the JSON body must be an object {"question": ..., "image_id": ...}')
        if "image" in data:
            raise RequestError(400, "bad_json", "send an image file as multipart/form-data; JSON takes an 'image_id'")
        return data, None
    if content_type != "multipart/form-data":
        raise RequestError(415, "unsupported_media_type",
                           f"send application/json or multipart/form-data, not {content_type or 'no content type'}")
    sent = False

    async def replay() -> dict[str, Any]:  # the body already read, for the form parser
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    fields: dict[str, Any] = {}
    upload: bytes | None = None
    async with Request(request.scope, replay).form(max_files=1, max_fields=8, max_part_size=FIELD_BYTES) as form:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key != "image":
                    raise RequestError(400, "unexpected_file", f"unexpected file field {key!r}; send the picture "
                                                               f"as 'image'")
                upload = await value.read()
            elif key == "image":
                raise RequestError(400, "missing_image", "the 'image' field is not a file")
            else:
                fields[key] = value
    return fields, upload
