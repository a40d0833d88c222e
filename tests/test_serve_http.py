"""The HTTP API against a real server on a free loopback port: every route's success and bad-input paths.

Each bad request must answer a JSON error with the right status and a one-line message, and leave
the index as it was.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import pytest
from _serve_fixtures import (
    QUESTIONS,
    LiveServer,
    assert_error,
    copy_index,
    png_bytes,
    sample_index,
    wait_job,
)
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

LIMITS = {
    "max_files": 3,
    "max_file_bytes": 300_000,
    "max_request_bytes": 1_000_000,
    "max_image_bytes": 200_000,
    "max_image_pixels": 400_000,
    "max_page_image_side": 600,
    "max_query_tokens": 64,
    "max_batch_queries": 4,
    "max_k": 100,
}


@pytest.fixture(scope="module")
def live(toy_encoder, tmp_path_factory):
    from sap_rag import SAPIndex
    from sap_rag.serve import ServeConfig, create_app

    path = copy_index(sample_index(toy_encoder, tmp_path_factory.getbasetemp()), tmp_path_factory.mktemp("http") / "i")
    index = SAPIndex.open(path, encoder=toy_encoder)
    server = LiveServer(create_app(index, config=ServeConfig(**LIMITS), mcp=False))
    yield server
    server.stop()
    index.close()


@pytest.fixture(scope="module")
def http(live):
    with live.client() as client:
        yield client


def snapshot(live) -> tuple:
    """What a failed call must not change: the documents and their page counts."""
    index = live.service.index
    return tuple((d, index.document(d).num_pages) for d in index.documents())


def upload_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("sap-rag-upload-*")}


def test_health_info_and_docs(http):
    assert http.get("/health").json() == {"status": "ok"}
    info = http.get("/info").json()
    assert info["stats"]["pages"] == 9 and info["stats"]["documents"] == 3
    assert info["limits"]["max_files"] == 3 and info["limits"]["auth"] is False
    schema = http.get("/openapi.json").json()
    for route in ("/search", "/search/image", "/search/batch", "/documents", "/jobs/{job_id}", "/pages/delete"):
        assert route in schema["paths"], route
    assert "multipart/form-data" in schema["paths"]["/documents"]["post"]["requestBody"]["content"]
    assert http.get("/docs").status_code == 200


def test_api_docs_load_their_scripts_from_the_server(http):
    pytest.importorskip("fastapi_offline")
    import re

    for page, kinds in (("/docs", ("swagger-ui-bundle.js", "swagger-ui.css")), ("/redoc", ("redoc.standalone.js",))):
        html = http.get(page).text
        urls = re.findall(r"""(?:src|href)=["']([^"']+\.(?:js|css))["']""", html)
        assert urls and all(u.startswith("/") for u in urls), urls  # nothing from a CDN
        for url in urls:
            assert http.get(url).status_code == 200, url
        assert all(any(u.endswith(k) for u in urls) for k in kinds), urls


def test_search_finds_the_answering_page(http):
    for question, (filename, page) in QUESTIONS.items():
        response = http.post("/search", json={"query": question, "k": 3, "snippet": 20})
        assert response.status_code == 200, response.text
        hits = response.json()["hits"]
        assert len(hits) == 3
        best = hits[0]
        assert best["metadata"]["filename"] == filename
        if page is not None:
            assert best["page_number"] == page
        assert best["page_id"] == f"{best['doc_id']}:p{best['page_number']}"
        assert 0 <= best["relevance"] <= 1 and best["score"] >= hits[1]["score"]
        assert len(best["text"]) <= 21  # cut to the snippet (plus an ellipsis)
        image = http.get(best["image_url"])
        assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(image.content)).format == "JPEG"


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        ({"query": ""}, 400, "InvalidInputError"),
        ({"query": "   "}, 400, "InvalidInputError"),
        ({"query": "x" * 2001}, 413, "LimitExceededError"),
        ({"query": "revenue " * 100}, 413, "LimitExceededError"),  # 800 characters, over 64 tokens
        ({"query": "revenue", "k": 0}, 400, "InvalidInputError"),
        ({"query": "revenue", "k": 101}, 413, "LimitExceededError"),
        ({"query": "revenue", "filter": {"$bad": 1}}, 400, "InvalidInputError"),
        ({"query": "revenue", "filter": {"year": {"$gt": "x", "$lt": []}}}, 400, "InvalidInputError"),
        ({"query": "revenue", "prefetch": 0}, 400, "InvalidInputError"),
        ({"query": "revenue", "snippet": -1}, 400, "InvalidInputError"),
        ({"query": "revenue", "two_stage": "sometimes"}, 422, "InvalidInputError"),
        ({"qu": "revenue"}, 422, "InvalidInputError"),
        ({"query": 12}, 422, "InvalidInputError"),
    ],
)
def test_search_bad_inputs(live, http, body, status, kind):
    before = snapshot(live)
    message = assert_error(http.post("/search", json=body), status, kind)
    assert len(message) < 1000
    assert snapshot(live) == before


def test_search_bad_bodies(live, http):
    before = snapshot(live)
    assert_error(http.post("/search", content=b"{not json", headers={"content-type": "application/json"}), 422)
    big = b'{"query": "' + b"a" * (1024 * 1024 + 10) + b'"}'
    assert_error(http.post("/search", content=big, headers={"content-type": "application/json"}), 413)
    lone = b'{"query": "bad \\ud800 text"}'  # a lone surrogate, escaped in valid JSON
    assert_error(http.post("/search", content=lone, headers={"content-type": "application/json"}), 400)
    assert_error(http.get("/search"), 405)
    assert_error(http.get("/no/such/route"), 404, "NotFoundError")
    assert snapshot(live) == before


def test_batch_search_matches_single_searches(http):
    questions = list(QUESTIONS)
    batch = http.post("/search/batch", json={"queries": questions, "k": 2, "snippet": None})
    assert batch.status_code == 200, batch.text
    for question, hits in zip(questions, batch.json()["results"]):
        single = http.post("/search", json={"query": question, "k": 2, "snippet": None}).json()["hits"]
        assert [h["page_id"] for h in hits] == [h["page_id"] for h in single]
        assert [h["score"] for h in hits] == pytest.approx([h["score"] for h in single], rel=1e-4)
    assert_error(http.post("/search/batch", json={"queries": ["a"] * 5}), 413, "LimitExceededError")
    assert_error(http.post("/search/batch", json={"queries": []}), 400, "InvalidInputError")
    message = assert_error(http.post("/search/batch", json={"queries": ["revenue", ""]}), 400, "InvalidInputError")
    assert "query #1" in message


def test_image_search_equals_in_process(live, http):
    index = live.service.index
    page = index.get_pages([index.document(index.documents()[0]).page_ids[0]])[0]
    picture = Image.open(page.image_path).convert("RGB")
    picture.thumbnail((300, 300))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    response = http.post("/search/image", files={"image": ("q.png", buffer.getvalue(), "image/png")}, data={"k": "3"})
    assert response.status_code == 200, response.text
    expected = index.search(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), k=3)
    hits = response.json()["hits"]
    assert [h["page_id"] for h in hits] == [h.page_id for h in expected]
    assert [h["score"] for h in hits] == pytest.approx([h.score for h in expected], rel=1e-5)
    before = snapshot(live)
    bad = {"image": ("q.png", b"not an image at all", "image/png")}
    assert_error(http.post("/search/image", files=bad), 422, "UnreadableInputError")
    wide = io.BytesIO()
    Image.new("RGB", (1000, 500), "white").save(wide, format="PNG")  # 500,000 pixels > 400,000
    files = {"image": ("wide.png", wide.getvalue(), "image/png")}
    assert_error(http.post("/search/image", files=files), 413, "LimitExceededError")
    noise = Image.frombytes("RGB", (300, 300), bytes(range(256)) * 1055)  # ~270 KB as PNG: over 200,000 bytes
    heavy = io.BytesIO()
    noise.save(heavy, format="BMP")
    files = {"image": ("heavy.bmp", heavy.getvalue(), "image/bmp")}
    assert_error(http.post("/search/image", files=files), 413, "LimitExceededError")
    assert_error(http.post("/search/image", data={"k": "3"}, files={"other": ("x", b"x")}), 400)
    assert_error(http.post("/search/image", json={"k": 3}), 400, "InvalidInputError")
    files = {"image": ("q.png", buffer.getvalue(), "image/png")}
    assert_error(http.post("/search/image", files=files, data={"filter": "[1]"}), 400, "InvalidInputError")
    assert_error(http.post("/search/image", files=files, data={"k": "many"}), 400, "InvalidInputError")
    assert snapshot(live) == before


def test_pages_by_id(live, http):
    index = live.service.index
    doc = index.documents()[0]
    first, second = index.document(doc).page_ids[:2]
    page = http.get(f"/pages/{first}").json()
    assert page["page_id"] == first and page["score"] == 0 and page["text"] == index.get_pages([first])[0].text
    both = http.get("/pages", params={"ids": f"{first},{doc}:p99,{second}"}).json()["pages"]
    assert [p and p["page_id"] for p in both] == [first, None, second]
    assert http.post("/pages/get", json={"page_ids": [second]}).json()["pages"][0]["page_id"] == second
    assert_error(http.get("/pages/not-a-page-id"), 400, "InvalidInputError")
    assert_error(http.get(f"/pages/{doc}:p99"), 404, "NotFoundError")
    assert_error(http.get("/pages", params={"ids": ""}), 400)
    assert_error(http.post("/pages/get", json={"page_ids": ["a:p0"]}), 400)


def test_page_image_and_overlay(live, http):
    index = live.service.index
    pid = index.document(index.documents()[0]).page_ids[0]
    png = http.get(f"/pages/{pid}/image", params={"format": "png", "max_side": 100})
    assert png.headers["content-type"] == "image/png"
    assert max(Image.open(io.BytesIO(png.content)).size) <= 100
    capped = Image.open(io.BytesIO(http.get(f"/pages/{pid}/image", params={"max_side": 5000}).content))
    assert max(capped.size) == 600  # the server's max_page_image_side
    overlay = http.get(f"/pages/{pid}/overlay.png", params={"max_side": 300})
    assert overlay.status_code == 200 and overlay.headers["content-type"] == "image/png"
    assert max(Image.open(io.BytesIO(overlay.content)).size) <= 300
    assert_error(http.get(f"/pages/{pid}/image", params={"format": "gif"}), 422)
    assert_error(http.get(f"/pages/{pid}/image", params={"quality": 0}), 400)
    assert_error(http.get(f"/pages/{pid}/image", params={"max_side": 0}), 400)
    assert_error(http.get(f"/pages/{pid[:-1]}77/image"), 404, "NotFoundError")
    assert_error(http.get("/pages/nope/overlay.png"), 400)


def test_documents(live, http):
    listed = http.get("/documents").json()
    assert listed["total"] == 3
    names = sorted(d["filename"] for d in listed["documents"])
    assert names == [p.name for p in sorted(Path("examples/data").glob("*.pdf"))] or len(names) == 3
    doc = listed["documents"][0]
    one = http.get(f"/documents/{doc['doc_id']}").json()
    assert one["pages"] == 3 and one["page_ids"] == doc["page_ids"]
    assert len(http.get("/documents", params={"offset": 1, "limit": 1}).json()["documents"]) == 1
    message = assert_error(http.get("/documents/nope"), 404, "DocumentNotFoundError")
    assert str(live.service.index.path) not in message  # the server's paths stay on the server


def test_upload_search_and_delete(live, http):
    before_dirs = upload_dirs()
    files = [
        ("files", ("alpha.png", png_bytes(101), "image/png")),
        ("files", ("beta.png", png_bytes(102), "image/png")),
    ]
    response = http.post("/documents", files=files, data={"metadata": '{"team": "qa"}'})
    assert response.status_code == 202, response.text
    job = wait_job(http, response.json()["job_id"])
    assert job["state"] == "done" and job["progress"] == {"files_done": 2, "files_total": 2, "pages_done": 2}
    assert [r["status"] for r in job["results"]] == ["added", "added"]
    doc_ids = [r["doc_id"] for r in job["results"]]
    document = http.get(f"/documents/{doc_ids[0]}").json()
    assert document["metadata"] == {"source": "alpha.png", "filename": "alpha.png", "team": "qa"}
    hits = http.post("/search", json={"query": "page", "k": 5, "filter": {"team": "qa"}}).json()["hits"]
    assert sorted(h["doc_id"] for h in hits) == sorted(doc_ids)
    again = wait_job(http, http.post("/documents", files=files[:1]).json()["job_id"])
    assert again["results"][0]["status"] == "unchanged" and again["results"][0]["doc_id"] == doc_ids[0]
    assert upload_dirs() == before_dirs  # every upload's private folder is removed
    assert http.delete(f"/documents/{doc_ids[0]}").json() == {"doc_id": doc_ids[0], "deleted_pages": 1}
    assert_error(http.delete(f"/documents/{doc_ids[0]}"), 404, "DocumentNotFoundError")
    assert http.post("/pages/delete", json={"page_ids": [f"{doc_ids[1]}:p1"]}).json() == {"deleted_pages": 1}
    assert http.get("/documents").json()["total"] == 3


def test_upload_bad_inputs_change_nothing(live, http):
    before, before_dirs = snapshot(live), upload_dirs()
    pdf = ("files", ("a.pdf", b"%PDF-1.4 broken", "application/pdf"))
    cases = [
        ([("files", ("notes.txt", b"hello", "text/plain"))], {}, 422, "UnreadableInputError"),
        ([("files", (f"p{i}.png", png_bytes(i), "image/png")) for i in range(4)], {}, 413, "LimitExceededError"),
        ([("files", ("big.png", b"\x89PNG" + b"0" * 300_001, "image/png"))], {}, 413, "LimitExceededError"),
        ([pdf], {"metadata": "{oops"}, 400, "InvalidInputError"),
        ([pdf], {"metadata": '{"source": "x"}'}, 400, "InvalidInputError"),
        ([pdf], {"metadata": '{"bad key.": 1}'}, 400, "InvalidInputError"),
        ([("other", ("a.pdf", b"%PDF-", "application/pdf"))], {}, 400, "InvalidInputError"),
        ([], {"metadata": "{}"}, 400, "InvalidInputError"),
    ]
    for files, data, status, kind in cases:
        assert_error(http.post("/documents", files=files or None, data=data), status, kind)
    assert_error(http.post("/documents", json={"files": []}), 400, "InvalidInputError")
    corrupt = wait_job(http, http.post("/documents", files=[pdf]).json()["job_id"])
    (result,) = corrupt["results"]
    assert result["status"] == "failed" and result["error_type"] == "UnreadableInputError"
    assert result["error"].startswith("a.pdf: ") and "sap-rag-upload" not in result["error"]
    assert_error(http.get("/jobs/nope"), 404, "NotFoundError")
    assert snapshot(live) == before
    assert upload_dirs() == before_dirs


def test_deletes_refuse_bad_ids(live, http):
    before = snapshot(live)
    doc = live.service.index.documents()[0]
    assert_error(http.post("/pages/delete", json={"page_ids": [f"{doc}:p1", f"{doc}:p9"]}), 404)
    assert_error(http.post("/pages/delete", json={"page_ids": ["nope"]}), 400, "InvalidInputError")
    assert_error(http.post("/pages/delete", json={"ids": []}), 422)
    assert_error(http.post("/documents/from-path", json={"paths": ["/etc"]}), 403, "ForbiddenPathError")
    assert snapshot(live) == before


def test_unexpected_error_is_a_one_line_500(live, http, monkeypatch):
    def broken() -> dict:
        raise RuntimeError("boom\n  deep inside")

    monkeypatch.setattr(live.service, "stats", broken)
    message = assert_error(http.get("/stats"), 500, "InternalError")
    assert "boom" not in message and "RuntimeError" in message
