"""``ServeConfig``: the server's limits, allowed folders, API key and batching settings.

Every limit is a class constant default, so one place says what a server accepts out of the box;
``sap-rag serve`` exposes each as an option.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError

__all__ = ["LOOPBACK_HOSTS", "ServeConfig", "is_loopback"]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the server on this machine (``127.0.0.0/8``, ``::1``, ``localhost``).

    >>> is_loopback("127.0.0.1"), is_loopback("0.0.0.0"), is_loopback("::1"), is_loopback("example.org")
    (True, False, True, False)
    """
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServeConfig:
    """What the server accepts and how it batches.

    Attributes:
        api_key: when set, every route but ``/health``, ``/`` and ``/static`` needs it
            (``Authorization: Bearer KEY`` or ``X-API-Key: KEY``); compared in constant time, never logged.
        max_file_bytes: largest uploaded file (413 beyond it; the upload stops at the limit).
        max_request_bytes: largest request body, all files together (413 beyond it).
        max_files: most files in one upload request.
        max_query_chars: longest text query (a 200,000-character query would make ~50,000 query vectors).
        max_query_tokens: most tokens a text query may have after tokenization.
        max_image_bytes: largest query image file.
        max_image_pixels: most pixels of a query image (width x height).
        max_page_image_side: largest side of a page image the server sends (bigger asks are scaled down).
        max_k: largest ``k`` of one search.
        max_batch_queries: most queries in one ``/search/batch`` request.
        max_queued_jobs: upload jobs waiting or running at once (429 beyond it).
        max_batch: most queries encoded together by the micro-batcher (1: no batching).
        max_wait_ms: how long the micro-batcher waits for more queries after the first.
        ingest_batch_size: pages per forward pass while indexing uploads (small, so queries interleave).
        search_timeout_s: longest a request waits for its search before answering 503.
        allowed_folders: server-side folders ``POST /documents/from-path`` may read (none by default).
        keep_jobs: finished jobs remembered for ``GET /jobs/{id}``.
        allowed_hosts: ``Host`` header names the server answers to (``name``, ``name:port``, ``*.domain``,
            ``*``); None: any host with an API key, only loopback names (``127.0.0.1``, ``localhost``,
            ``[::1]``) without one, which stops DNS rebinding. Other names need an API key.
        state_dir: a folder (outside the index) where finished upload jobs are recorded, so ``GET /jobs/{id}``
            answers across a restart (None: jobs live in memory only).
    """

    api_key: str | None = field(default=None, repr=False)
    max_file_bytes: int = 100 * 1024 * 1024
    max_request_bytes: int = 500 * 1024 * 1024
    max_files: int = 100
    max_query_chars: int = 2_000
    max_query_tokens: int = 512
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 25_000_000
    max_page_image_side: int = 2_048
    max_k: int = 1_000
    max_batch_queries: int = 64
    max_queued_jobs: int = 64
    max_batch: int = 32
    max_wait_ms: float = 5.0
    ingest_batch_size: int = 2
    search_timeout_s: float = 120.0
    allowed_folders: tuple[Path, ...] = ()
    keep_jobs: int = 1_000
    allowed_hosts: tuple[str, ...] | None = None
    state_dir: Path | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", "float") and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise InvalidInputError(f"ServeConfig.{f.name} must be a number, got {value!r}")
            if f.type == "int" and (not isinstance(value, int) or value < 1):
                raise InvalidInputError(f"ServeConfig.{f.name} must be a whole number of at least 1, got {value!r}")
            if f.type == "float" and not value >= 0:
                raise InvalidInputError(f"ServeConfig.{f.name} must be a number of at least 0, got {value!r}")
        if self.api_key is not None and (not isinstance(self.api_key, str) or len(self.api_key.strip()) < 8):
            raise InvalidInputError("the API key must be a string of at least 8 characters")
        folders = []
        for folder in self.allowed_folders:
            path = Path(folder).resolve()
            if not path.is_dir():
                raise InvalidInputError(f"allowed folder {os.fsdecode(folder)!r} is not a folder")
            folders.append(path)
        object.__setattr__(self, "allowed_folders", tuple(folders))
        if self.state_dir is not None:
            object.__setattr__(self, "state_dir", Path(self.state_dir))
        if self.allowed_hosts is not None:
            self._check_hosts()

    def _check_hosts(self) -> None:
        from .security import LOOPBACK_NAMES, split_host

        if isinstance(self.allowed_hosts, str):
            raise InvalidInputError("ServeConfig.allowed_hosts must be a list of host names, not one string")
        hosts = tuple(str(h).strip().lower() for h in self.allowed_hosts)
        for host in hosts:
            name, port = split_host(host)
            if not name or (port and not port.isdigit()) or any(ch in host for ch in "/@ \t,"):
                raise InvalidInputError(
                    f"allowed host {host!r} is not a host name: give 'name', 'name:port', '*.domain' or '*'"
                )
        if self.api_key is None and any(split_host(h)[0] not in LOOPBACK_NAMES for h in hosts):
            raise InvalidInputError(
                "allowed hosts other than 127.0.0.1, localhost and [::1] need an API key: without one, a web page "
                "elsewhere could reach this server by DNS rebinding; set an API key or drop those hosts"
            )
        object.__setattr__(self, "allowed_hosts", hosts)

    def host_check(self) -> tuple[str, ...] | None:
        """The ``Host`` names the server answers to (None: any); loopback only when there is no API key."""
        from .security import LOOPBACK_NAMES

        if self.allowed_hosts is not None:
            return self.allowed_hosts
        return LOOPBACK_NAMES if self.api_key is None else None

    def limits(self) -> dict[str, Any]:
        """The limits a client may want to know (everything but the key and the folders)."""
        hidden = {"api_key", "allowed_folders", "allowed_hosts", "state_dir"}
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in hidden}
        out["auth"] = self.api_key is not None
        out["from_path"] = bool(self.allowed_folders)
        return out
