"""The server and its page work from a wheel: the static files are package data, and
`lxmert serve` run from an installed wheel (not from src/) serves the page and answers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the 'serve' extra is not installed")

from support.serving import get_json, post_json, request, save_qa, store_of, world_answers, world_with_pictures

REPO = Path(__file__).resolve().parents[2]
PAGE_FILES = {"lxmert/serve/static/index.html", "lxmert/serve/static/app.js", "lxmert/serve/static/style.css"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, list[str]]:
    """`pip wheel` of a copy of the source (the checkout stays untouched), installed into
    a folder of its own: (that folder, the wheel's file names)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # no network and no build isolation: the test environment's setuptools builds it
    subprocess.run([*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(root / "dist")], check=True, timeout=300, capture_output=True)
    wheel = next((root / "dist").glob("lxmert-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    target = root / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)], check=True,
                   timeout=300, capture_output=True)
    return target, names


def test_the_wheel_carries_the_page(installed):
    _, names = installed
    assert PAGE_FILES <= set(names)
    assert {"lxmert/pipeline.py", "lxmert/serve/app.py", "lxmert/cli/serve.py"} <= set(names)
    assert not any(n.endswith(".map") or "node_modules" in n for n in names)


def test_serve_from_the_installed_wheel(installed, tmp_path):
    target, _ = installed
    world = world_with_pictures(tmp_path)
    qa = save_qa(tmp_path / "qa", world_answers(world), world)
    env = {**os.environ, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1"}
    where = subprocess.run([sys.executable, "-c", "import lxmert; print(lxmert.__file__)"], env=env,
                           capture_output=True, text=True, check=True, cwd=tmp_path)
    assert where.stdout.strip().startswith(str(target))  # the wheel's copy, not src/
    with __import__("socket").socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "lxmert", "serve", "--model", str(qa), "--features",
                             str(store_of(world)), "--port", str(port), "--log-level", "warning"],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                if get_json(f"{url}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.2)
        status, _, page = request(f"{url}/")
        assert status == 200 and b"Ask LXMERT about an image" in page
        for name in ("app.js", "style.css"):
            status, _, body = request(f"{url}/static/{name}")
            assert status == 200 and body == (target / "lxmert" / "serve" / "static" / name).read_bytes()
        status, body = post_json(f"{url}/api/vqa", {"image_id": "synth_test_000000", "question": "is there a ball?"})
        assert status == 200 and len(body["answers"]) == 5
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
