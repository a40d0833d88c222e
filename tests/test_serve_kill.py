"""What the server acknowledged survives ``kill -9``: ``sap-rag serve`` as a process, killed mid-upload, restarted.

Every document a job reported as added is there, whole; no document is there in part; the index's
own check finds nothing stray after the restart's recovery.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _serve_fixtures import ROOT, free_port, png_bytes, tiff_bytes, wait_job

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

TOY = ROOT / "models" / "sap-rag-toy-colqwen2"


def start(index: Path, log: Path, *extra: str, tmp: Path | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    code = "import sys; from sap_rag.cli import main; sys.exit(main())"
    state = index.parent / "state"  # the server's own state folder: finished jobs, outside the index
    args = [sys.executable, "-c", code, "serve", "--index", str(index), "--port", str(port), "--no-mcp"]
    args += ["--state-dir", str(state), *extra]
    with open(log, "ab") as out:
        env = dict(os.environ, TMPDIR=str(tmp)) if tmp is not None else None
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"sap-rag serve exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"sap-rag serve did not answer in 180 s: {log.read_text()[-2000:]}")


def test_acknowledged_documents_survive_kill_9(tmp_path):
    from sap_rag import SAPIndex
    from sap_rag.ingest import content_id

    index, log, tmp = tmp_path / "idx", tmp_path / "server.log", tmp_path / "tmp"
    tmp.mkdir()  # the servers' temporary folder: where uploads stream to, and a killed server leaves them
    first = {"p0.png": png_bytes(400)}
    bulk = {f"scan{i}.tiff": tiff_bytes([500 + 10 * i + j for j in range(3)]) for i in range(5)}
    expected_pages = {content_id(data): 1 for data in first.values()} | {content_id(d): 3 for d in bulk.values()}

    started = time.monotonic()
    process, url = start(index, log, "--model", str(TOY), tmp=tmp)
    print(f"first start: {time.monotonic() - started:.1f} s")
    acknowledged: dict[str, int] = {}
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            files = [("files", (name, data, "image/png")) for name, data in first.items()]
            job = wait_job(http, http.post("/documents", files=files).json()["job_id"])
            assert job["state"] == "done"
            first_job = job
            acknowledged |= {r["doc_id"]: r["pages"] for r in job["results"]}
            files = [("files", (name, data, "image/tiff")) for name, data in bulk.items()]
            job_id = http.post("/documents", files=files).json()["job_id"]
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                state = http.get(f"/jobs/{job_id}").json()
                if state["progress"]["files_done"] >= 1 or state["state"] not in ("queued", "running"):
                    break
                time.sleep(0.02)
            acknowledged |= {r["doc_id"]: r["pages"] for r in state["results"] if r["status"] == "added"}
            os.kill(process.pid, signal.SIGKILL)  # mid-job: later files are being encoded or written
            process.wait(30)
        assert state["state"] == "running" and state["progress"]["files_done"] < len(bulk), state
    finally:
        if process.poll() is None:
            process.kill()
    left = list(tmp.glob(f"sap-rag-upload-{process.pid}-*"))
    assert len(left) == 1 and any(left[0].rglob("*.tiff")), left  # the killed job's files stayed behind

    started = time.monotonic()
    process, url = start(index, log, tmp=tmp)
    assert not left[0].exists()  # ...until the next start removed them (their owner is gone)
    print(f"restart: {time.monotonic() - started:.1f} s")
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            # A job finished before the kill answers as it did; the one the kill cut off says so.
            assert http.get(f"/jobs/{first_job['job_id']}").json() == first_job
            response = http.get(f"/jobs/{job_id}")
            assert response.status_code == 404 and "restarted before it finished" in response.json()["error"]["message"]
            assert http.get("/jobs/1-000000000000").status_code == 404
            documents = {d["doc_id"]: d["pages"] for d in http.get("/documents").json()["documents"]}
            for doc_id, pages in acknowledged.items():
                assert documents.get(doc_id) == pages, (doc_id, pages, documents)
            for doc_id, pages in documents.items():
                assert pages == expected_pages[doc_id], (doc_id, pages)  # never a document in part
            hits = http.post("/search", json={"query": "page", "k": 100}).json()["hits"]
            assert sorted({h["doc_id"] for h in hits}) == sorted(documents)
            assert len(hits) == sum(documents.values())
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
    with SAPIndex.open(index) as reopened:
        check = reopened.check()
    assert check.ok and check.stray_points == 0, check
