"""Running the app under uvicorn: in the foreground (`lxmert serve`) or in a background
thread (tests, notebooks, the benchmark's in-process mode).

Loopback by default: the API has no authentication, so listening on another interface
is the user's explicit choice (and announced).
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from typing import Any

import uvicorn

from lxmert.serve.app import create_app
from lxmert.serve.service import VQAService

__all__ = ["run_server", "BackgroundServer", "uvicorn_config", "LOOPBACK_HOSTS"]

logger = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def uvicorn_config(service: VQAService, host: str, port: int, *, log_level: str = "info",
                   access_log: bool = True, limit_concurrency: int | None = None) -> uvicorn.Config:
    """uvicorn settings for the app: one process (the model lives in it), our lifespan,
    and `limit_concurrency` open requests at most (uvicorn answers 503 past it)."""
    return uvicorn.Config(create_app(service), host=host, port=port, log_level=log_level, access_log=access_log,
                          lifespan="on", limit_concurrency=limit_concurrency, timeout_keep_alive=5,
                          server_header=False)


def run_server(service: VQAService, host: str = "127.0.0.1", port: int = 8000, **options: Any) -> str | None:
    """Serve until SIGINT / SIGTERM; returns the name of the signal that stopped it.

    uvicorn shuts the app down gracefully on those signals (the lifespan stops the
    service), then raises the signal again for the handler that was installed before
    it; the one installed here only notes it, so that a deliberate stop is an ordinary
    return (exit status 0), not a KeyboardInterrupt or a death by SIGTERM."""
    if host not in LOOPBACK_HOSTS:
        logger.warning("listening on %s: anyone who can reach this machine can use the API (it has no "
                       "authentication)", host)
    stopped_by: list[int] = []
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda number, frame: stopped_by.append(number))
    try:
        uvicorn.Server(uvicorn_config(service, host, port, **options)).run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return signal.Signals(stopped_by[0]).name if stopped_by else None


class BackgroundServer:
    """The app on a free loopback port in a daemon thread: `with BackgroundServer(service)
    as server: urlopen(server.url + "/healthz")`. Exits waiting until the app is ready
    (its lifespan started the service) or raises what stopped it."""

    def __init__(self, service: VQAService, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning",
                 start_timeout_s: float = 120.0, **options: Any) -> None:
        self.service = service
        self._socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        self.server = uvicorn.Server(uvicorn_config(service, host, self.port, log_level=log_level, access_log=False,
                                                    **options))
        self.start_timeout_s = start_timeout_s
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in str(self.host) else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> "BackgroundServer":
        self._thread = threading.Thread(target=self._run, name="lxmert-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not (self.server.started and self.service.ready):
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the server did not start: {self._error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the server was not ready within {self.start_timeout_s:g} s")
            time.sleep(0.02)
        return self

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self._socket])
        except BaseException as err:  # reported by start() / stop() in the caller's thread
            self._error = err

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._socket.close()

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
