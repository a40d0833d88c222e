"""The writers of distributed indexing, without Ray: who writes, and what the parallel writers upsert."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from _index_utils import random_page
from conftest import make_page

from sap_rag.distributed.writers import DriverWriter, ParallelWriter, choose_writer, page_point
from sap_rag.errors import InvalidInputError
from sap_rag.index import SAPIndex
from sap_rag.index.registry import point_ids

qdrant_client = pytest.importorskip("qdrant_client")


def test_the_backend_chooses_the_writer(tmp_path, monkeypatch):
    with SAPIndex.create(tmp_path / "edge", dim=8) as index:
        assert isinstance(choose_writer(index), DriverWriter)
        with pytest.raises(InvalidInputError, match="Qdrant server"):
            choose_writer(index, "parallel")
    client = qdrant_client.QdrantClient(":memory:")
    with SAPIndex.create(tmp_path / "local", dim=8, client=client) as index:
        assert isinstance(choose_writer(index), DriverWriter)  # local mode lives in this process
        monkeypatch.setattr(type(index.backend), "is_local", property(lambda self: False))  # as for a server
        assert isinstance(choose_writer(index), ParallelWriter)


@pytest.mark.parametrize("storage", ["float16", "float32"])
def test_parallel_writers_upsert_the_points_the_single_process_path_stores(tmp_path, storage):
    rng = np.random.default_rng(4)
    pages = [random_page(rng, 16) for _ in range(3)]
    images = []
    for i in range(3):
        buffer = io.BytesIO()
        make_page(i).save(buffer, format="PNG")
        images.append(buffer.getvalue())
    metadata = {"source": "/data/a.pdf", "filename": "a.pdf"}
    with SAPIndex.create(tmp_path / "idx", dim=16, storage=storage, pooled_vectors=4) as index:
        index.add_pages(pages, doc_id="a", metadata=metadata, images=images)
        record = index._store.registry.get("a")
        stored = index.backend.retrieve_points(point_ids(record.gen, 3))
        settings = {"dim": 16, "storage": storage, "pooled": 4, "store_images": True}
        for page, image, point in zip(pages, images, stored):
            row = {
                "doc_id": "a",
                "page_number": point.payload["page_number"],
                "gen": record.gen,
                "metadata": json.dumps(metadata),
                "anchors": page.embeddings.numpy(),
                "positions": page.positions.numpy(),
                "num_tokens": page.num_tokens,
                "png": image,
            }
            built = page_point(row, **settings)
            assert built.id == point.id
            assert built.payload == point.payload
            assert np.array_equal(built.anchors, point.anchors)
            assert np.array_equal(built.summary, point.summary)
            assert np.array_equal(built.pooled, point.pooled)
