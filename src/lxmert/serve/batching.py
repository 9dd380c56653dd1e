"""Dynamic batching: concurrent requests answered by one model forward.

Why: a forward over 16 questions costs little more than over one (the model is small
next to the per-call overheads, and matrix products get wider), so a server that runs
each request alone wastes most of its time under load. `DynamicBatcher` owns one worker
thread; requests wait in a bounded queue, and the worker takes the first waiting one,
then whatever else arrives within `max_wait_s` (up to `max_batch`), and runs them
together. While a batch runs, new requests queue up and form the next batch, so under
load batches grow by themselves and at low load a request waits at most `max_wait_s`.

Bounded in both directions: a full queue refuses at once (`Overloaded`, the server's
503), never blocks the event loop and never grows memory without limit; `stop()`
fails whatever is still queued (`ShuttingDown`), so no caller waits forever.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Generic, Sequence, TypeVar

__all__ = ["DynamicBatcher", "Batched", "Overloaded", "ShuttingDown"]

T = TypeVar("T")
R = TypeVar("R")

logger = logging.getLogger(__name__)


class Overloaded(RuntimeError):
    """The queue is full (or the batcher is not running): try again later."""


class ShuttingDown(RuntimeError):
    """The batcher stopped before this request ran."""


@dataclass(frozen=True)
class Batched(Generic[R]):
    """One request's result and how it was served."""

    value: R
    batch_size: int
    queue_s: float  # from submit() to the start of its batch
    run_s: float  # the batch's run time


class DynamicBatcher(Generic[T, R]):
    """Runs `run(items) -> results` (one result per item, in order) on batches of items
    submitted from any thread; `submit` returns a `concurrent.futures.Future` of a
    `Batched` (await it with `asyncio.wrap_future`).

    If `run` raises, every request of that batch gets the exception (the caller decides
    whether a batch can fail item by item: the server's `run` retries one by one).
    """

    def __init__(self, run: Callable[[list[T]], Sequence[R]], *, max_batch: int = 16, max_wait_s: float = 0.005,
                 max_queue: int = 64, name: str = "lxmert-batcher") -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        self.run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.name = name
        self._queue: queue.Queue[tuple[T, Future, float]] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._stats_lock = threading.Lock()
        self._sizes: Counter[int] = Counter()
        self._counts: Counter[str] = Counter()

    # lifecycle ------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping.is_set()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the running batch, fail the queued requests with `ShuttingDown`."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._fail_queued()

    # requests -------------------------------------------------------------------------
    def submit(self, item: T) -> Future:
        """Queue `item`; `Overloaded` at once when the queue is full or the batcher stopped."""
        if not self.running:
            with self._stats_lock:
                self._counts["refused"] += 1
            raise Overloaded(f"{self.name} is not running")
        future: Future = Future()
        try:
            self._queue.put_nowait((item, future, time.perf_counter()))
        except queue.Full:
            with self._stats_lock:
                self._counts["refused"] += 1
            raise Overloaded(f"{self.max_queue} requests are already waiting; try again shortly") from None
        return future

    def stats(self) -> dict[str, Any]:
        """Batches run, requests by outcome, the batch sizes formed ({size: count}), queue depth."""
        with self._stats_lock:
            return {"batches": sum(self._sizes.values()), "batch_sizes": dict(sorted(self._sizes.items())),
                    "requests": dict(self._counts), "queued": self._queue.qsize(),
                    "max_batch": self.max_batch, "max_wait_ms": self.max_wait_s * 1000.0,
                    "max_queue": self.max_queue}

    # worker ---------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                first = self._queue.get(timeout=0.1)  # wakes at once on an item; the timeout only notices stop()
            except queue.Empty:
                continue
            batch = [first]
            deadline = time.perf_counter() + self.max_wait_s
            while len(batch) < self.max_batch:
                remaining = deadline - time.perf_counter()
                try:
                    batch.append(self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait())
                except queue.Empty:
                    break
            self._run_batch(batch)

    def _run_batch(self, batch: list[tuple[T, Future, float]]) -> None:
        live = [(item, fut, t) for item, fut, t in batch if fut.set_running_or_notify_cancel()]
        cancelled = len(batch) - len(live)
        if not live:
            self._count(cancelled=cancelled)
            return
        started = time.perf_counter()
        try:
            results = list(self.run([item for item, _, _ in live]))
            if len(results) != len(live):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(live)} items")
        except Exception as err:  # delivered to every waiting caller; the worker lives on
            logger.exception("%s: a batch of %d failed", self.name, len(live))
            for _, fut, _ in live:
                fut.set_exception(err)
            self._count(failed=len(live), cancelled=cancelled, size=len(live))
            return
        run_s = time.perf_counter() - started
        for (_, fut, queued), value in zip(live, results):
            fut.set_result(Batched(value, len(live), started - queued, run_s))
        self._count(answered=len(live), cancelled=cancelled, size=len(live))

    def _count(self, *, answered: int = 0, failed: int = 0, cancelled: int = 0, size: int = 0) -> None:
        with self._stats_lock:
            for key, n in (("answered", answered), ("failed", failed), ("cancelled", cancelled)):
                if n:
                    self._counts[key] += n
            if size:
                self._sizes[size] += 1

    def _fail_queued(self) -> None:
        while True:
            try:
                _, fut, _ = self._queue.get_nowait()
            except queue.Empty:
                return
            if fut.set_running_or_notify_cancel():
                fut.set_exception(ShuttingDown("the server is shutting down"))
