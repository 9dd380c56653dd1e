"""`VQAService`: what the server does with a question, apart from HTTP.

A request goes: image -> regions (a store look-up on the event loop, or decode + detector
in a bounded worker pool, since one image costs seconds of CPU) -> the dynamic batcher
(one model forward for all requests waiting together) -> the pipeline's postprocess (top
answers, boxes, the [CLS] -> box attention). Every stage is bounded: the detector pool
by `detector_queue` waiting images, the batcher by `max_queue`, each request by
`timeout_s`; past a bound the request is refused with a 503, never queued without end.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np

from lxmert.pipeline import RegionFeatures, VQAPipeline
from lxmert.serve.batching import DynamicBatcher, Overloaded, ShuttingDown
from lxmert.serve.catalog import ImageCatalog
from lxmert.serve.limits import Limits, RequestError, decode_image

__all__ = ["VQAService", "process_memory"]

Example = tuple[Sequence[RegionFeatures], str]


class VQAService:
    """Answers questions about store images and uploaded pictures with one `VQAPipeline`."""

    def __init__(self, pipe: VQAPipeline, *, catalog: ImageCatalog | None = None, limits: Limits | None = None,
                 max_batch: int = 16, max_wait_s: float = 0.005, max_queue: int = 64, detector_workers: int = 1,
                 detector_queue: int = 8, timeout_s: float = 120.0) -> None:
        if not isinstance(pipe, VQAPipeline):
            raise TypeError(f"the server answers questions: it needs a VQA pipeline, got {type(pipe).__name__}")
        if detector_workers < 1 or detector_queue < 1:
            raise ValueError("detector_workers and detector_queue must be >= 1")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.pipe = pipe
        self.catalog = catalog if catalog is not None else ImageCatalog(pipe.store)
        self.limits = limits or Limits()
        self.timeout_s = timeout_s
        self.batcher: DynamicBatcher[Example, Any] = DynamicBatcher(self._run, max_batch=max_batch,
                                                                    max_wait_s=max_wait_s, max_queue=max_queue)
        self.detector_workers = detector_workers
        self.detector_queue = detector_queue
        self._pool: ThreadPoolExecutor | None = None
        self._detector_pending = 0  # touched only on the event loop's thread
        self._outcomes: Counter[str] = Counter()
        self._outcome_lock = threading.Lock()
        self.ready = False

    # lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Start the batcher and the detector pool, run one forward of each model (the
        first call pays for lazy initialisation), then report ready."""
        if self.pipe.extractor is not None:
            self._pool = ThreadPoolExecutor(max_workers=self.detector_workers, thread_name_prefix="lxmert-detector")
        self.batcher.start()
        self.pipe.forward([([self._warm_up_regions()], "what is this?")], return_attention=True)
        if self.pipe.extractor is not None:
            shape = (self.limits.min_image_side * 4, self.limits.min_image_side * 4, 3)
            self.pipe.detect(np.zeros(shape, dtype=np.uint8), "warm-up")
        self.ready = True

    def stop(self) -> None:
        self.ready = False
        self.batcher.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _warm_up_regions(self) -> RegionFeatures:
        store = self.pipe.store
        if store is not None and len(store):
            return RegionFeatures.from_store(store, store.ids[0])
        dim = self.pipe.model.config.visual_feat_dim
        boxes = np.tile(np.asarray([[0.0, 0.0, 10.0, 10.0]], dtype=np.float32), (36, 1))
        return RegionFeatures(np.zeros((36, dim), dtype=np.float32), boxes, (10, 10), image_id="warm-up")

    # answering ------------------------------------------------------------------------
    async def answer(self, question: str, *, top_k: int = 5, image_id: str | None = None,
                     upload: bytes | None = None) -> dict[str, Any]:
        """Top answers, boxes and attention for a store image (`image_id`) or an
        uploaded image file (`upload`); RequestError for what cannot be answered."""
        started = time.perf_counter()
        if not self.ready:
            raise RequestError(503, "not_ready", "the server is starting or stopping; try again shortly")
        if (image_id is None) == (upload is None):
            raise RequestError(400, "missing_image" if image_id is None else "ambiguous_image",
                               "send either an 'image' file or an 'image_id' of the feature store")
        detector_s = 0.0
        if image_id is not None:
            regions = self.store_regions(image_id)
        else:
            assert upload is not None
            regions, detector_s = await self.detect_upload(upload)
        try:
            future = self.batcher.submit(([regions], question))
        except Overloaded as err:
            raise RequestError(503, "busy", f"the server is busy ({err})") from None
        try:
            batched = await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
        except asyncio.TimeoutError:
            raise RequestError(503, "timeout", f"no answer within {self.timeout_s:g} s; the server is "
                                               f"overloaded") from None
        except ShuttingDown:
            raise RequestError(503, "shutting_down", "the server is shutting down") from None
        if isinstance(batched.value, Exception):
            raise batched.value
        result = self.pipe.postprocess(batched.value, [regions], top_k=top_k, return_attention=True)
        return {**result, "source": regions.source, "batch_size": batched.batch_size,
                "timing_ms": {"detector": round(detector_s * 1000, 2), "queue": round(batched.queue_s * 1000, 2),
                              "model": round(batched.run_s * 1000, 2),
                              "total": round((time.perf_counter() - started) * 1000, 2)}}

    def store_regions(self, image_id: str) -> RegionFeatures:
        store = self.pipe.store
        if store is None:
            raise RequestError(400, "no_feature_store", "this server has no feature store (start it with "
                                                        "--features STORE); upload an image instead")
        if not isinstance(image_id, str) or image_id not in store:
            raise RequestError(404, "unknown_image_id", f"image id {image_id!r} is not in the feature store")
        return RegionFeatures.from_store(store, image_id)

    async def detect_upload(self, data: bytes) -> tuple[RegionFeatures, float]:
        """Decode and detect an uploaded image in the worker pool: (regions, seconds)."""
        if self.pipe.extractor is None or self._pool is None:
            raise RequestError(400, "no_detector", "this server has no detector, so it cannot read uploaded images "
                                                   "(start it with --detector WEIGHTS); ask about an image id instead")
        if self._detector_pending >= self.detector_queue:
            raise RequestError(503, "busy", f"{self._detector_pending} images are already waiting for the detector; "
                                            f"try again shortly")
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        job = self._pool.submit(self._decode_and_detect, data)
        # the slot frees when the work ends (not when a caller gives up on it), so the
        # detector never has more than `detector_queue` images in hand
        self._detector_pending += 1
        job.add_done_callback(lambda _: loop.call_soon_threadsafe(self._detector_done))
        try:
            regions = await asyncio.wait_for(asyncio.wrap_future(job), self.timeout_s)
        except asyncio.TimeoutError:
            raise RequestError(503, "timeout", f"the detector took over {self.timeout_s:g} s") from None
        return regions, time.perf_counter() - started

    def _detector_done(self) -> None:
        self._detector_pending -= 1

    def _decode_and_detect(self, data: bytes) -> RegionFeatures:
        return self.pipe.detect(decode_image(data, self.limits), "upload")

    def _run(self, items: list[Example]) -> list[Any]:
        """The batcher's batch function: one forward; if it fails, each item alone, so
        that one bad example gets its own error and the others their answers."""
        try:
            return self.pipe.forward(items, return_attention=True)
        except Exception:
            if len(items) == 1:
                raise
        out: list[Any] = []
        for item in items:
            try:
                out.append(self.pipe.forward([item], return_attention=True)[0])
            except Exception as err:  # handed to that request's caller
                out.append(err)
        return out

    # reporting ------------------------------------------------------------------------
    def count(self, outcome: str) -> None:
        """Record a request's outcome: "answered" or its error code (the HTTP layer
        records each request once, whichever stage refused it)."""
        with self._outcome_lock:
            self._outcomes[outcome] += 1

    def info(self) -> dict[str, Any]:
        """The model, its answers and config, the store, the detector, the limits."""
        pipe, store, ex = self.pipe, self.pipe.store, self.pipe.extractor
        return {
            "task": pipe.task,
            "model": {"class": type(pipe.model).__name__, "path": str(pipe.model_path) if pipe.model_path else None,
                      "answers_named": pipe.answers_named, "num_answers": len(pipe.answers),
                      "max_length": pipe.max_length, "config": pipe.model.config.to_dict()},
            "answers": pipe.answers,
            "features": None if store is None else {"path": str(store.path), "images": len(store),
                                                    "feat_dim": store.feat_dim, "max_boxes": store.max_boxes},
            "detector": None if ex is None else {"random_init": bool(ex.random_init), "workers": self.detector_workers,
                                                 "config": ex.cfg.to_dict()},
            "images": self.catalog.kind,
            "limits": self.limits.to_dict(),
            "batching": {"max_batch": self.batcher.max_batch, "max_wait_ms": self.batcher.max_wait_s * 1000.0,
                         "max_queue": self.batcher.max_queue, "timeout_s": self.timeout_s},
        }

    def stats(self) -> dict[str, Any]:
        """Batches formed, outcomes, queue depths and the process's memory and open files."""
        with self._outcome_lock:
            outcomes = dict(self._outcomes)
        return {"batcher": self.batcher.stats(), "outcomes": outcomes,
                "detector": {"pending": self._detector_pending, "max_pending": self.detector_queue,
                             "workers": self.detector_workers if self._pool is not None else 0},
                "process": process_memory()}


def process_memory() -> dict[str, Any]:
    """This process's resident memory (bytes), open file descriptors and threads
    (Linux /proc; elsewhere the peak resident size only)."""
    out: dict[str, Any] = {"rss_bytes": None, "open_files": None, "threads": threading.active_count()}
    try:
        with open("/proc/self/statm") as handle:
            out["rss_bytes"] = int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        out["open_files"] = len(os.listdir("/proc/self/fd"))
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["rss_bytes"] = peak if sys.platform == "darwin" else peak * 1024
    return out
