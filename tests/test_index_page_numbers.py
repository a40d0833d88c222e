"""Pages stored under the page numbers a caller names (a file's page 2 alone is page 2), with gaps."""

from __future__ import annotations

import pytest
import torch

from sap_rag import SAPIndex
from sap_rag.errors import InvalidInputError
from sap_rag.index.index import pruned_page


def _pages(n: int, seed: int = 0) -> list:
    gen = torch.Generator().manual_seed(seed)
    return [pruned_page(torch.nn.functional.normalize(torch.randn(3, 8, generator=gen), dim=-1)) for _ in range(n)]


def test_named_page_numbers_are_stored_cited_filtered_and_survive_reopen(tmp_path):
    path = tmp_path / "idx"
    pages = _pages(2)
    with SAPIndex.create(path, dim=8) as index:
        info = index.add_pages(pages, doc_id="report", page_numbers=[2, 5], texts=[None, "the fifth page"])
        assert info.num_pages == 2
        hits = index.search(pages[0].embeddings[:1], k=2)
        assert {h.page_number for h in hits} == {2, 5}
        assert hits[0].page_number == 2 and hits[0].page_id == "report:p2"
        assert hits[0].text == "page 2 of report"  # the label names the real page
        got = index.get_pages(["report:p2", "report:p5", "report:p1"])
        assert [g.page_number if g else None for g in got] == [2, 5, None]
        assert got[1].text == "the fifth page"
        only5 = index.search(pages[0].embeddings[:1], k=5, filter={"page_number": 5})
        assert [h.page_id for h in only5] == ["report:p5"]
        assert index.document("report").page_numbers == [2, 5]
        assert info.page_ids == ["report:p2", "report:p5"]
    with SAPIndex.open(path) as index:
        assert index.check().ok
        assert sorted(h.page_number for h in index.search(pages[1].embeddings[:1], k=5)) == [2, 5]
        # replacing the document with default numbering drops the old numbered pages entirely
        index.add_pages(_pages(1, seed=1), doc_id="report")
        assert [h.page_id for h in index.search(pages[0].embeddings[:1], k=5)] == ["report:p1"]
        assert index.check().ok


@pytest.mark.parametrize("numbers", [[0], [2, 2], [3, 1], ["1"], [True], [1, 2, 3]])
def test_bad_page_numbers_are_refused_and_nothing_is_written(tmp_path, numbers):
    with SAPIndex.create(tmp_path / "idx", dim=8) as index:
        count = 1 if len(numbers) == 1 else 2
        with pytest.raises(InvalidInputError, match="page_numbers"):
            index.add_pages(_pages(count), doc_id="d", page_numbers=numbers)
        assert len(index) == 0 and "d" not in index
