"""Cluster creation options reach the collection: local mode where it keeps them, the wire otherwise."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from sap_rag.errors import InvalidInputError
from sap_rag.index.backends.factory import create_backend
from sap_rag.index.backends.server import CollectionOptions, QdrantBackend
from sap_rag.index.options import StorageType

qdrant_client = pytest.importorskip("qdrant_client")

OPTIONS = CollectionOptions(
    shard_number=6,
    replication_factor=2,
    write_consistency_factor=2,
    on_disk_vectors=True,
    on_disk_payload=True,
    payload_indexes={"metadata.source": "keyword", "page_number": "integer"},
)


def test_local_mode_keeps_on_disk_vectors():
    client = qdrant_client.QdrantClient(":memory:")
    QdrantBackend.create(client, "c", dim=8, storage=StorageType.FLOAT16, options=OPTIONS)
    vectors = client.get_collection("c").config.params.vectors
    assert vectors["anchors"].on_disk is True and vectors["pooled"].on_disk is True
    assert vectors["mean"].on_disk is None  # the graph's vectors stay in RAM


class _Recorder(BaseHTTPRequestHandler):
    """Answers the few calls a collection creation makes, as a Qdrant server would, and records them."""

    calls: ClassVar[list[tuple[str, str, dict]]] = []

    def _answer(self, result: object) -> None:
        body = json.dumps({"result": result, "status": "ok", "time": 0.0}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.calls.append(("GET", self.path, {}))
        self._answer({"exists": False})

    def do_PUT(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.calls.append(("PUT", self.path, body))
        self._answer(True if self.path.rstrip("/").endswith("/c") else {"operation_id": 1, "status": "completed"})

    def log_message(self, *args: object) -> None:
        pass


def test_cluster_options_are_sent_to_the_server(tmp_path):
    _Recorder.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = qdrant_client.QdrantClient(
            url=f"http://127.0.0.1:{server.server_address[1]}", check_compatibility=False, timeout=5
        )
        backend = create_backend(
            tmp_path,
            dim=8,
            storage=StorageType.FLOAT16,
            oversampling=4.0,
            client=client,
            collection="c",
            collection_options=OPTIONS,
        )
        assert backend.collection == "c"
    finally:
        server.shutdown()
    creates = [
        body for method, path, body in _Recorder.calls if method == "PUT" and path.split("?")[0] == "/collections/c"
    ]
    assert len(creates) == 1
    body = creates[0]
    assert (body["shard_number"], body["replication_factor"], body["write_consistency_factor"]) == (6, 2, 2)
    assert body["on_disk_payload"] is True
    assert body["vectors"]["anchors"]["on_disk"] is True and body["vectors"]["pooled"]["on_disk"] is True
    indexes = {
        body["field_name"]: body["field_schema"]
        for method, path, body in _Recorder.calls
        if method == "PUT" and path.startswith("/collections/c/index")
    }
    assert indexes == {"doc_id": "keyword", "metadata.source": "keyword", "page_number": "integer"}


def test_bad_options_are_refused():
    with pytest.raises(InvalidInputError, match="shard_number"):
        CollectionOptions(shard_number=0)
    with pytest.raises(InvalidInputError, match="unknown schema"):
        CollectionOptions(payload_indexes={"k": "vector"})
    with pytest.raises(InvalidInputError, match="server collection"):
        create_backend(None, dim=8, storage=StorageType.FLOAT16, oversampling=4.0, collection_options=OPTIONS)
