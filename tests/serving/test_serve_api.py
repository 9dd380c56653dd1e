"""`lxmert serve` over loopback: a real uvicorn server (background thread, or the CLI in a
subprocess), good requests answered as the pipeline answers them, every bad input a
clear JSON 4xx, overload refused and never lost, nothing leaked, nothing crashed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.client import HTTPConnection

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the 'serve' extra (starlette, uvicorn, python-multipart) is not installed")
pytest.importorskip("uvicorn", reason="the 'serve' extra is not installed")
pytest.importorskip("multipart", reason="the 'serve' extra (python-multipart) is not installed")

from support.serving import (get_json, multipart, picture, png_bytes, post_json, post_upload, request, save_qa,
                          store_of, tiny_detector_config, world_answers)

from lxmert.pipeline import VQAPipeline, pipeline
from lxmert.serve.limits import Limits
from lxmert.serve.server import BackgroundServer
from lxmert.serve.service import VQAService

UPLOAD_LIMIT = 200 * 1024


@pytest.fixture(scope="module")
def store_pipe(qa, world) -> VQAPipeline:
    pipe = pipeline("vqa", model=qa, features=store_of(world))
    assert isinstance(pipe, VQAPipeline)
    return pipe


@pytest.fixture(scope="module")
def store_server(store_pipe):
    """Store ids only (no detector); a bounded wait long enough that concurrent requests meet."""
    service = VQAService(store_pipe, max_batch=8, max_wait_s=0.05, max_queue=64)
    with BackgroundServer(service) as server:
        yield server


@pytest.fixture(scope="module")
def detector_pipe(tmp_path_factory) -> VQAPipeline:
    root = tmp_path_factory.mktemp("serve-detector")
    qa = save_qa(root / "qa", ["yes", "no", "red", "two", "ball"], visual_feat_dim=2048)
    pipe = pipeline("vqa", model=qa, detector_config=tiny_detector_config(root / "det.json"), random_init_detector=True)
    assert isinstance(pipe, VQAPipeline)
    return pipe


@pytest.fixture(scope="module")
def detector_server(detector_pipe):
    """Uploads only (random tiny detector), with a small upload limit."""
    service = VQAService(detector_pipe, limits=Limits(max_upload_bytes=UPLOAD_LIMIT), detector_workers=2)
    with BackgroundServer(service) as server:
        yield server


# ------------------------------------------------------------------------------ good requests
def test_health_readiness_and_descriptions(store_server, world):
    url = store_server.url
    assert get_json(f"{url}/healthz") == (200, {"status": "ok"})
    assert get_json(f"{url}/readyz") == (200, {"ready": True})
    status, info = get_json(f"{url}/api/model")
    assert status == 200 and info["task"] == "vqa" and info["answers"] == world_answers(world)
    assert info["model"]["class"] == "LxmertForQuestionAnswering" and info["model"]["config"]["hidden_size"] == 32
    assert info["features"]["images"] == 40 and info["detector"] is None and info["images"] == "world"
    assert info["limits"]["max_question_chars"] == 200
    status, listing = get_json(f"{url}/api/images")
    assert status == 200 and listing["kind"] == "world" and listing["total"] == 40
    first = listing["images"][0]
    status, headers, body = request(f"{url}/api/images/{first['id']}/picture")
    assert status == 200 and headers["content-type"] == "image/png"
    assert body == (world / "images" / f"{first['id']}.png").read_bytes()
    status, headers, page = request(f"{url}/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'src="/static/app.js"' in page and b"cdn" not in page.lower()
    for name, media in (("app.js", "javascript"), ("style.css", "text/css")):
        status, headers, _ = request(f"{url}/static/{name}")
        assert status == 200 and media in headers["content-type"]


def test_a_store_question_is_answered_as_the_pipeline_answers_it(store_server, store_pipe):
    question = "what color is the ball?"
    status, got = post_json(f"{store_server.url}/api/vqa",
                            {"image_id": "synth_test_000003", "question": question, "top_k": 3})
    assert status == 200
    expected = store_pipe("synth_test_000003", question, top_k=3, return_attention=True)
    assert [a["answer"] for a in got["answers"]] == [a["answer"] for a in expected["answers"]]
    np.testing.assert_allclose([a["score"] for a in got["answers"]], [a["score"] for a in expected["answers"]],
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["attention"], expected["attention"], rtol=1e-4, atol=1e-6)
    assert got["boxes"] == expected["boxes"] and got["image_size"] == expected["image_size"]
    assert got["source"] == "store" and got["batch_size"] >= 1
    assert set(got["timing_ms"]) == {"detector", "queue", "model", "total"}
    # the same question as a multipart form (what the page's upload form sends, with an id)
    body, content_type = multipart({"image_id": "synth_test_000003", "question": question, "top_k": "3"}, {})
    status, _, raw = request(f"{store_server.url}/api/vqa", "POST", body, {"Content-Type": content_type})
    assert status == 200 and json.loads(raw)["answers"] == got["answers"]


def test_an_upload_is_answered_as_the_pipeline_answers_its_pixels(detector_server, detector_pipe):
    array = picture(96, 128, seed=4)
    status, got = post_upload(f"{detector_server.url}/api/vqa", png_bytes(array), "is there a ball?", top_k="2")
    assert status == 200, got
    expected = detector_pipe(array, "is there a ball?", top_k=2, return_attention=True)
    assert [a["answer"] for a in got["answers"]] == [a["answer"] for a in expected["answers"]]
    np.testing.assert_allclose(got["boxes"], expected["boxes"], rtol=1e-5, atol=1e-3)
    assert got["source"] == "detector" and got["image_size"] == [96, 128] and len(got["attention"]) == 36
    assert got["timing_ms"]["detector"] > 0


# ------------------------------------------------------------------------------ bad requests
def _json_body(payload) -> tuple[bytes, dict]:
    return json.dumps(payload).encode(), {"Content-Type": "application/json"}


def _upload(data: bytes, question: str = "what is it?", **fields) -> tuple[bytes, dict]:
    body, content_type = multipart({"question": question, **fields}, {"image": ("photo.png", data, "image/png")})
    return body, {"Content-Type": content_type}


def _png(height: int, width: int) -> bytes:
    return png_bytes(np.zeros((height, width, 3), dtype=np.uint8))


GOOD_ID = "synth_test_000001"
BAD_REQUESTS = [
    # (server, method, path, body + headers, status, code)
    ("store", "POST", "/api/vqa", _json_body({"image_id": GOOD_ID, "question": "  "}), 400, "empty_question"),
    ("store", "POST", "/api/vqa", _json_body({"image_id": GOOD_ID}), 400, "missing_question"),
    ("store", "POST", "/api/vqa", _json_body({"image_id": GOOD_ID, "question": 3}), 400, "bad_question"),
    ("store", "POST", "/api/vqa", _json_body({"image_id": GOOD_ID, "question": "w" * 201}), 400, "question_too_long"),
    ("store", "POST", "/api/vqa", _json_body({"image_id": "synth_test_999999", "question": "q?"}), 404,
     "unknown_image_id"),
    ("store", "POST", "/api/vqa", _json_body({"image_id": 17, "question": "q?"}), 400, "bad_image_id"),
    ("store", "POST", "/api/vqa", _json_body({"question": "q?"}), 400, "missing_image"),
    ("store", "POST", "/api/vqa", _json_body({"image_id": GOOD_ID, "question": "q?", "top_k": 0}), 400, "bad_top_k"),
    ("store", "POST", "/api/vqa", _json_body({"image_id": GOOD_ID, "question": "q?", "top_k": "many"}), 400,
     "bad_top_k"),
    ("store", "POST", "/api/vqa", _json_body([GOOD_ID, "q?"]), 400, "bad_json"),
    ("store", "POST", "/api/vqa", _json_body({"image": "base64...", "question": "q?"}), 400, "bad_json"),
    ("store", "POST", "/api/vqa", (b"{not json", {"Content-Type": "application/json"}), 400, "bad_json"),
    ("store", "POST", "/api/vqa", (b"question=q", {"Content-Type": "text/plain"}), 415, "unsupported_media_type"),
    ("store", "POST", "/api/vqa", (b"", {}), 415, "unsupported_media_type"),
    ("store", "POST", "/api/vqa", _upload(_png(64, 64)), 400, "no_detector"),
    ("store", "POST", "/api/vqa", (b"--x\r\nContent-Disposition: form-data\r\n\r\nq\r\n--x--\r\n",  # no name
                                   {"Content-Type": "multipart/form-data; boundary=x"}), 400, "bad_request"),
    ("store", "GET", "/api/vqa", (None, {}), 405, "method_not_allowed"),
    ("store", "GET", "/api/nothing", (None, {}), 404, "not_found"),
    ("store", "GET", "/api/images/synth_test_999999/picture", (None, {}), 404, "no_picture"),
    ("detector", "POST", "/api/vqa", _upload(b"no pixels here, just text\n" * 20), 415, "not_an_image"),
    ("detector", "POST", "/api/vqa", _upload(b""), 400, "empty_image"),
    ("detector", "POST", "/api/vqa", _upload(png_bytes(picture(64, 64))[:300]), 400, "bad_image"),  # truncated
    ("detector", "POST", "/api/vqa", _upload(png_bytes(np.zeros((5000, 5000, 3), np.uint8))), 413,
     "image_too_large"),
    ("detector", "POST", "/api/vqa", _upload(_png(8, 64)), 400, "image_too_small"),
    ("detector", "POST", "/api/vqa", _upload(_png(20, 400)), 400, "bad_aspect_ratio"),
    ("detector", "POST", "/api/vqa", _upload(os.urandom(UPLOAD_LIMIT + 1)), 413, "upload_too_large"),
    ("detector", "POST", "/api/vqa", _upload(_png(64, 64), question=""), 400, "empty_question"),
    ("detector", "POST", "/api/vqa", _upload(_png(64, 64), image_id=GOOD_ID), 400, "ambiguous_image"),
    ("detector", "POST", "/api/vqa", _json_body({"image_id": GOOD_ID, "question": "q?"}), 400, "no_feature_store"),
]


@pytest.mark.parametrize("server_name, method, path, payload, status, code", BAD_REQUESTS,
                         ids=[f"{r[0]}-{r[5]}-{i}" for i, r in enumerate(BAD_REQUESTS)])
def test_bad_requests_get_a_clear_json_error(request_fixture, server_name, method, path, payload, status, code):
    server = request_fixture(f"{server_name}_server")
    body, headers = payload
    got_status, got_headers, raw = request(server.url + path, method, body, headers)
    assert got_status == status, raw
    assert got_headers["content-type"] == "application/json"
    error = json.loads(raw)["error"]
    assert error["code"] == code and error["message"] and "\n" not in error["message"]
    assert "Traceback" not in error["message"]


@pytest.fixture()
def request_fixture(request):
    return request.getfixturevalue


def test_a_chunked_upload_past_the_limit_is_cut_off(detector_server):
    """No Content-Length to check up front: the limit holds while reading."""
    conn = HTTPConnection("127.0.0.1", detector_server.port, timeout=60)
    try:
        conn.putrequest("POST", "/api/vqa")
        conn.putheader("Content-Type", "multipart/form-data; boundary=xyz")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        chunk = b"a" * 32768
        for _ in range((UPLOAD_LIMIT // len(chunk)) + 4):
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.send(b"0\r\n\r\n")
        response = conn.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["error"]["code"] == "upload_too_large"
    finally:
        conn.close()


def test_bad_inputs_crash_nothing_and_leak_nothing(store_server, detector_server):
    """Rounds of every kind of bad input: the process keeps its open files, threads and
    (roughly) its memory, and still answers."""
    bad_store = [r for r in BAD_REQUESTS if r[0] == "store"] + [
        ("store", "POST", "/api/vqa", _upload(os.urandom(2 * 1024 * 1024)), 400, "no_detector")]  # spooled to disk
    bad_detector = [r for r in BAD_REQUESTS if r[0] == "detector" and r[5] != "image_too_large"]
    for server, cases in ((store_server, bad_store), (detector_server, bad_detector)):
        _, before = get_json(f"{server.url}/api/stats")
        for _ in range(6):
            for _, method, path, (body, headers), status, _ in cases:
                assert request(server.url + path, method, body, headers)[0] == status
        _, after = get_json(f"{server.url}/api/stats")
        p0, p1 = before["process"], after["process"]
        assert p1["open_files"] <= p0["open_files"] + 2, (p0, p1)
        assert p1["threads"] <= p0["threads"] + 2, (p0, p1)
        assert p1["rss_bytes"] < p0["rss_bytes"] + 80 * 1024 * 1024, (p0, p1)
    assert post_json(f"{store_server.url}/api/vqa", {"image_id": GOOD_ID, "question": "is there a ball?"})[0] == 200
    assert post_upload(f"{detector_server.url}/api/vqa", _png(64, 64))[0] == 200
    assert get_json(f"{store_server.url}/readyz")[0] == 200


# ------------------------------------------------------------------------------ load
def _concurrently(n: int, call) -> list:
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def worker(i: int) -> None:
        barrier.wait(10)
        results[i] = call(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_concurrent_questions_are_batched_into_one_forward(store_server, store_pipe):
    ids = [f"synth_test_{i:06d}" for i in range(8)]
    questions = ["what color is the ball?", "is there a cube?", "how many objects are there?"]
    cases = [(ids[i % len(ids)], questions[i % len(questions)]) for i in range(24)]
    expected = [store_pipe(img, q, top_k=2) for img, q in cases]
    _, before = get_json(f"{store_server.url}/api/stats")
    got = _concurrently(len(cases), lambda i: post_json(f"{store_server.url}/api/vqa",
                                                        {"image_id": cases[i][0], "question": cases[i][1],
                                                         "top_k": 2}))
    assert all(status == 200 for status, _ in got)
    for (_, body), want in zip(got, expected):
        assert [a["answer"] for a in body["answers"]] == [a["answer"] for a in want]
    _, after = get_json(f"{store_server.url}/api/stats")
    sizes = {int(k): v - before["batcher"]["batch_sizes"].get(k, 0) for k, v in after["batcher"]["batch_sizes"].items()}
    assert sum(k * v for k, v in sizes.items()) == len(cases)  # every request ran exactly once
    assert max(k for k, v in sizes.items() if v) > 1 and max(sizes) <= 8
    assert max(body["batch_size"] for _, body in got) > 1


def test_overload_is_refused_with_503_and_nothing_is_lost(qa, world):
    """A slow model, a queue of 2: of 12 simultaneous questions each is answered or
    refused with a JSON 503, none hangs or vanishes."""
    pipe = pipeline("vqa", model=qa, features=store_of(world))
    forward = pipe.forward

    def slow_forward(examples, return_attention=False):
        time.sleep(0.3)
        return forward(examples, return_attention)

    pipe.forward = slow_forward  # type: ignore[method-assign]
    service = VQAService(pipe, max_batch=1, max_wait_s=0.0, max_queue=2)
    with BackgroundServer(service) as server:
        got = _concurrently(12, lambda i: post_json(f"{server.url}/api/vqa",
                                                    {"image_id": GOOD_ID, "question": "is there a ball?"}))
        _, stats = get_json(f"{server.url}/api/stats")
    statuses = [status for status, _ in got]
    assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses
    assert all(body["error"]["code"] == "busy" for status, body in got if status == 503)
    assert stats["outcomes"]["answered"] == statuses.count(200)
    assert stats["outcomes"]["busy"] == statuses.count(503)


def test_an_internal_error_is_a_json_500_and_the_server_lives_on(qa, world):
    pipe = pipeline("vqa", model=qa, features=store_of(world))
    forward = pipe.forward

    def flaky_forward(examples, return_attention=False):
        if any("explode" in text for _, text in examples):
            raise RuntimeError("simulated bug")
        return forward(examples, return_attention)

    pipe.forward = flaky_forward  # type: ignore[method-assign]
    with BackgroundServer(VQAService(pipe)) as server:
        status, body = post_json(f"{server.url}/api/vqa", {"image_id": GOOD_ID, "question": "explode?"})
        assert status == 500 and body["error"]["code"] == "internal_error"
        assert "simulated" not in body["error"]["message"]  # internals stay in the server's log
        assert post_json(f"{server.url}/api/vqa", {"image_id": GOOD_ID, "question": "is it red?"})[0] == 200


# ------------------------------------------------------------------------------ the command
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_the_serve_command_end_to_end(qa, world, stop):
    """`python -m lxmert serve` as a user starts it: ready, answers, stops cleanly on
    Ctrl-C or a process manager's SIGTERM."""
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lxmert", "serve", "--model", str(qa), "--features",
                             str(store_of(world)), "--port", str(port), "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                if get_json(f"{url}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server never became ready"
            time.sleep(0.2)
        status, body = post_json(f"{url}/api/vqa", {"image_id": GOOD_ID, "question": "what color is the cube?"})
        assert status == 200 and len(body["answers"]) == 5
        proc.send_signal(stop)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out.startswith("lxmert serve: LxmertForQuestionAnswering") and f"http://127.0.0.1:{port}/" in out
    assert out.rstrip().endswith(f"lxmert serve: stopped ({stop.name})")


@pytest.mark.parametrize("extra, message", [
    ([], "nothing to ask about"),
    (["--pictures", "x"], "nothing to ask about"),
    (["--features", "{store}", "--port", "0"], "--port must be"),
    (["--features", "{store}", "--pictures", "{store}/absent"], "no such pictures directory"),
])
def test_the_serve_command_refuses_bad_settings(qa, world, capsys, extra, message):
    from lxmert.cli import main

    args = [a.format(store=store_of(world)) for a in extra]
    assert main(["serve", "--model", str(qa), *args]) == 1
    assert message in capsys.readouterr().err
