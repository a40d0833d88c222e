"""Server benchmark: ``sap-rag serve`` under 1, 4 and 16 concurrent clients, with and without a bulk upload beside them.

What it measures (the toy model by default; the server is a separate process, the clients are
threads of this one, each with its own HTTP connection):

1. In-process baseline: ``SAPIndex.search`` called in a loop for ``--seconds`` (one thread):
   queries/s and p50/p99 latency.
2. For each number of clients, ``--seconds`` of searching (the six demo questions in turn), first
   alone, then while a bulk upload runs (multi-page TIFF documents, one job after another):
   queries/s, p50/p99 latency, errors, pages indexed meanwhile, and queries/s over the in-process
   baseline's.
3. Micro-batching on (``--max-batch 32``) against off (``--max-batch 1``, a second server) at 16
   clients, no upload.
4. The server's memory: resident now and at its peak (``VmRSS`` / ``VmHWM``).
5. ``kill -9`` of the server during a bulk upload, a restart, and a check that every document a job
   acknowledged is there whole and none is there in part.

Run (the machine is shared: run it niced, and say so next to the numbers)::

    nice -n 10 .venv/bin/python bench/serve.py --out bench/results/serve.json

Not a test.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

QUESTIONS = [
    "What was the revenue of Acme Industries in 2022?",
    "In which year were the emissions of Acme Industries highest?",
    "What was the water use of Borealis Energy in 2021?",
    "How did the profit of Borealis Energy change between 2019 and 2023?",
    "How many customers did Cobalt Health have in 2023?",
    "What was the research spending of Cobalt Health in 2020?",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def page_tiff(seed: int, pages: int = 3) -> bytes:
    """A multi-page TIFF of synthetic report-like pages (one document of ``pages`` pages)."""
    import numpy as np
    from PIL import Image, ImageDraw

    frames = []
    for p in range(pages):
        rng = np.random.default_rng(seed * 100 + p)
        image = Image.new("RGB", (360, 480), "white")
        draw = ImageDraw.Draw(image)
        for row in range(int(rng.integers(6, 14))):
            y = 20 + row * 30
            draw.rectangle([20, y, 20 + int(rng.integers(80, 320)), y + 8], fill=(20, 20, 20))
        draw.text((20, 450), f"document {seed} page {p + 1}", fill=(0, 0, 0))
        frames.append(image)
    buffer = io.BytesIO()
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


class Server:
    """``sap-rag serve`` as a child process on a free loopback port."""

    def __init__(self, index: Path, log: Path, *extra: str) -> None:
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        code = "import sys; from sap_rag.cli import main; sys.exit(main())"
        args = [sys.executable, "-c", code, "serve", "--index", str(index), "--port", str(self.port), "--no-mcp"]
        args += ["--state-dir", str(index.parent / "serve-state")]  # beside the bench's index, not in ~/.local/state
        with open(log, "ab") as out:
            self.process = subprocess.Popen([*args, *extra], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        started = time.monotonic()
        while time.monotonic() - started < 300:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    self.start_s = time.monotonic() - started
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.process.kill()
        raise RuntimeError("the server did not start in 300 s")

    def memory(self) -> dict[str, float]:
        """Resident memory now and at its peak, MiB (Linux /proc)."""
        out = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
        return {"rss_mib": out.get("VmRSS", 0.0), "peak_rss_mib": out.get("VmHWM", 0.0)}

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def warm_up(url: str, seconds: float = 3.0) -> None:
    """Each question once, then a burst of 16 clients: the first passes of a fresh process (and of each
    new query length) are many times slower than the rest, and are not what the runs measure."""
    import httpx

    with httpx.Client(base_url=url, timeout=300) as http:
        for question in QUESTIONS:
            http.post("/search", json={"query": question, "k": 5})
    run_clients(url, 16, seconds)


def run_clients(url: str, clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` threads searching for ``seconds``: queries/s, latency percentiles (ms), errors."""
    import httpx

    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    barrier = threading.Barrier(clients + 1)
    stop = threading.Event()

    def client(i: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            barrier.wait()
            n = i
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    ok = http.post("/search", json={"query": QUESTIONS[n % 6], "k": 5}).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies[i].append((time.perf_counter() - started) * 1e3)
                else:
                    errors[i] += 1
                n += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(300)
    elapsed = time.perf_counter() - started
    flat = [x for per in latencies for x in per]
    return {
        "clients": clients,
        "queries": len(flat),
        "qps": len(flat) / elapsed,
        "p50_ms": percentile(flat, 0.5),
        "p99_ms": percentile(flat, 0.99),
        "errors": sum(errors),
    }


class BulkUpload:
    """Upload jobs of multi-page documents one after another until stopped; counts the pages indexed."""

    def __init__(self, url: str, first_seed: int, docs_per_job: int = 4) -> None:
        self.url = url
        self.seed = first_seed
        self.docs_per_job = docs_per_job
        self.pages = 0
        self.acknowledged: dict[str, int] = {}
        self.last_job: dict[str, Any] | None = None
        self.expected: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> BulkUpload:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(600)

    def _run(self) -> None:
        import httpx

        from sap_rag.ingest import content_id

        with httpx.Client(base_url=self.url, timeout=120) as http:
            while not self._stop.is_set():
                files = []
                for _ in range(self.docs_per_job):
                    data = page_tiff(self.seed)
                    self.expected[content_id(data)] = 3
                    files.append(("files", (f"bulk{self.seed}.tiff", data, "image/tiff")))
                    self.seed += 1
                try:
                    job_id = http.post("/documents", files=files).json()["job_id"]
                    while True:
                        job = http.get(f"/jobs/{job_id}").json()
                        self.last_job = job
                        for r in job["results"]:
                            if r["status"] == "added" and r["doc_id"] not in self.acknowledged:
                                self.acknowledged[r["doc_id"]] = r["pages"]
                                self.pages += r["pages"]
                        if job["state"] in ("done", "failed") or self._stop.is_set():
                            break
                        time.sleep(0.05)
                except httpx.HTTPError:
                    return  # the server went away (the kill -9 part)


def in_process_baseline(index_dir: Path, model: str, seconds: float, threads: int | None) -> dict[str, Any]:
    import torch

    from sap_rag import SAPIndex, load_encoder

    if threads is not None:
        torch.set_num_threads(threads)
    encoder = load_encoder(model)
    with SAPIndex.open(index_dir, encoder=encoder, read_only=True) as index:
        for question in QUESTIONS:
            index.search(question, k=5)  # warm up, as the servers are
        latencies = []
        started = time.perf_counter()
        n = 0
        while time.perf_counter() - started < seconds:
            t0 = time.perf_counter()
            index.search(QUESTIONS[n % 6], k=5)
            latencies.append((time.perf_counter() - t0) * 1e3)
            n += 1
        elapsed = time.perf_counter() - started
    return {"qps": n / elapsed, "p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99)}


def service_batching(index_dir: Path, model: str, seconds: float, threads: int | None) -> dict[str, Any]:
    """16 threads calling ``IndexService.search`` in this process (no HTTP), batching on and off:
    what the micro-batcher gains where the HTTP stack is not the limit."""
    import torch

    from sap_rag import SAPIndex, load_encoder
    from sap_rag.serve.config import ServeConfig
    from sap_rag.serve.service import IndexService

    if threads is not None:
        torch.set_num_threads(threads)
    out: dict[str, Any] = {}
    with SAPIndex.open(index_dir, encoder=load_encoder(model)) as index:
        for question in QUESTIONS:
            index.search(question, k=5)
        for max_batch in (32, 1):
            service = IndexService(index, config=ServeConfig(max_batch=max_batch))
            stop = threading.Event()
            counts = [0] * 16

            def worker(i: int, service: Any = service, stop: threading.Event = stop, counts: list = counts) -> None:
                n = i
                while not stop.is_set():
                    service.search(QUESTIONS[n % 6], 5)
                    counts[i] += 1
                    n += 1

            workers = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
            started = time.perf_counter()
            for thread in workers:
                thread.start()
            time.sleep(seconds)
            stop.set()
            for thread in workers:
                thread.join(300)
            out[f"max_batch_{max_batch}"] = {
                "qps": sum(counts) / (time.perf_counter() - started),
                "mean_batch": service.batcher.stats.mean,
            }
            service.close()
    out["gain"] = out["max_batch_32"]["qps"] / out["max_batch_1"]["qps"]
    return out


def build_index(index_dir: Path, model: str) -> None:
    from sap_rag import SAPIndex, load_encoder

    with SAPIndex.create(index_dir, encoder=load_encoder(model)) as index:
        index.add_documents(sorted((ROOT / "examples" / "data").glob("*.pdf")))


def kill_9_check(index_dir: Path, log: Path, seed: int, threads: list[str]) -> dict[str, Any]:
    """Kill -9 the server during a bulk upload, restart it, and compare what it holds with what it acknowledged."""
    import httpx

    server = Server(index_dir, log, *threads)
    before = {d["doc_id"]: d["pages"] for d in httpx.get(f"{server.url}/documents", timeout=60).json()["documents"]}
    with BulkUpload(server.url, seed, docs_per_job=6) as bulk:
        deadline = time.monotonic() + 300
        while bulk.pages < 6 and time.monotonic() < deadline:  # at least two documents acknowledged
            time.sleep(0.05)
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(60)
    acknowledged = dict(bulk.acknowledged)
    expected = {**before, **bulk.expected}
    restarted = Server(index_dir, log, *threads)
    try:
        after = {
            d["doc_id"]: d["pages"] for d in httpx.get(f"{restarted.url}/documents", timeout=60).json()["documents"]
        }
    finally:
        restarted.stop()
    from sap_rag import SAPIndex

    with SAPIndex.open(index_dir) as index:
        check = index.check()
    lost = [d for d, n in acknowledged.items() if after.get(d) != n]
    partial = [d for d, n in after.items() if n != expected.get(d)]
    return {
        "acknowledged_before_kill": len(acknowledged),
        "documents_after_restart": len(after),
        "new_documents_after_restart": len(set(after) - set(before)),
        "acknowledged_missing_or_changed": lost,
        "partial_documents": partial,
        "index_check_ok": check.ok,
        "stray_points": check.stray_points,
        "restart_s": restarted.start_s,
    }


def markdown(result: dict[str, Any]) -> str:
    base = result["in_process"]
    torch_threads = f"torch threads: {result['threads']}" if result.get("threads") else "torch's default threads"
    lines = [
        f"{torch_threads}. In-process `SAPIndex.search` (one calling thread): {base['qps']:.1f} queries/s, "
        f"p50 {base['p50_ms']:.1f} ms, p99 {base['p99_ms']:.1f} ms.",
        "",
        "| clients | bulk upload beside | queries/s | p50 ms | p99 ms | errors | pages indexed meanwhile "
        "| vs in-process |",
        "|---:|:---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["runs"]:
        lines.append(
            f"| {row['clients']} | {'yes' if row['bulk'] else 'no'} | {row['qps']:.1f} | {row['p50_ms']:.0f} | "
            f"{row['p99_ms']:.0f} | {row['errors']} | {row.get('pages_indexed', 0)} | {row['qps'] / base['qps']:.2f}x |"
        )
    off, on = result["batching_off_16"], next(r for r in result["runs"] if r["clients"] == 16 and not r["bulk"])
    lines += [
        "",
        f"Micro-batching at 16 clients: {on['qps']:.1f} queries/s with `--max-batch 32` "
        f"(mean batch {result['batching_on_stats']['mean_batch']}), {off['qps']:.1f} with `--max-batch 1`: "
        f"{on['qps'] / off['qps']:.2f}x (p50 {on['p50_ms']:.0f} vs {off['p50_ms']:.0f} ms).",
        f"Server memory: {result['memory']['rss_mib']:.0f} MiB resident after the runs, "
        f"peak {result['memory']['peak_rss_mib']:.0f} MiB.",
    ]
    service = result.get("service_batching_16")
    if service:
        lines.append(
            f"16 threads calling `IndexService.search` in one process (no HTTP): "
            f"{service['max_batch_32']['qps']:.1f} queries/s batched (mean batch "
            f"{service['max_batch_32']['mean_batch']:.1f}), {service['max_batch_1']['qps']:.1f} one at a time: "
            f"{service['gain']:.2f}x."
        )
    kill = result["kill_9"]
    lines.append(
        f"kill -9 during a bulk upload: {kill['acknowledged_before_kill']} documents acknowledged before the kill; "
        f"after the restart {len(kill['acknowledged_missing_or_changed'])} of them missing or changed, "
        f"{len(kill['partial_documents'])} documents in part, index check ok: {kill['index_check_ok']} "
        f"({kill['stray_points']} stray points); {kill['new_documents_after_restart']} uploaded documents there."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "sap-rag-toy-colqwen2"))
    parser.add_argument("--seconds", type=float, default=10.0, help="searching time per run")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument(
        "--threads", type=int, help="torch threads of the servers and the in-process baseline (default: torch's)"
    )
    parser.add_argument(
        "--service-only", action="store_true", help="only the in-process IndexService batching comparison"
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here (and a .md beside it)")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    work = Path(tempfile.mkdtemp(prefix="sap-rag-bench-serve-"))
    index_dir, log = work / "index", work / "server.log"
    build_index(index_dir, args.model)
    result: dict[str, Any] = {
        "model": args.model,
        "seconds": args.seconds,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared), "
        f"load average {os.getloadavg()[0]:.1f} at start",
        "command": "nice -n 10 " + " ".join(["python", *sys.argv]),
    }
    result["threads"] = args.threads
    result["service_batching_16"] = service_batching(index_dir, args.model, args.seconds, args.threads)
    print("IndexService, 16 threads, no HTTP:", result["service_batching_16"], flush=True)
    if args.service_only:
        shutil.rmtree(work, ignore_errors=True)
        return
    result["in_process"] = in_process_baseline(index_dir, args.model, args.seconds, args.threads)
    threads = ["--threads", str(args.threads)] if args.threads else []
    print("in-process", result["in_process"], flush=True)
    server = Server(index_dir, log, "--max-batch", "32", *threads)
    result["server_start_s"] = server.start_s
    warm_up(server.url)
    runs = []
    seed = 1000
    try:
        for n in clients:
            row = run_clients(server.url, n, args.seconds) | {"bulk": False}
            print(row, flush=True)
            runs.append(row)
            with BulkUpload(server.url, seed) as bulk:
                row = run_clients(server.url, n, args.seconds) | {"bulk": True}
            seed = bulk.seed
            row["pages_indexed"] = bulk.pages
            print(row, flush=True)
            runs.append(row)
        import httpx

        result["batching_on_stats"] = httpx.get(f"{server.url}/info", timeout=60).json()["batching"]
        result["memory"] = server.memory()
    finally:
        server.stop()
    result["runs"] = runs
    off = Server(index_dir, log, "--max-batch", "1", *threads)
    try:
        warm_up(off.url)
        result["batching_off_16"] = run_clients(off.url, 16, args.seconds)
        print("batching off", result["batching_off_16"], flush=True)
    finally:
        off.stop()
    result["kill_9"] = kill_9_check(index_dir, log, seed, threads)
    print("kill -9", result["kill_9"], flush=True)
    table = markdown(result)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(table + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
