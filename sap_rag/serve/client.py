"""``SAPClient``: a sap-rag server used like an ``SAPIndex`` (search, pages, documents, stats, upload, delete).

App workers need neither the model nor the index on disk: ``sap_rag.connect("http://host:8000")``
returns hits as the same :class:`~sap_rag.SearchHit` objects (``image_path`` is None; fetch the image
with :meth:`SAPClient.page_image`), and the server's errors are raised as the same ``SapRagError``
subclasses. The LangChain and LlamaIndex adapters take it in place of an index.

Needs ``httpx`` (``pip install 'sap-rag[serve]'``); imports nothing else of the server.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from ..errors import InvalidInputError, MissingDependencyError, SapRagError

logger = logging.getLogger(__name__)

__all__ = ["RemoteDocument", "SAPClient", "UploadReport", "connect"]

API_KEY_ENV = "SAP_RAG_API_KEY"


@dataclass(frozen=True)
class RemoteDocument:
    """A document on the server (what ``SAPIndex.document`` gives, without server-side image paths)."""

    doc_id: str
    num_pages: int
    num_vectors: int
    metadata: dict[str, Any]
    page_ids: list[str] = field(default_factory=list)
    page_numbers: list[int] = field(default_factory=list)
    image_paths: list[None] = field(default_factory=list)


@dataclass
class UploadReport:
    """What an upload job did: per file ``{"file", "doc_id", "pages", "status", "error", "error_type"}``."""

    job_id: str
    state: str
    results: list[dict[str, Any]]
    doc_ids: list[str] = field(default_factory=list)
    pages: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


def connect(url: str, api_key: str | None = None, **options: Any) -> SAPClient:
    """A :class:`SAPClient` for the server at ``url`` (the key defaults to ``$SAP_RAG_API_KEY``)."""
    return SAPClient(url, api_key=api_key, **options)


class SAPClient:
    """A sap-rag server with ``SAPIndex``'s read API, plus upload and delete.

    Args:
        url: the server, e.g. ``"http://127.0.0.1:8000"``.
        api_key: the server's API key (default: the ``SAP_RAG_API_KEY`` environment variable).
        timeout: seconds per request.
        transport: an ``httpx`` transport (tests, or ``httpx.ASGITransport(app)`` in-process).
    """

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 120.0, transport: Any = None) -> None:
        try:
            import httpx
        except ImportError as exc:
            raise MissingDependencyError(
                "the sap-rag client needs httpx: pip install 'sap-rag[serve]' (or pip install httpx)"
            ) from exc
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidInputError(f"the server url must start with http:// or https://, got {url!r}")
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)
        self._httpx = httpx

    def __repr__(self) -> str:  # never shows the key
        return f"SAPClient({self.url!r})"

    def __enter__(self) -> SAPClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool (the server and its index stay up)."""
        self._http.close()

    # --- plumbing --------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except self._httpx.TimeoutException as exc:
            raise SapRagError(f"the server at {self.url} did not answer in time ({type(exc).__name__})") from None
        except self._httpx.TransportError as exc:
            raise SapRagError(f"cannot reach the sap-rag server at {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise _error(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    # --- search ----------------------------------------------------------------------------------

    def search(
        self,
        query: str | Any,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        two_stage: bool | str | None = None,
        prefetch: int | None = None,
        coarse: int | None = None,
    ) -> list[Any]:
        """The ``k`` best pages for a text query or a ``PIL.Image`` (as ``SAPIndex.search``)."""
        if isinstance(query, (list, tuple)):
            raise InvalidInputError("search takes one query; use search_batch for a list of queries")
        if not isinstance(query, str):
            return self._search_image(query, k, filter)
        body = {"query": query, "k": k, "filter": filter, "snippet": None}
        body.update(_stage(two_stage, prefetch, coarse))
        return [_hit(h) for h in self._json("POST", "/search", json=body)["hits"]]

    def search_batch(
        self,
        queries: Sequence[str],
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        two_stage: bool | str | None = None,
        prefetch: int | None = None,
        coarse: int | None = None,
        show_progress: bool = False,
    ) -> list[list[Any]]:
        """:meth:`search` for several text queries in one request (images: call :meth:`search` each)."""
        if isinstance(queries, (str, bytes)) or not isinstance(queries, Sequence):
            raise InvalidInputError(f"queries must be a list of strings, got {type(queries).__name__}")
        if not all(isinstance(q, str) for q in queries):
            return [
                self.search(q, k, filter=filter, two_stage=two_stage, prefetch=prefetch, coarse=coarse) for q in queries
            ]
        body = {"queries": list(queries), "k": k, "filter": filter, "snippet": None}
        body.update(_stage(two_stage, prefetch, coarse))
        results = self._json("POST", "/search/batch", json=body)["results"]
        return [[_hit(h) for h in hits] for hits in results]

    def _search_image(self, image: Any, k: int, filter: Mapping[str, Any] | None) -> list[Any]:
        import io

        from PIL import Image

        if not isinstance(image, Image.Image):
            raise InvalidInputError(f"a query is a string or a PIL image, got {type(image).__name__}")
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data = {"k": str(k), "snippet": "null"}
        if filter is not None:
            data["filter"] = json.dumps(filter)
        files = {"image": ("query.png", buffer.getvalue(), "image/png")}
        response = self._json("POST", "/search/image", files=files, data=data)
        return [_hit(h) for h in response["hits"]]

    # --- pages and documents ---------------------------------------------------------------------

    def get_pages(self, page_ids: Sequence[str]) -> list[Any]:
        """The pages with these ids, in order; None for an id the index does not hold."""
        ids = [page_ids] if isinstance(page_ids, str) else list(page_ids)
        pages = self._json("POST", "/pages/get", json={"page_ids": ids})["pages"]
        return [None if p is None else _hit(p) for p in pages]

    def page_image(self, page_id: str, max_side: int | None = None, format: str = "jpeg", quality: int = 85) -> bytes:
        """The page's image as JPEG or PNG bytes, its longer side at most ``max_side`` (and the server's limit)."""
        params: dict[str, Any] = {"format": format, "quality": quality}
        if max_side is not None:
            params["max_side"] = max_side
        return self._request("GET", f"/pages/{_quote(page_id)}/image", params=params).content

    def overlay_png(self, page_id: str, max_side: int | None = None) -> bytes:
        """The page with its kept anchors drawn, as PNG bytes."""
        params = {"max_side": max_side} if max_side is not None else {}
        return self._request("GET", f"/pages/{_quote(page_id)}/overlay.png", params=params).content

    def document(self, doc_id: str) -> RemoteDocument:
        """What the index holds of one document (``DocumentNotFoundError`` when nothing)."""
        return _document(self._json("GET", f"/documents/{_quote(doc_id)}"))

    def documents(self, *, source: str | None = None) -> list[str]:
        """Ids of every document, sorted (with ``source``: those whose metadata ``source`` equals it)."""
        docs = self._json("GET", "/documents")["documents"]
        return sorted(d["doc_id"] for d in docs if source is None or d.get("source") == source)

    def list_documents(self, offset: int = 0, limit: int | None = None) -> list[RemoteDocument]:
        """The documents themselves (ids, pages, metadata), in id order."""
        params: dict[str, Any] = {"offset": offset}
        if limit is not None:
            params["limit"] = limit
        return [_document(d) for d in self._json("GET", "/documents", params=params)["documents"]]

    def stats(self) -> Any:
        """The index's ``IndexStats``."""
        from ..index.results import IndexStats

        data = self._json("GET", "/stats")
        names = IndexStats.__dataclass_fields__
        return IndexStats(**{name: data.get(name) for name in names})

    def info(self) -> dict[str, Any]:
        """Stats, model, limits and batching counters, as the server reports them."""
        return self._json("GET", "/info")

    def health(self) -> bool:
        """Whether the server answers ``/health``."""
        try:
            return self._json("GET", "/health").get("status") == "ok"
        except SapRagError:
            return False

    def __len__(self) -> int:
        """Number of pages."""
        return int(self._json("GET", "/stats")["pages"])

    def __contains__(self, doc_id: object) -> bool:
        if not isinstance(doc_id, str):
            return False
        from ..index.errors import DocumentNotFoundError

        try:
            self._json("GET", f"/documents/{_quote(doc_id)}")
        except DocumentNotFoundError:
            return False
        return True

    # --- changes ---------------------------------------------------------------------------------

    def add_documents(
        self,
        paths: str | os.PathLike | Iterable[str | os.PathLike],
        *,
        metadata: Mapping[str, Any] | None = None,
        wait: bool = True,
        skip_errors: bool = False,
        timeout: float | None = None,
        poll_s: float = 0.25,
    ) -> UploadReport:
        """Upload PDFs and images (files, or folders searched as ``sap-rag index`` does) and index them.

        Args:
            paths: files and/or folders on this machine.
            metadata: JSON data kept with every document.
            wait: poll the job until it is done (else return at once with state ``queued``).
            skip_errors: with ``wait``, report unreadable files instead of raising the first one's error.
            timeout: longest wait in seconds (None: no limit).
            poll_s: seconds between polls.

        Raises:
            The server's error for the first file that could not be indexed (unless ``skip_errors``);
            ``LimitExceededError`` for an upload over the server's limits.
        """
        from ..ingest.documents import discover

        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        files = discover(list(paths))
        handles = []
        try:
            parts = []
            for path in files:
                handle = open(path, "rb")
                handles.append(handle)
                kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                parts.append(("files", (path.name, handle, kind)))
            data = {"metadata": json.dumps(dict(metadata))} if metadata else {}
            job = self._json("POST", "/documents", files=parts, data=data)
        finally:
            for handle in handles:
                handle.close()
        if not wait:
            return _report(job)
        return self.wait_job(job["job_id"], timeout=timeout, poll_s=poll_s, skip_errors=skip_errors)

    def job(self, job_id: str) -> dict[str, Any]:
        """An upload job's state, progress and per-file results."""
        return self._json("GET", f"/jobs/{_quote(job_id)}")

    def wait_job(
        self, job_id: str, *, timeout: float | None = None, poll_s: float = 0.25, skip_errors: bool = False
    ) -> UploadReport:
        """Poll a job until it is done or failed; raise the first file's error unless ``skip_errors``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["state"] in ("done", "failed"):
                break
            if deadline is not None and time.monotonic() > deadline:
                raise SapRagError(f"job {job_id} is still {job['state']} after {timeout:g} s; poll it with job()")
            time.sleep(poll_s)
        report = _report(job)
        if job["state"] == "failed" and not report.results:
            raise SapRagError(f"job {job_id} failed: {job.get('error')}")
        if report.errors and not skip_errors:
            from .errors import error_class

            first = report.errors[0]
            raise error_class(first.get("error_type") or "SapRagError")(first.get("error") or "not indexed")
        return report

    def delete(self, doc_id: str, *, missing_ok: bool = False) -> int:
        """Remove a document; returns how many pages went."""
        from ..index.errors import DocumentNotFoundError

        try:
            return int(self._json("DELETE", f"/documents/{_quote(doc_id)}")["deleted_pages"])
        except DocumentNotFoundError:
            if missing_ok:
                return 0
            raise

    def delete_pages(self, page_ids: Sequence[str], *, missing_ok: bool = False) -> int:
        """Remove pages by id (each document's all or nothing); returns how many went."""
        ids = [page_ids] if isinstance(page_ids, str) else list(page_ids)
        if missing_ok:
            present = [p for p, hit in zip(ids, self.get_pages(ids)) if hit is not None]
            if not present:
                return 0
            ids = present
        return int(self._json("POST", "/pages/delete", json={"page_ids": ids})["deleted_pages"])


def _quote(value: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"an id must be a non-empty string, got {value!r}")
    return quote(value, safe="")


def _stage(two_stage: Any, prefetch: Any, coarse: Any) -> dict[str, Any]:
    return {"two_stage": two_stage, "prefetch": prefetch, "coarse": coarse}


def _hit(data: Mapping[str, Any]) -> Any:
    from ..index.results import SearchHit

    return SearchHit(
        doc_id=data["doc_id"],
        page_number=int(data["page_number"]),
        score=float(data["score"]),
        image_path=None,
        metadata=dict(data.get("metadata") or {}),
        point_id=int(data.get("point_id") or 0),
        text=data.get("text") or "",
        relevance=float(data.get("relevance") or 0.0),
        num_query_tokens=int(data.get("num_query_tokens") or 0),
        page_id=data.get("page_id") or "",
    )


def _document(data: Mapping[str, Any]) -> RemoteDocument:
    return RemoteDocument(
        doc_id=data["doc_id"],
        num_pages=int(data["pages"]),
        num_vectors=int(data.get("vectors") or 0),
        metadata=dict(data.get("metadata") or {}),
        page_ids=list(data.get("page_ids") or []),
        page_numbers=list(data.get("page_numbers") or []),
        image_paths=[None] * int(data["pages"]),
    )


def _report(job: Mapping[str, Any]) -> UploadReport:
    results = list(job.get("results") or [])
    ok = [r for r in results if r.get("status") in ("added", "unchanged")]
    return UploadReport(
        job_id=job["job_id"],
        state=job["state"],
        results=results,
        doc_ids=[r["doc_id"] for r in ok if r.get("doc_id")],
        pages=sum(int(r.get("pages") or 0) for r in results if r.get("status") == "added"),
        errors=[r for r in results if r.get("status") == "failed"],
    )


def _error(response: Any) -> SapRagError:
    """The server's JSON error as the same ``SapRagError`` subclass (or a ``SapRagError`` for others)."""
    from .errors import error_class

    try:
        error = response.json()["error"]
        kind, message = str(error["type"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        kind, message = "SapRagError", f"the server answered {response.status_code} {response.reason_phrase}"
    return error_class(kind)(message)
