"""Security: the API key (on every route but /health and the page, constant-time, never logged), the
refusal to listen beyond loopback without a key, and server-side paths only inside allowed folders."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from _serve_fixtures import LiveServer, assert_error, captured_logs, copy_index, png_bytes, sample_index, wait_job

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

KEY = "k3y-for-tests-0123456789"


@pytest.fixture(scope="module")
def allowed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("allowed")
    (folder / "inside.png").write_bytes(png_bytes(301))
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.png").write_bytes(png_bytes(302))
    (folder / "link-out.png").symlink_to(outside / "secret.png")
    (folder / "sub").mkdir()
    (folder / "sub" / "dir-link").symlink_to(outside, target_is_directory=True)
    return folder, outside


@pytest.fixture(scope="module")
def live(toy_encoder, tmp_path_factory, allowed):
    from sap_rag import SAPIndex
    from sap_rag.serve import ServeConfig, create_app

    path = copy_index(sample_index(toy_encoder, tmp_path_factory.getbasetemp()), tmp_path_factory.mktemp("auth") / "i")
    index = SAPIndex.open(path, encoder=toy_encoder)
    config = ServeConfig(api_key=KEY, allowed_folders=(allowed[0],))
    server = LiveServer(create_app(index, config=config, mcp=False))
    yield server
    server.stop()
    index.close()


ROUTES = [
    ("GET", "/info", None),
    ("GET", "/stats", None),
    ("GET", "/openapi.json", None),
    ("GET", "/docs", None),
    ("GET", "/documents", None),
    ("POST", "/search", {"query": "revenue"}),
    ("POST", "/search/batch", {"queries": ["revenue"]}),
    ("POST", "/pages/delete", {"page_ids": ["x:p1"]}),
    ("DELETE", "/documents/anything", None),
    ("GET", "/jobs/1", None),
    ("GET", "/pages/x:p1/image", None),
]


def test_every_route_needs_the_key(live):
    before = len(live.service.index)
    with live.client() as http, live.client(Authorization="Bearer wrong-key-123") as wrong:
        for method, path, body in ROUTES:
            for client in (http, wrong):
                response = client.request(method, path, json=body)
                message = assert_error(response, 401, "AuthError")
                assert KEY not in message
        assert http.get("/health").json() == {"status": "ok"}
        assert http.get("/").status_code == 200
        assert_error(http.post("/documents", files=[("files", ("a.png", png_bytes(1), "image/png"))]), 401)
    assert len(live.service.index) == before


def test_the_key_opens_every_route(live):
    with live.client(Authorization=f"Bearer {KEY}") as bearer, live.client(**{"X-API-Key": KEY}) as header:
        for client in (bearer, header):
            assert client.get("/info").json()["limits"]["auth"] is True
            assert client.post("/search", json={"query": "revenue", "k": 1}).status_code == 200
            assert client.get("/openapi.json").status_code == 200
    import sap_rag

    with sap_rag.connect(live.url, api_key=KEY) as remote:
        assert len(remote.search("revenue", k=2)) == 2
        assert KEY not in repr(remote)
    os.environ["SAP_RAG_API_KEY"] = KEY
    try:
        with sap_rag.connect(live.url) as remote:
            assert len(remote) == len(live.service.index)
    finally:
        del os.environ["SAP_RAG_API_KEY"]
    from sap_rag.serve.errors import AuthError

    with sap_rag.connect(live.url, api_key="wrong-key-123") as remote, pytest.raises(AuthError):
        remote.search("revenue")


def test_the_key_is_compared_in_constant_time_and_never_logged(live, monkeypatch):
    import hmac

    from sap_rag.serve import auth

    calls = []
    original = hmac.compare_digest

    def spy(a, b):
        calls.append((len(a), len(b)))
        return original(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    with captured_logs() as logs:
        with live.client(Authorization=f"Bearer {KEY}") as good, live.client(**{"X-API-Key": KEY + "x"}) as bad:
            assert good.get("/info").status_code == 200
            assert bad.get("/info").status_code == 401
            assert good.get("/pages/nope:p1").status_code == 404
    text = logs.getvalue()
    assert calls and all(b == len(KEY) for _, b in calls)
    assert "/info" in text  # the access log and the refusal were logged...
    assert KEY not in text  # ...without the key


def test_from_path_reads_only_allowed_folders(live, allowed):
    folder, outside = allowed
    before = len(live.service.index)
    with live.client(Authorization=f"Bearer {KEY}") as http:
        for path, status in [
            (str(outside / "secret.png"), 403),
            (str(folder / "link-out.png"), 403),  # a link inside that leads out
            (str(folder / ".." / outside.name / "secret.png"), 403),
            (str(folder / "sub" / "dir-link" / "secret.png"), 403),
            ("relative/path.png", 400),
            (str(folder / "missing.png"), 400),
            ("/etc/passwd", 403),
        ]:
            message = assert_error(http.post("/documents/from-path", json={"paths": [path]}), status)
            assert "secret" not in message or status == 403
        assert len(live.service.index) == before
        response = http.post("/documents/from-path", json={"paths": [str(folder)], "metadata": {"origin": "disk"}})
        assert response.status_code == 202, response.text
        job = wait_job(http, response.json()["job_id"])
    # The folder's own file only: the links out of it (to a file, to a folder) are skipped.
    assert [r["file"] for r in job["results"]] == [str(folder / "inside.png")]
    assert job["results"][0]["status"] == "added"
    live.service.index.delete(job["results"][0]["doc_id"])
    assert len(live.service.index) == before


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "SAP_RAG_API_KEY"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", "import sys; from sap_rag.cli import main; sys.exit(main())", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=full_env,
    )


def test_serve_refuses_a_public_host_without_a_key(tmp_path):
    result = run_cli("serve", "--index", str(tmp_path / "idx"), "--host", "0.0.0.0")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing to listen on 0.0.0.0 without an API key" in lines[0]
    assert not (tmp_path / "idx").exists()  # refused before anything was made
    result = run_cli("serve", "--index", str(tmp_path / "idx"), "--host", "::", "--api-key", "short")
    assert result.returncode == 1 and "at least 8 characters" in result.stderr and "short" not in result.stderr
    result = run_cli("serve", "--index", str(tmp_path / "idx"), "--allow-folder", str(tmp_path / "nope"))
    assert result.returncode == 1 and "no such folder" in result.stderr
    result = run_cli("serve", "--index", str(tmp_path / "idx"), "--allowed-host", "search.example.org")
    assert result.returncode == 1 and "need an API key" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "idx").exists()


def test_loopback_hosts():
    from sap_rag.serve.config import ServeConfig, is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "127.9.9.9", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.4", "example.org", ""))
    assert "k3y" not in repr(ServeConfig(api_key=KEY))
    from sap_rag import InvalidInputError

    with pytest.raises(InvalidInputError):
        ServeConfig(max_files=0)
    with pytest.raises(InvalidInputError):
        ServeConfig(max_wait_ms=-1.0)
