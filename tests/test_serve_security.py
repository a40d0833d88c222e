"""Host and Origin checks: DNS rebinding (a forged Host) and cross-site unsafe requests, on a real server.

Without an API key the server answers only loopback Host names; with one the allowed names are
configurable (default any). A POST/PUT/PATCH/DELETE whose Origin is another site is refused with 403
and changes nothing; same-origin requests (the web page) and requests without an Origin (the client) pass.
"""

# ruff: noqa: F811  (pytest fixtures imported from _serve_fixtures are parameters here)
from __future__ import annotations

import os

import pytest
from _serve_fixtures import assert_error, png_bytes, shared_index, shared_live, wait_job  # noqa: F401

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

KEY = "k3y-for-security-tests-01"


def test_a_forged_host_is_refused_without_a_key(shared_live):
    port = shared_live.port
    with shared_live.client() as http:
        for path in ("/info", "/health", "/", "/documents", "/openapi.json", "/static/app.js", "/mcp"):
            for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}", f"0.0.0.0:{port}"):
                message = assert_error(http.get(path, headers={"Host": host}), 400, "HostNotAllowedError")
                assert "127.0.0.1, localhost and [::1]" in message
        response = http.post("/search", json={"query": "revenue"}, headers={"Host": f"rebind.example:{port}"})
        assert_error(response, 400, "HostNotAllowedError")
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}", "localhost"):
            assert http.get("/info", headers={"Host": host}).status_code == 200, host


def test_a_cross_site_upload_or_delete_is_refused_and_changes_nothing(shared_live):
    before = len(shared_live.service.index)
    docs_before = list(shared_live.service.index.documents())
    files = [("files", ("cross.png", png_bytes(911), "image/png"))]
    with shared_live.client() as http:
        for origin in ("http://evil.example", f"http://localhost:{shared_live.port}", "null", "https://127.0.0.1"):
            response = http.post("/documents", files=files, headers={"Origin": origin})
            message = assert_error(response, 403, "CrossSiteRequestError")
            assert "cross-site" in message
            response = http.delete(f"/documents/{docs_before[0]}", headers={"Origin": origin})
            assert_error(response, 403, "CrossSiteRequestError")
            response = http.post(
                "/pages/delete", json={"page_ids": [f"{docs_before[0]}:p1"]}, headers={"Origin": origin}
            )
            assert_error(response, 403, "CrossSiteRequestError")
        # Reading with a foreign Origin is allowed: no CORS headers, so a browser keeps the answer from the page.
        response = http.get("/info", headers={"Origin": "http://evil.example"})
        assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
        assert len(shared_live.service.index) == before
        assert list(shared_live.service.index.documents()) == docs_before
        # The page's own origin, and no Origin at all (the Python client, curl), are served.
        same = shared_live.url
        ok = http.post("/search", json={"query": "revenue", "k": 1}, headers={"Origin": same})
        assert ok.status_code == 200 and len(ok.json()["hits"]) == 1
        response = http.post("/documents", files=files, headers={"Origin": same})
        assert response.status_code == 202, response.text
        job = wait_job(http, response.json()["job_id"])
        assert job["state"] == "done", job
        doc_id = job["results"][0]["doc_id"]
        assert http.delete(f"/documents/{doc_id}").status_code == 200
    assert len(shared_live.service.index) == before


def test_with_a_key_the_allowed_hosts_are_configurable(shared_index, toy_encoder, tmp_path):
    from _serve_fixtures import LiveServer, copy_index

    from sap_rag import SAPIndex
    from sap_rag.serve import ServeConfig, create_app

    index = SAPIndex.open(copy_index(shared_index, tmp_path / "idx"), encoder=toy_encoder, read_only=True)
    config = ServeConfig(api_key=KEY, allowed_hosts=("search.example.org", "*.internal", "127.0.0.1"))
    server = LiveServer(create_app(index, config=config, mcp=False))
    auth = {"Authorization": f"Bearer {KEY}"}
    try:
        with server.client(**auth) as http:
            for host in (
                "search.example.org",
                "search.example.org:443",
                "a.b.internal:8000",
                f"127.0.0.1:{server.port}",
            ):
                assert http.get("/info", headers={"Host": host}).status_code == 200, host
            for host in ("evil.example", "internal", f"localhost:{server.port}"):
                assert_error(http.get("/info", headers={"Host": host}), 400, "HostNotAllowedError")
            # The Origin check holds with a key as well (a browser would send the key it was given).
            response = http.post("/search", json={"query": "x"}, headers={"Origin": "https://evil.example"})
            assert_error(response, 403, "CrossSiteRequestError")
            response = http.post(
                "/search",
                json={"query": "revenue", "k": 1},
                headers={"Origin": "https://search.example.org", "Host": "search.example.org"},
            )
            assert response.status_code == 200  # same site behind a TLS proxy that keeps Host
    finally:
        server.stop()
        index.close()


def test_host_config_is_checked():
    from sap_rag import InvalidInputError
    from sap_rag.serve import ServeConfig

    assert ServeConfig().host_check() == ("127.0.0.1", "localhost", "[::1]")
    assert ServeConfig(api_key=KEY).host_check() is None
    assert ServeConfig(allowed_hosts=("LocalHost",)).host_check() == ("localhost",)
    with pytest.raises(InvalidInputError, match="need an API key"):
        ServeConfig(allowed_hosts=("example.org",))
    with pytest.raises(InvalidInputError, match="need an API key"):
        ServeConfig(allowed_hosts=("*",))
    for bad in ("a b", "http://x", "x:port", ""):
        with pytest.raises(InvalidInputError, match="not a host name"):
            ServeConfig(api_key=KEY, allowed_hosts=(bad,))
    with pytest.raises(InvalidInputError, match="list of host names"):
        ServeConfig(api_key=KEY, allowed_hosts="example.org")


def test_stale_upload_folders_of_dead_servers_are_removed(tmp_path):
    import subprocess
    import sys

    from sap_rag.serve.uploads import private_dir, remove_stale_uploads

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(30)  # a pid that no longer runs
    root, outside = tmp_path / "tmp", tmp_path / "outside"
    root.mkdir(), outside.mkdir()
    (outside / "keep.txt").write_text("not the server's")
    dead = root / f"sap-rag-upload-{gone.pid}-abc123"
    (dead / "00000").mkdir(parents=True)
    (dead / "00000" / "report.pdf").write_bytes(b"%PDF")
    (dead / "00000" / "link").symlink_to(outside / "keep.txt")
    (dead / "dir-link").symlink_to(outside, target_is_directory=True)
    alive = root / f"sap-rag-upload-{os.getppid()}-def456"  # a live process: another server's folder
    alive.mkdir()
    mine = root / f"sap-rag-upload-{os.getpid()}-ghi789"
    mine.mkdir()
    link = root / f"sap-rag-upload-{gone.pid}-link00"  # a link with a dead pid's name is not followed
    link.symlink_to(outside, target_is_directory=True)
    legacy, other = root / "sap-rag-upload-x1y2z3", root / f"other-{gone.pid}-abc"
    legacy.mkdir(), other.mkdir()

    assert remove_stale_uploads(root) == 1
    assert not dead.exists()
    assert sorted(p.name for p in root.iterdir()) == sorted(p.name for p in (alive, mine, link, legacy, other))
    assert (outside / "keep.txt").read_text() == "not the server's"
    made = private_dir()
    try:
        assert made.name.startswith(f"sap-rag-upload-{os.getpid()}-") and oct(made.stat().st_mode)[-3:] == "700"
    finally:
        made.rmdir()
