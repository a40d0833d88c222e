"""Shared helpers for the server, MCP and web tests: a real uvicorn server on a free loopback port, the sample index.

The sample index (the three sample PDFs, toy model) is built once per test process and copied for
each module that serves it, so every module starts from the same, known index. Modules that only
read, or that undo what they add, share one live server (``shared_live``, no API key, MCP on):
import the fixtures (``from _serve_fixtures import shared_index, shared_live``). Fixtures imported
into several modules get one definition per module, so the objects are cached here, per process.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import make_page

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "examples" / "data"
SAMPLE_PDFS = sorted(SAMPLES.glob("*.pdf"))

# Each names a company and a metric that exactly one sample page answers (examples/data/make_samples.py).
QUESTIONS = {
    "What was the revenue of Acme Industries in 2022?": ("acme_industries_2023.pdf", 1),
    "What was the water use of Borealis Energy in 2021?": ("borealis_energy_2023.pdf", None),
    "How many customers did Cobalt Health have in 2023?": ("cobalt_health_2023.pdf", None),
}

_BUILT: dict[int, Path] = {}
_SHARED: dict[str, Any] = {"users": 0}


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sample_index(encoder: Any, base: Path) -> Path:
    """The sample PDFs indexed with ``encoder`` (built once per process under ``base``); returns its folder (closed)."""
    key = id(encoder)
    if key not in _BUILT:
        from sap_rag import SAPIndex
        from sap_rag.encoders.compiled import remember_queries

        path = base / f"sample-index-{len(_BUILT)}"
        with SAPIndex.create(path, encoder=encoder) as index:
            index.add_documents(SAMPLE_PDFS)
        remember_queries(encoder)  # as `sap-rag index` leaves it: a `sap-rag mcp` process starts the same way
        _BUILT[key] = path
    return _BUILT[key]


@pytest.fixture(scope="session")
def shared_index(toy_encoder, tmp_path_factory) -> Path:
    """The sample index built with the toy encoder (closed; never write to it: copy it with :func:`copy_index`)."""
    return sample_index(toy_encoder, tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def shared_live(toy_encoder, shared_index, tmp_path_factory):
    """One live server for the whole session over a copy of the sample index: default config (no API key,
    loopback only), MCP at ``/mcp``. Tests using it must leave the index as they found it."""
    if "live" not in _SHARED:
        from sap_rag import SAPIndex
        from sap_rag.serve import create_app

        index = SAPIndex.open(copy_index(shared_index, tmp_path_factory.mktemp("shared") / "i"), encoder=toy_encoder)
        _SHARED["index"] = index
        _SHARED["live"] = LiveServer(create_app(index, encoder=toy_encoder))
    _SHARED["users"] += 1
    yield _SHARED["live"]
    _SHARED["users"] -= 1
    if _SHARED["users"] == 0:
        _SHARED.pop("live").stop()
        _SHARED.pop("index").close()


def copy_index(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, symlinks=True)
    return target


class LiveServer:
    """``app`` served by uvicorn on a free 127.0.0.1 port in a thread, until :meth:`stop`."""

    def __init__(self, app: Any, *, log_level: str = "info") -> None:
        import uvicorn

        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level=log_level, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    @property
    def service(self) -> Any:
        return self.app.state.service

    def client(self, **headers: str) -> Any:
        import httpx

        return httpx.Client(base_url=self.url, timeout=60, headers=headers)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def png_bytes(seed: int, size: tuple[int, int] = (180, 240)) -> bytes:
    buffer = io.BytesIO()
    make_page(seed, size, text=f"page {seed}").save(buffer, format="PNG")
    return buffer.getvalue()


def tiff_bytes(seeds: list[int]) -> bytes:
    """A multi-page TIFF: one document with a page per seed."""
    frames = [make_page(s, text=f"page {s}") for s in seeds]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def wait_job(http: Any, job_id: str, timeout: float = 120) -> dict[str, Any]:
    """Poll ``GET /jobs/{id}`` until the job is done or failed (bounded in time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/jobs/{job_id}").json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def assert_error(response: Any, status: int, kind: str | None = None) -> str:
    """The response is a JSON error with this status (and type); returns its one-line message."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    body = response.json()
    assert set(body) == {"error"}, body
    message = body["error"]["message"]
    assert message and "\n" not in message and "Traceback" not in message
    if kind is not None:
        assert body["error"]["type"] == kind, body
    return message


@contextlib.contextmanager
def captured_logs(level: int = logging.DEBUG):
    """Every log record (uvicorn's access log included) as text, while the block runs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(level)
    root = logging.getLogger()
    loggers = [root, logging.getLogger("uvicorn.access"), logging.getLogger("uvicorn.error")]
    old_levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler) if lg is root or not lg.propagate else None
        lg.setLevel(level)
    try:
        yield stream
    finally:
        for lg, old in zip(loggers, old_levels):
            lg.setLevel(old)
            with contextlib.suppress(ValueError):
                lg.removeHandler(handler)
