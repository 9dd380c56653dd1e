"""`lxmert serve` under load: N concurrent clients over loopback against the real command.

Each scenario starts `python -m lxmert serve ...` in a subprocess (what a user runs),
waits for /readyz, then N client threads (one keep-alive HTTP connection each) send
questions until R requests are done or D seconds have passed, whichever comes first.
Reported per scenario: throughput (answers/s), latency p50/p95/p99 of the answered
requests, the batch sizes the server formed (its /api/stats, before/after delta), the
server's resident memory (VmRSS before the load, after it, and the peak VmHWM) and
open files, and the outcome of every request: answered, refused with a JSON 503
("busy"), or lost (a connection error, a hang, any other status) - which must be 0.

Store scenarios run `--repeats` times, alternating, and report the median run (by
throughput; every run is kept in the JSON): on a shared machine one run can be several
times slower than the next.

Scenarios:

- `store-1`: one client, questions about store images (the demo's test images and
  their VQA test questions): the latency of a lone request;
- `store-N`: N clients, dynamic batching on (--max-batch, --max-wait-ms);
- `store-N-nobatch`: N clients, `--max-batch 1` (one forward per request), the baseline
  batching is measured against;
- `overload`: 4N clients against `--max-queue 8`: the server refuses what it cannot
  queue with 503 and answers the rest; nothing is lost;
- `detector`: uploaded PNG pictures (the world's test scenes rendered) through the full
  VG Faster R-CNN with RANDOM weights (the real checkpoint is not downloadable here; the
  computation is the same) and a QA model reading its 2048-d features with random weights
  of the demo model's size (answers mean nothing; the timing is the point).

    make demo   # once: demo-out/vqa/pretrained/best and demo-out/world/features/store
    python benchmarks/bench_serve.py --clients 16 --requests 400 --duration 30 --repeats 3 --out serve.json
    python benchmarks/bench_serve.py --scenarios detector --detector-requests 4 --detector-clients 2
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_info, write_json  # noqa: E402

SCENARIOS = ("store-1", "store-N", "store-N-nobatch", "overload", "detector")


# ------------------------------------------------------------------------------ server
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (bytes) of a process, from /proc (Linux)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
        out["open_files"] = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        pass
    return out


class Server:
    """`python -m lxmert serve ARGS` on a free port, ready when entered."""

    def __init__(self, args: list[str], threads: int) -> None:
        self.port = free_port()
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        self.proc = subprocess.Popen([sys.executable, "-m", "lxmert", "serve", *args, "--port", str(self.port),
                                      "--log-level", "warning"], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "Server":
        deadline = time.monotonic() + 300
        while True:
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise RuntimeError(f"lxmert serve exited {self.proc.returncode}:\n{out}\n{err}")
            try:
                if get(self.url, "/readyz")[0] == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("lxmert serve was not ready within 300 s")
            time.sleep(0.2)

    def __exit__(self, *exc: Any) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()


def get(url: str, path: str) -> tuple[int, Any]:
    host, port = url.removeprefix("http://").split(":")
    conn = HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


# ------------------------------------------------------------------------------ clients
Request = tuple[bytes, str]  # body, content type


def json_request(image_id: str, question: str) -> Request:
    return json.dumps({"image_id": image_id, "question": question, "top_k": 5}).encode(), "application/json"


def upload_request(png: bytes, question: str) -> Request:
    boundary = "----lxmertbench"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="question"\r\n\r\n{question}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="scene.png"\r\n'
            f'Content-Type: image/png\r\n\r\n').encode() + png + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def drive(url: str, clients: int, total: int, duration: float, make: Callable[[random.Random], Request],
          timeout: float) -> dict[str, Any]:
    """`clients` threads send requests until `total` are done or `duration` passed."""
    host, port = url.removeprefix("http://").split(":")
    lock = threading.Lock()
    issued = [0]
    latencies: list[float] = []
    batch_sizes: Counter[int] = Counter()
    outcomes: Counter[str] = Counter()
    lost: list[str] = []
    deadline = time.perf_counter() + duration

    def client(seed: int) -> None:
        rng = random.Random(seed)
        conn = HTTPConnection(host, int(port), timeout=timeout)
        try:
            while True:
                with lock:
                    if issued[0] >= total or time.perf_counter() > deadline:
                        return
                    issued[0] += 1
                body, content_type = make(rng)
                started = time.perf_counter()
                try:
                    conn.request("POST", "/api/vqa", body=body, headers={"Content-Type": content_type})
                    response = conn.getresponse()
                    data = json.loads(response.read())
                except Exception as err:  # noqa: BLE001 - a lost request is what this counts
                    with lock:
                        lost.append(repr(err))
                    conn.close()
                    conn = HTTPConnection(host, int(port), timeout=timeout)
                    continue
                elapsed = time.perf_counter() - started
                with lock:
                    if response.status == 200 and data.get("answers"):
                        outcomes["answered"] += 1
                        latencies.append(elapsed)
                        batch_sizes[int(data["batch_size"])] += 1
                    elif response.status == 503 and "error" in data:
                        outcomes[f"refused ({data['error']['code']})"] += 1
                    else:
                        lost.append(f"HTTP {response.status}: {data}")
        finally:
            conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    lat = np.asarray(latencies) * 1000.0
    pct = {f"p{q}": round(float(np.percentile(lat, q)), 2) if len(lat) else None for q in (50, 95, 99)}
    return {"clients": clients, "requests": issued[0], "seconds": round(wall, 2),
            "answers_per_s": round(outcomes["answered"] / wall, 2) if wall else None,
            "latency_ms": {**pct, "mean": round(float(lat.mean()), 2) if len(lat) else None},
            "outcomes": dict(outcomes), "lost": len(lost), "lost_examples": lost[:5],
            "batch_sizes_seen_by_clients": dict(sorted(batch_sizes.items()))}


def scenario(name: str, server_args: list[str], threads: int, clients: int, total: int, duration: float,
             make: Callable[[random.Random], Request], timeout: float) -> dict[str, Any]:
    print(f"[{name}] lxmert serve {' '.join(server_args)}  (OMP_NUM_THREADS={threads}); {clients} clients, "
          f"<= {total} requests, <= {duration:g} s", flush=True)
    with Server(server_args, threads) as server:
        _, before = get(server.url, "/api/stats")
        memory_before = proc_status(server.proc.pid)
        result = drive(server.url, clients, total, duration, make, timeout)
        _, after = get(server.url, "/api/stats")
        memory_after = proc_status(server.proc.pid)
    formed = {int(k): v - before["batcher"]["batch_sizes"].get(k, 0)
              for k, v in after["batcher"]["batch_sizes"].items()}
    result.update({
        "name": name, "server_args": server_args, "server_threads": threads,
        "batch_sizes_formed": {k: v for k, v in sorted(formed.items()) if v},
        "mean_batch": round(sum(k * v for k, v in formed.items()) / max(1, sum(formed.values())), 2),
        "memory": {"rss_before_mb": _mb(memory_before.get("VmRSS")), "rss_after_mb": _mb(memory_after.get("VmRSS")),
                   "peak_mb": _mb(memory_after.get("VmHWM")), "open_files_before": memory_before.get("open_files"),
                   "open_files_after": memory_after.get("open_files")},
    })
    lat = result["latency_ms"]
    print(f"[{name}] {result['answers_per_s']} answers/s; latency p50 {lat['p50']} p95 {lat['p95']} p99 {lat['p99']} "
          f"ms; batches {result['batch_sizes_formed']} (mean {result['mean_batch']}); outcomes {result['outcomes']}, "
          f"lost {result['lost']}; RSS {result['memory']['rss_before_mb']} -> {result['memory']['rss_after_mb']} MB "
          f"(peak {result['memory']['peak_mb']})", flush=True)
    return result


def summary(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median run of a scenario by throughput, with every run's figures kept."""
    ordered = sorted(runs, key=lambda r: r["answers_per_s"] or 0.0)
    median = dict(ordered[len(ordered) // 2])
    median["name"] = name
    median["lost"] = sum(r["lost"] for r in runs)
    median["runs"] = [{k: r[k] for k in ("answers_per_s", "latency_ms", "mean_batch", "outcomes", "lost")}
                      for r in runs]
    if len(runs) > 1:
        print(f"[{name}] median of {len(runs)}: {median['answers_per_s']} answers/s (runs: "
              f"{', '.join(str(r['answers_per_s']) for r in runs)})", flush=True)
    return median


def _mb(value: int | None) -> float | None:
    return None if value is None else round(value / 2**20, 1)


# ------------------------------------------------------------------------------ inputs
def store_questions(world: Path) -> list[tuple[str, str]]:
    """(image id, question) of the world's VQA test split."""
    entries = json.loads((world / "vqa" / "test.json").read_text())
    return [(e["img_id"], e["sent"]) for e in entries]


def scene_pictures(world: Path, count: int) -> list[bytes]:
    from lxmert.data.synth import render_world_image

    ids = sorted({img for img, _ in store_questions(world)})[:count]
    out = []
    for img_id in ids:
        buffer = io.BytesIO()
        render_world_image(world, img_id).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def detector_qa_model(demo_model: Path, out: Path) -> Path:
    """A QA checkpoint of the demo model's size and answers that reads 2048-d detector
    features, with random weights."""
    from lxmert import LxmertConfig, LxmertForQuestionAnswering

    config = json.loads((demo_model / "config.json").read_text())
    answers = json.loads((demo_model / "answers.json").read_text())
    config["visual_feat_dim"] = 2048
    LxmertForQuestionAnswering(LxmertConfig.from_dict(config), answers=answers).save_pretrained(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="demo-out/vqa/pretrained/best")
    parser.add_argument("--features", default="demo-out/world/features/store")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, of {SCENARIOS}")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=600, help="requests per store scenario at most")
    parser.add_argument("--duration", type=float, default=40.0, help="seconds per scenario at most")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each store scenario, alternating; the median is reported")
    parser.add_argument("--threads", type=int, default=1, help="the server's OMP_NUM_THREADS (store scenarios)")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--detector-clients", type=int, default=2)
    parser.add_argument("--detector-requests", type=int, default=4,
                        help="uploads at most (the full detector takes tens of seconds per image on a CPU)")
    parser.add_argument("--detector-config", default=None,
                        help="detector config (default: the full VG Faster R-CNN); a smaller one measures the "
                             "server's machinery rather than the detector")
    parser.add_argument("--detector-threads", type=int, default=2, help="the server's OMP_NUM_THREADS (detector)")
    parser.add_argument("--detector-workers", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300.0, help="client socket timeout, s")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {SCENARIOS}")
    model, store = Path(args.model), Path(args.features)
    if not model.is_dir() or not store.is_dir():
        parser.error(f"{model} or {store} is missing: run `make demo` first, or pass --model and --features")
    world = store.parents[1]
    questions = store_questions(world)

    def ask_store(rng: random.Random) -> Request:
        return json_request(*rng.choice(questions))

    common = ["--model", str(model), "--features", str(store), "--max-wait-ms", str(args.max_wait_ms)]
    results: dict[str, Any] = {"machine": machine_info(), "args": vars(args), "scenarios": []}
    n = args.clients
    plans = {
        "store-1": (common + ["--max-batch", str(args.max_batch)], 1),
        "store-N": (common + ["--max-batch", str(args.max_batch)], n),
        "store-N-nobatch": (common + ["--max-batch", "1"], n),
        "overload": (common + ["--max-batch", str(args.max_batch), "--max-queue", "8"], 4 * n),
    }
    runs: dict[str, list[dict[str, Any]]] = {}
    for repeat in range(args.repeats):  # alternating: a neighbour's load spike hits every scenario alike
        for name in chosen:
            if name in plans:
                server_args, clients = plans[name]
                runs.setdefault(name, []).append(scenario(f"{name} #{repeat + 1}", server_args, args.threads, clients,
                                                          args.requests, args.duration, ask_store, args.timeout))
    for name, done in runs.items():
        results["scenarios"].append(summary(name, done))
    if "detector" in chosen:
        with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
            qa = detector_qa_model(model, Path(tmp) / "qa2048")
            pictures = scene_pictures(world, 8)
            texts = [q for _, q in questions]

            def ask_upload(rng: random.Random) -> Request:
                return upload_request(rng.choice(pictures), rng.choice(texts))

            server_args = ["--model", str(qa), "--random-init-detector", *(
                ["--detector-config", args.detector_config] if args.detector_config else []), "--detector-workers",
                           str(args.detector_workers), "--detector-queue", str(4 * args.detector_clients),
                           "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms),
                           "--timeout", str(args.timeout)]
            results["scenarios"].append(scenario("detector", server_args, args.detector_threads,
                                                 args.detector_clients, args.detector_requests,
                                                 max(args.duration, 600.0), ask_upload, args.timeout))
    lost = sum(s["lost"] for s in results["scenarios"])
    print(f"lost requests over all scenarios: {lost}")
    if args.out:
        write_json(args.out, results)
        print(f"wrote {args.out}")
    if lost:
        sys.exit(1)


if __name__ == "__main__":
    main()
