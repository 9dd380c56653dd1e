"""Shared set-up of the pipeline and server tests: a small world with pictures, tiny
random models saved as checkpoints, a tiny random detector, and HTTP helpers over
loopback (stdlib only, so the API tests see exactly the bytes a client sends)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import uuid
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import numpy as np
import torch
from PIL import Image

from support.world import FEAT_DIM, make_world

from lxmert import LxmertConfig, LxmertForNLVR2, LxmertForPreTraining, LxmertForQuestionAnswering
from lxmert.detector import DetectorConfig


def world_with_pictures(root: Path) -> Path:
    """40 images (8 test images, pictured), 16-d features, a store."""
    return make_world(root, images=40, seed=5, pictures="test")


def store_of(world: Path) -> Path:
    return world / "features" / "store"


def world_answers(world: Path) -> list[str]:
    return json.loads((world / "vqa" / "trainval_label2ans.json").read_text())


def tiny_config(**overrides: Any) -> LxmertConfig:
    # a wide init range: a random head then answers differently for different inputs,
    # so comparisons of answers between two paths are not met by a constant answer
    base = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, l_layers=1, x_layers=1, r_layers=1,
                visual_feat_dim=FEAT_DIM, initializer_range=0.3, hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0)
    base.update(overrides)
    return LxmertConfig(**base)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Random weights that are the same in every run, whichever test builds them first
    (module fixtures run before the per-test seeding), leaving the global RNG as it was."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield


def save_qa(out: Path, answers: list[str], world: Path | None = None, seed: int = 5, **overrides: Any) -> Path:
    """A random QA checkpoint naming `answers` (with the world's vocab.txt, as training saves it).
    With the default seed its top answers differ between the world's test questions and
    are nowhere near a tie (many random heads answer everything alike)."""
    with seeded(seed):
        model = LxmertForQuestionAnswering(tiny_config(num_qa_labels=len(answers), **overrides), answers=answers)
    model.save_pretrained(out)
    if world is not None:
        shutil.copy(world / "vocab.txt", out / "vocab.txt")
    return out


def save_nlvr2(out: Path, world: Path, seed: int = 1) -> Path:
    """A random NLVR2 checkpoint; with the default seed it says True of some test pairs
    and False of others."""
    with seeded(seed):
        model = LxmertForNLVR2(tiny_config())
    model.save_pretrained(out)
    shutil.copy(world / "vocab.txt", out / "vocab.txt")
    return out


def save_pretraining(out: Path, world: Path, seed: int = 0) -> Path:
    with seeded(seed):
        model = LxmertForPreTraining(tiny_config(num_object_labels=1600, num_attr_labels=400, task_qa=False))
    model.save_pretrained(out)
    shutil.copy(world / "vocab.txt", out / "vocab.txt")
    return out


def tiny_detector_config(path: Path) -> Path:
    """A small random-weight detector (2048-d features, like the real one) that runs in
    well under a second per image on a CPU."""
    DetectorConfig(blocks=(1, 1, 1, 1), min_size=128, max_size=200, rpn_post_nms_topk=80,
                   pooler_resolution=4).save(path)
    return path


def picture(height: int = 90, width: int = 120, seed: int = 0) -> np.ndarray:
    rng = np.random.RandomState(seed)
    small = (rng.rand(height // 8 + 1, width // 8 + 1, 3) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.NEAREST))


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


# ------------------------------------------------------------------------------ HTTP
def request(url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None,
            timeout: float = 60.0) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request on a fresh connection."""
    parts = urlsplit(url)
    conn = HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body,
                     headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def get_json(url: str) -> tuple[int, Any]:
    status, _, body = request(url)
    return status, json.loads(body)


def post_json(url: str, payload: Any) -> tuple[int, Any]:
    status, _, body = request(url, "POST", json.dumps(payload).encode(), {"Content-Type": "application/json"})
    return status, json.loads(body)


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    """A multipart/form-data body as a browser's FormData sends it: (body, content type)."""
    boundary = f"----lxmert{uuid.uuid4().hex}"
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data, media_type) in files.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                  f'Content-Type: {media_type}\r\n\r\n'.encode())
        out.write(data)
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def post_upload(url: str, data: bytes, question: str = "what color is the ball?", filename: str = "photo.png",
                media_type: str = "image/png", **fields: str) -> tuple[int, Any]:
    body, content_type = multipart({"question": question, **fields}, {"image": (filename, data, media_type)})
    status, _, raw = request(url, "POST", body, {"Content-Type": content_type})
    return status, json.loads(raw)
