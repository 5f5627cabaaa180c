"""Running the simulator on a loopback port: in the foreground or in a background thread.

Owns uvicorn: `serve()` for `batchyard sim serve`, and `running_server()` for tests and
benchmarks (a uvicorn.Server in a daemon thread on a free port, stopped on exit). It builds
no responses itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import uvicorn

from batchyard.simulator import tokens
from batchyard.simulator.app import create_app
from batchyard.simulator.config import SimConfig
from batchyard.simulator.faults import ConnectionDropped
from batchyard.simulator.state import SimState

__all__ = ["RunningServer", "running_server", "serve"]


class _HideDrops(logging.Filter):
    """uvicorn logs every exception from the app; a simulated drop is not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ConnectionDropped)


def _warm(state: SimState) -> None:
    """Load the vocabularies now, so the first request is not the slow one."""
    for name in {spec.encoding for spec in state.config.models.values()}:
        tokens.encoding(name)


def _quiet_drops() -> None:
    log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideDrops) for f in log.filters):
        log.addFilter(_HideDrops())


def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    config: SimConfig | None = None,
    *,
    log_level: str = "warning",
) -> None:
    """Serve the simulator until interrupted (Ctrl-C)."""
    app = create_app(config)
    _warm(app.state.sim)
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level=log_level, date_header=False)
    )
    _quiet_drops()
    server.run()


class RunningServer(NamedTuple):
    """What `running_server` yields; unpacks as `(base_url, state)`."""

    base_url: str  # "http://127.0.0.1:PORT/v1", for the SDK's base_url
    state: SimState

    @property
    def root(self) -> str:
        """`http://127.0.0.1:PORT`, for the /_sim/ admin routes."""
        return self.base_url.removesuffix("/v1")


@contextmanager
def running_server(
    config: SimConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout: float = 10.0,
) -> Iterator[RunningServer]:
    """Run the simulator in a background thread; port 0 picks a free port."""
    app = create_app(config)
    state: SimState = app.state.sim
    _warm(state)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=host, port=port, log_level="warning", lifespan="on", date_header=False
        )
    )
    _quiet_drops()
    thread = threading.Thread(target=server.run, name="batchyard-sim", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"The simulator did not start on {host}:{port}.")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield RunningServer(f"http://{host}:{bound}/v1", state)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
