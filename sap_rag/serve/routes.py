"""The HTTP API's routes (JSON in, JSON out; see ``docs/serve.md`` for the table).

Request bodies are pydantic models because FastAPI builds its validation and OpenAPI docs from
them; everything past the route is the package's own checks (the same errors as the library).
"""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..errors import InvalidInputError
from .errors import LimitExceededError
from .uploads import receive_multipart

__all__ = ["api_router"]


class SearchBody(BaseModel):
    query: str = Field(description="the question or keywords")
    k: int = Field(5, description="how many pages")
    filter: dict[str, Any] | None = Field(None, description="metadata filter with operators, as SAPIndex.search")
    two_stage: bool | Literal["auto"] | None = Field(None, description="staged search: true, false or 'auto'")
    prefetch: int | None = Field(None, description="candidates the exact stage reranks")
    coarse: int | None = Field(None, description="candidates of the first stage")
    snippet: int | None = Field(300, description="cut each hit's text to this many characters (null: all of it)")


class BatchBody(BaseModel):
    queries: list[str]
    k: int = 5
    filter: dict[str, Any] | None = None
    two_stage: bool | Literal["auto"] | None = None
    prefetch: int | None = None
    coarse: int | None = None
    snippet: int | None = 300


class PageIdsBody(BaseModel):
    page_ids: list[str]


class PathsBody(BaseModel):
    paths: list[str] = Field(description="absolute server-side files or folders inside an allowed folder")
    metadata: dict[str, Any] | None = None


_UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "metadata": {"type": "string", "description": "a JSON object kept with every document"},
                    },
                    "required": ["files"],
                }
            }
        },
    }
}

_IMAGE_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "image": {"type": "string", "format": "binary"},
                        "k": {"type": "integer", "default": 5},
                        "filter": {"type": "string", "description": "a JSON object"},
                        "snippet": {"type": "string", "default": "300", "description": "a number, or null"},
                    },
                    "required": ["image"],
                }
            }
        },
    }
}


_IDS_QUERY = Query(default=[], description="page ids, comma-separated or repeated")


def _service(request: Request) -> Any:
    return request.app.state.service


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _snippet(value: int | None) -> int | None:
    if value is not None and value < 0:
        raise InvalidInputError(f"snippet must be at least 0 (or null for the whole text), got {value}")
    return value


def api_router() -> APIRouter:
    from .app import check_json_object, hit_json

    router = APIRouter()

    @router.get("/health", tags=["server"], summary="liveness (no API key needed)")
    def health(request: Request) -> dict[str, Any]:
        return {"status": "ok"}

    @router.get("/info", tags=["server"], summary="index stats, model, limits, batching counters")
    def info(request: Request) -> dict[str, Any]:
        return _service(request).info()

    @router.get("/stats", tags=["server"], summary="index stats (as SAPIndex.stats)")
    def stats(request: Request) -> dict[str, Any]:
        return _service(request).stats()

    @router.post("/search", tags=["search"], summary="search by text")
    def search(body: SearchBody, request: Request) -> JSONResponse:
        started = time.perf_counter()
        snippet = _snippet(body.snippet)
        hits = _service(request).search(
            body.query, body.k, body.filter, two_stage=body.two_stage, prefetch=body.prefetch, coarse=body.coarse
        )
        root = _root(request)
        # A JSONResponse skips FastAPI's jsonable_encoder walk over every hit (plain JSON data already).
        took = (time.perf_counter() - started) * 1e3
        return JSONResponse({"hits": [hit_json(h, root, snippet) for h in hits], "took_ms": took})

    @router.post("/search/batch", tags=["search"], summary="search with several text queries")
    def search_batch(body: BatchBody, request: Request) -> JSONResponse:
        started = time.perf_counter()
        snippet = _snippet(body.snippet)
        results = _service(request).search_batch(
            body.queries, body.k, body.filter, two_stage=body.two_stage, prefetch=body.prefetch, coarse=body.coarse
        )
        root = _root(request)
        took = (time.perf_counter() - started) * 1e3
        return JSONResponse(
            {"results": [[hit_json(h, root, snippet) for h in hits] for hits in results], "took_ms": took}
        )

    @router.post("/search/image", tags=["search"], summary="search with an image", openapi_extra=_IMAGE_SCHEMA)
    async def search_image(request: Request) -> dict[str, Any]:
        started = time.perf_counter()
        service = _service(request)
        config = service.config
        uploads = await receive_multipart(
            request,
            file_fields=("image",),
            max_files=1,
            max_file_bytes=config.max_image_bytes,
            max_request_bytes=config.max_image_bytes + 256 * 1024,
            what="image search",
        )
        try:
            if not uploads.files:
                raise InvalidInputError("no image in the request; send it in the form field 'image'")
            k = _form_int(uploads.fields.get("k"), "k", 5)
            raw = uploads.fields.get("snippet")
            full = raw is not None and raw.strip().lower() in ("null", "none")
            snippet = None if full else _snippet(_form_int(raw, "snippet", 300))
            filters = check_json_object(uploads.fields.get("filter"), "filter")
            image = await run_in_threadpool(_open_query_image, uploads.files[0].path, uploads.files[0].name, config)
        finally:
            uploads.remove()
        hits = await run_in_threadpool(service.search, image, k, filters)
        root = _root(request)
        return {"hits": [hit_json(h, root, snippet) for h in hits], "took_ms": (time.perf_counter() - started) * 1e3}

    @router.get("/pages", tags=["pages"], summary="pages by id (?ids=a,b; null for ids the index lacks)")
    def pages(request: Request, ids: list[str] = _IDS_QUERY) -> dict[str, Any]:
        wanted = [part for value in ids for part in value.split(",") if part]
        if not wanted:
            raise InvalidInputError("give page ids: /pages?ids=report:p1,report:p2")
        root = _root(request)
        found = _service(request).get_pages(wanted)
        return {"pages": [None if h is None else hit_json(h, root) for h in found]}

    @router.post("/pages/get", tags=["pages"], summary="pages by id (ids of any characters; null for missing)")
    def pages_post(body: PageIdsBody, request: Request) -> dict[str, Any]:
        root = _root(request)
        found = _service(request).get_pages(body.page_ids)
        return {"pages": [None if h is None else hit_json(h, root) for h in found]}

    @router.post("/pages/delete", tags=["documents"], summary="delete pages by id (each document's all or nothing)")
    def delete_pages(body: PageIdsBody, request: Request) -> dict[str, Any]:
        return {"deleted_pages": _service(request).delete_pages(body.page_ids)}

    @router.get(
        "/pages/{page_id:path}/image",
        tags=["pages"],
        summary="the page image",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}},
    )
    def page_image(
        page_id: str,
        request: Request,
        max_side: int | None = None,
        format: Literal["jpeg", "jpg", "png"] = "jpeg",
        quality: int = 85,
    ) -> Response:
        data = _service(request).page_image(page_id, max_side, format, quality)
        media = "image/png" if format == "png" else "image/jpeg"
        return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=60"})

    @router.get(
        "/pages/{page_id:path}/overlay.png",
        tags=["pages"],
        summary="the page with its kept anchors drawn",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    def page_overlay(page_id: str, request: Request, max_side: int | None = None) -> Response:
        return Response(_service(request).overlay_png(page_id, max_side), media_type="image/png")

    @router.get("/pages/{page_id:path}", tags=["pages"], summary="one page: text and metadata (score 0)")
    def page(page_id: str, request: Request) -> dict[str, Any]:
        return hit_json(_service(request)._page(page_id), _root(request))

    @router.get("/documents", tags=["documents"], summary="documents, in id order")
    def documents(request: Request, offset: int = 0, limit: int | None = None) -> dict[str, Any]:
        service = _service(request)
        docs = service.documents(offset, limit)
        return {"documents": docs, "total": len(service.index.documents())}

    @router.post(
        "/documents",
        tags=["documents"],
        summary="upload PDFs and images (a job; poll /jobs/{job_id})",
        status_code=202,
        openapi_extra=_UPLOAD_SCHEMA,
    )
    async def upload(request: Request) -> dict[str, Any]:
        service = _service(request)
        config = service.config
        uploads = await receive_multipart(
            request,
            file_fields=("files", "file"),
            max_files=config.max_files,
            max_file_bytes=config.max_file_bytes,
            max_request_bytes=config.max_request_bytes,
        )
        try:
            metadata = check_json_object(uploads.fields.get("metadata"), "metadata")
        except BaseException:
            uploads.remove()
            raise
        job = await run_in_threadpool(service.add_uploads, uploads, metadata)
        return service.jobs.snapshot(job.job_id) or {"job_id": job.job_id}

    @router.post(
        "/documents/from-path",
        tags=["documents"],
        summary="index server-side files (only inside --allow-folder folders)",
        status_code=202,
    )
    def from_path(body: PathsBody, request: Request) -> dict[str, Any]:
        service = _service(request)
        job = service.add_paths(body.paths, body.metadata)
        return service.jobs.snapshot(job.job_id) or {"job_id": job.job_id}

    @router.get("/documents/{doc_id:path}", tags=["documents"], summary="one document")
    def document(doc_id: str, request: Request) -> dict[str, Any]:
        return _service(request).document(doc_id)

    @router.delete("/documents/{doc_id:path}", tags=["documents"], summary="delete a document")
    def delete_document(doc_id: str, request: Request) -> dict[str, Any]:
        return {"doc_id": doc_id, "deleted_pages": _service(request).delete(doc_id)}

    @router.get("/jobs/{job_id}", tags=["documents"], summary="an upload job's state, progress and per-file results")
    def job(job_id: str, request: Request) -> dict[str, Any]:
        from .errors import NotFoundError

        jobs = _service(request).jobs
        snapshot = jobs.snapshot(job_id)
        if snapshot is None and jobs.lost(job_id):
            raise NotFoundError(
                f"job {job_id!r} is unknown: the server restarted before it finished; the files it reported "
                "added are indexed, upload the others again (what is already indexed comes back unchanged)"
            )
        if snapshot is None:
            where = "" if jobs.log is not None else ", and on restart without a state folder"
            raise NotFoundError(f"no job {job_id!r} (finished jobs are forgotten after a while{where})")
        return snapshot

    return router


def _form_int(value: str | None, name: str, default: int) -> int:
    if value is None or not value.strip():
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidInputError(f"{name} takes a whole number, got {value!r}") from None


def _open_query_image(path: Any, name: str, config: Any) -> Any:
    """The uploaded query image, its size checked against the limit before its pixels are decoded."""
    from PIL import Image, UnidentifiedImageError

    from ..errors import UnreadableInputError
    from ..ingest.images import load_image

    try:
        with Image.open(path) as probe:
            width, height = probe.size
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise UnreadableInputError(f"{name}: not a readable image ({type(exc).__name__})") from None
    if width * height > config.max_image_pixels:
        raise LimitExceededError(
            f"{name} is {width} x {height} pixels; this server takes query images of at most "
            f"{config.max_image_pixels:,} pixels: scale it down"
        )
    return load_image(path, name=name)
