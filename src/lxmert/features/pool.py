"""An ordered, bounded parallel map whose worker processes die with their parent.

The importer decodes base64 in worker processes. Two properties matter beyond speed:

* **bounded memory**: at most ``4 * workers`` rows in flight (``Pool.imap`` would read the
  whole input ahead of the workers - all of a 30 GB TSV in queues);
* **no orphans**: a worker whose parent is killed (SIGKILL runs no clean-up) would block
  forever on its task queue - it holds that queue's write end itself, so it never sees
  EOF - keeping the caller's stdout pipe open, so whoever waits for the command's output
  hangs. On Linux each worker asks the kernel for SIGKILL when its parent exits
  (``prctl(PR_SET_PDEATHSIG)``); elsewhere a watcher thread in the worker polls the parent.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Iterable, Iterator

__all__ = ["die_with_parent", "map_ordered"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Worker initializer: exit as soon as ``parent_pid`` does; leave signals to the parent.

    SIGTERM is reset to its default (a forked worker inherits the parent's Python handler,
    which would unwind the parent's clean-up code in the worker) and SIGINT is ignored: on
    Ctrl-C the parent stops the pool itself, without a traceback from every worker.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    # The parent may have died before prctl took effect: then no signal will ever come.
    if os.getppid() != parent_pid:
        os._exit(1)
    if not armed:
        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, name="lxmert-parent-watch", daemon=True).start()


def map_ordered(fn: Callable[[Any], Any], tasks: Iterable[Any], workers: int) -> Iterator[tuple[Any, Any]]:
    """Yield ``(task, fn(task))`` in input order, with at most ``4 * workers`` tasks in flight.

    ``workers <= 1`` runs in process. Otherwise workers are forked on Linux, as
    ``DataLoader`` workers are: spawning would re-import the caller's ``__main__`` (a
    script without a ``__name__`` guard would recurse, ``python -`` fails) and pay torch's
    import in every worker. Closing the generator (or an exception) shuts the pool down,
    cancelling queued tasks; workers also die with this process (:func:`die_with_parent`).
    """
    if workers <= 1:
        for task in tasks:
            yield task, fn(task)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    window: collections.deque = collections.deque()
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method),
                               initializer=die_with_parent, initargs=(os.getpid(),))
    try:
        for task in tasks:
            window.append((task, pool.submit(fn, task)))
            if len(window) >= 4 * workers:
                head, fut = window.popleft()
                yield head, fut.result()
        while window:
            head, fut = window.popleft()
            yield head, fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
