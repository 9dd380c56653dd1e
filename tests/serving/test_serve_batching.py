"""`DynamicBatcher`: batches form under concurrency, waits are bounded, the queue is
bounded, failures reach every caller, nothing is lost or answered twice."""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lxmert.serve.batching import Batched, DynamicBatcher, Overloaded, ShuttingDown


class Gate:
    """A batch function that records its batches and can be held shut."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.open.set()
        self.entered = threading.Event()  # a batch is inside (held while `open` is clear)
        self.batches: list[list[int]] = []

    def __call__(self, items: list[int]) -> list[int]:
        self.entered.set()
        self.open.wait(10)
        self.batches.append(list(items))
        return [2 * x for x in items]


def test_requests_waiting_together_run_as_one_batch():
    gate = Gate()
    batcher = DynamicBatcher(gate, max_batch=4, max_wait_s=0.0, max_queue=32)
    batcher.start()
    try:
        gate.open.clear()
        first = batcher.submit(0)
        assert gate.entered.wait(5)  # the worker holds item 0 inside the gate
        rest = [batcher.submit(i) for i in range(1, 10)]
        gate.open.set()
        results = [f.result(5) for f in [first, *rest]]
    finally:
        batcher.stop()
    assert [r.value for r in results] == [2 * i for i in range(10)]
    assert gate.batches == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9]]
    assert [r.batch_size for r in results] == [1, 4, 4, 4, 4, 4, 4, 4, 4, 1]
    stats = batcher.stats()
    assert stats["batch_sizes"] == {1: 2, 4: 2} and stats["requests"] == {"answered": 10}


def test_a_lone_request_waits_at_most_max_wait():
    gate = Gate()
    batcher = DynamicBatcher(gate, max_batch=8, max_wait_s=0.05)
    batcher.start()
    try:
        started = time.perf_counter()
        result = batcher.submit(3).result(5)
        elapsed = time.perf_counter() - started
    finally:
        batcher.stop()
    assert result == Batched(6, 1, result.queue_s, result.run_s)
    assert 0.04 <= result.queue_s and elapsed < 1.0


def test_a_full_queue_refuses_at_once():
    gate = Gate()
    gate.open.clear()
    batcher = DynamicBatcher(gate, max_batch=1, max_wait_s=0.0, max_queue=2)
    batcher.start()
    try:
        held = batcher.submit(0)
        assert gate.entered.wait(5)
        queued = [batcher.submit(1), batcher.submit(2)]
        started = time.perf_counter()
        with pytest.raises(Overloaded, match="2 requests are already waiting"):
            batcher.submit(3)
        assert time.perf_counter() - started < 0.5
        gate.open.set()
        assert [f.result(5).value for f in [held, *queued]] == [0, 2, 4]
    finally:
        batcher.stop()
    assert batcher.stats()["requests"] == {"answered": 3, "refused": 1}


def test_a_failing_batch_fails_its_callers_and_the_worker_lives_on():
    calls = []

    def run(items: list[int]) -> list[int]:
        calls.append(items)
        if any(x < 0 for x in items):
            raise ValueError("negative")
        return items

    batcher = DynamicBatcher(run, max_batch=4, max_wait_s=0.0)
    batcher.start()
    try:
        with pytest.raises(ValueError, match="negative"):
            batcher.submit(-1).result(5)
        assert batcher.submit(5).result(5).value == 5
    finally:
        batcher.stop()
    assert batcher.stats()["requests"] == {"failed": 1, "answered": 1}


def test_wrong_result_count_is_an_error_for_the_callers():
    batcher = DynamicBatcher(lambda items: items[:-1], max_batch=2, max_wait_s=0.0)
    batcher.start()
    try:
        with pytest.raises(RuntimeError, match="0 results for 1 items"):
            batcher.submit(1).result(5)
    finally:
        batcher.stop()


def test_stop_fails_what_is_queued_and_refuses_new_requests():
    gate = Gate()
    gate.open.clear()
    batcher = DynamicBatcher(gate, max_batch=1, max_wait_s=0.0)
    batcher.start()
    running = batcher.submit(1)
    assert gate.entered.wait(5)
    queued = batcher.submit(2)
    stopper = threading.Thread(target=batcher.stop)
    stopper.start()
    deadline = time.monotonic() + 5
    while batcher.running and time.monotonic() < deadline:  # stop() has begun: nothing new is taken
        time.sleep(0.001)
    gate.open.set()
    stopper.join(5)
    assert running.result(5).value == 2  # the batch in hand finishes
    with pytest.raises(ShuttingDown):
        queued.result(5)
    with pytest.raises(Overloaded, match="not running"):
        batcher.submit(3)


def test_cancelled_requests_are_skipped():
    gate = Gate()
    gate.open.clear()
    batcher = DynamicBatcher(gate, max_batch=4, max_wait_s=0.0)
    batcher.start()
    try:
        batcher.submit(0)
        assert gate.entered.wait(5)
        gone, kept = batcher.submit(1), batcher.submit(2)
        assert gone.cancel()
        gate.open.set()
        assert kept.result(5).value == 4
        with pytest.raises(CancelledError):
            gone.result(0)
    finally:
        batcher.stop()
    assert [1] not in gate.batches and all(1 not in b for b in gate.batches)
    assert batcher.stats()["requests"]["cancelled"] == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"max_batch": 0}, "max_batch"), ({"max_wait_s": -1}, "max_wait_s"), ({"max_queue": 0}, "max_queue"),
])
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DynamicBatcher(lambda xs: xs, **kwargs)


@settings(max_examples=25, deadline=None)
@given(items=st.lists(st.integers(-1000, 1000), min_size=1, max_size=40), max_batch=st.integers(1, 9),
       threads=st.integers(1, 6))
def test_every_request_gets_its_own_answer_once(items, max_batch, threads):
    gate = Gate()
    batcher = DynamicBatcher(gate, max_batch=max_batch, max_wait_s=0.001, max_queue=len(items))
    batcher.start()
    futures: dict[int, object] = {}
    lock = threading.Lock()

    def client(indices: list[int]) -> None:
        for i in indices:
            fut = batcher.submit(items[i])
            with lock:
                futures[i] = fut

    workers = [threading.Thread(target=client, args=(list(range(k, len(items), threads)),)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(10)
    try:
        got = {i: fut.result(10) for i, fut in futures.items()}  # type: ignore[attr-defined]
    finally:
        batcher.stop()
    assert sorted(got) == list(range(len(items)))
    assert all(got[i].value == 2 * items[i] for i in got)
    assert all(1 <= len(b) <= max_batch for b in gate.batches)
    assert sorted(x for b in gate.batches for x in b) == sorted(items)
    assert sum(k * n for k, n in batcher.stats()["batch_sizes"].items()) == len(items)
