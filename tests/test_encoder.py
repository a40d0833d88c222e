"""The encoder against a slow reference: eager attention on all layers, loops over heads and tokens."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_FAMILIES, make_page

from sap_rag import InvalidInputError, SAPPruner, UnreadableInputError, maxsim
from sap_rag.pruning import budget


def reference_encoding(encoder, image, layers):
    """Slow reference: backbone with output_attentions=True (eager everywhere), explicit sums."""
    batch = {k: v for k, v in encoder.processor.process_images([image]).items()}
    ids = batch["input_ids"][0].tolist()
    visual = [i for i, t in enumerate(ids) if t == encoder.image_token_id]
    attentions = encoder.family_spec.reference_attentions(encoder.model, batch)  # eager, every layer
    indegree = {}
    for layer in layers:
        attn = attentions[layer][0].double()  # (heads, seq, seq)
        heads = attn.shape[0]
        indegree[layer] = torch.tensor(
            [sum(float(attn[h, i, j]) for h in range(heads) for i in visual) / heads for j in visual],
            dtype=torch.float64,
        )
    with torch.no_grad():
        full = encoder.model(**encoder.family_spec.prepare_inputs(batch))[0, visual]  # plain SDPA, no capture
    return visual, indegree, full


def reference_top_k(scores: torch.Tensor, keep_ratio: float) -> list[int]:
    n = len(scores)
    k = max(1, int(keep_ratio * n))
    order = sorted(range(n), key=lambda j: (-float(scores[j]), j))
    return sorted(order[:k])


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_sap_matches_the_slow_reference(family, tiny_encoders, pages):
    encoder = tiny_encoders(family)
    image = pages[0]
    visual, indegree, full = reference_encoding(encoder, image, encoder.scorable_layers)
    (page,) = encoder.encode_pages([image], indegree_layers="all")
    assert page.num_tokens == len(visual) > 0
    # every layer's in-degree, and the window score
    for layer, row in indegree.items():
        assert torch.allclose(page.indegree[layer].double(), row, atol=1e-5), layer
    window_ref = torch.stack([indegree[layer] for layer in encoder.window]).mean(0)
    assert torch.allclose(page.sap_scores.double(), window_ref, atol=1e-5)
    # kept indices equal the reference top-k; kept embeddings are rows of the full output
    for ratio in (0.1, 0.25, 0.5):
        pruned = SAPPruner(keep_ratio=ratio).prune(page)
        assert pruned.indices.tolist() == reference_top_k(window_ref, ratio)
        assert pruned.num_kept == budget(ratio, len(visual))
        assert torch.allclose(pruned.embeddings, full[pruned.indices], atol=1e-5)
    assert torch.allclose(page.embeddings, full, atol=1e-5)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_window_only_encoding_computes_only_the_window(family, tiny_encoders, pages):
    encoder = tiny_encoders(family)
    (page,) = encoder.encode_pages(pages[:1])
    assert set(page.indegree) == set(encoder.window)
    (all_layers,) = encoder.encode_pages(pages[:1], indegree_layers="all")
    assert torch.allclose(page.sap_scores, all_layers.sap_scores, atol=1e-5)
    (plain,) = encoder.encode_pages(pages[:1], indegree_layers="none")
    assert plain.sap_scores is None and not plain.indegree
    assert torch.allclose(plain.embeddings, page.embeddings, atol=1e-5)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_keep_ratio_one_scores_like_the_unpruned_page(family, tiny_encoders, pages):
    encoder = tiny_encoders(family)
    encoded = encoder.encode_pages(pages[:2])
    (query,) = encoder.encode_queries(["what was the revenue in 2023?"])
    assert query.ndim == 2 and query.shape[1] == encoder.dim
    for page in encoded:
        pruned = SAPPruner(keep_ratio=1.0).prune(page)
        assert maxsim(query, pruned.embeddings) == maxsim(query, page.embeddings)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_a_page_alone_equals_the_same_page_in_a_padded_batch(family, tiny_encoders, pages):
    encoder = tiny_encoders(family)
    batched = encoder.encode_pages(pages, batch_size=len(pages), eos_attention=True)
    for image, together in zip(pages, batched):
        (alone,) = encoder.encode_pages([image], eos_attention=True)
        assert alone.num_tokens == together.num_tokens
        assert torch.allclose(alone.embeddings, together.embeddings, atol=1e-5)
        assert torch.allclose(alone.sap_scores, together.sap_scores, atol=1e-5)
        assert torch.allclose(alone.eos_attention, together.eos_attention, atol=1e-5)
        assert torch.equal(SAPPruner(0.2).prune(alone).indices, SAPPruner(0.2).prune(together).indices)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_positions_cover_the_patch_grid(family, tiny_encoders, pages):
    encoder = tiny_encoders(family)
    for page in encoder.encode_pages(pages):
        rows, cols = page.grid_shape
        assert page.positions.shape == (page.num_tokens, 2) == page.extents.shape
        far = page.positions + page.extents
        assert float(page.positions.min()) >= 0
        assert float(far[:, 0].max()) <= rows + 1e-6 and float(far[:, 1].max()) <= cols + 1e-6
        assert page.image_size in {image.size for image in pages}


def test_queries_are_unpadded_and_deterministic(tiny_encoder):
    short, long = tiny_encoder.encode_queries(["revenue", "what was the total revenue by region in 2023?"])
    assert short.shape[0] < long.shape[0]
    (again,) = tiny_encoder.encode_queries(["revenue"])
    assert torch.allclose(again, short, atol=1e-5)
    assert torch.allclose(short.norm(dim=1), torch.ones(short.shape[0]), atol=1e-4)


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (42, UnreadableInputError, "not an image"),
        (b"not an image at all", UnreadableInputError, "not a readable image"),
        ("/nonexistent/page.png", UnreadableInputError, "no such image file"),
    ],
)
def test_non_images_are_clear_errors(tiny_encoder, bad, error, match):
    with pytest.raises(error, match=match):
        tiny_encoder.encode_pages([make_page(0), bad])


def test_truncated_image_file_is_a_clear_error(tiny_encoder, tmp_path):
    path = tmp_path / "page.png"
    make_page(0).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(UnreadableInputError, match=r"page\.png"):
        tiny_encoder.encode_pages([path])


def test_empty_inputs_are_clear_errors(tiny_encoder):
    with pytest.raises(InvalidInputError, match="empty list"):
        tiny_encoder.encode_pages([])
    with pytest.raises(InvalidInputError, match="list of images"):
        tiny_encoder.encode_pages(make_page(0))
    with pytest.raises(InvalidInputError, match="empty"):
        tiny_encoder.encode_queries(["  "])
    with pytest.raises(InvalidInputError, match="empty list"):
        tiny_encoder.encode_queries([])
    with pytest.raises(InvalidInputError, match="list of strings"):
        tiny_encoder.encode_queries("a bare string")
    with pytest.raises(InvalidInputError, match="indegree_layers"):
        tiny_encoder.encode_pages([make_page(0)], indegree_layers="most")


def test_concurrent_page_and_query_encoding_from_threads_match_serial_results(tiny_encoder, pages):
    from concurrent.futures import ThreadPoolExecutor

    (page_ref,) = tiny_encoder.encode_pages(pages[:1])
    (query_ref,) = tiny_encoder.encode_queries(["revenue by region"])
    with ThreadPoolExecutor(max_workers=4) as pool:
        page_jobs = [pool.submit(tiny_encoder.encode_pages, pages[:1]) for _ in range(4)]
        query_jobs = [pool.submit(tiny_encoder.encode_queries, ["revenue by region"]) for _ in range(4)]
        for job in page_jobs:
            (page,) = job.result()
            assert torch.allclose(page.sap_scores, page_ref.sap_scores, atol=1e-6)
        for job in query_jobs:
            (query,) = job.result()
            assert torch.allclose(query, query_ref, atol=1e-6)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_row_chunked_capture_is_exact(family, tiny_encoders, pages, monkeypatch):
    """Scored layers run eager attention over blocks of query rows; force one row per block."""
    from sap_rag.encoders import attention

    encoder = tiny_encoders(family)
    whole = encoder.encode_pages(pages[:2], batch_size=2, indegree_layers="all", eos_attention=True)
    monkeypatch.setattr(attention, "_CHUNK_ELEMENTS", 1)
    chunked = encoder.encode_pages(pages[:2], batch_size=2, indegree_layers="all", eos_attention=True)
    _, reference, full = reference_encoding(encoder, pages[0], encoder.scorable_layers)
    for a, b in zip(whole, chunked):
        assert torch.allclose(a.embeddings, b.embeddings, atol=1e-5)
        assert torch.allclose(a.eos_attention, b.eos_attention, atol=1e-6)
        for layer in encoder.scorable_layers:
            assert torch.allclose(a.indegree[layer], b.indegree[layer], atol=1e-5)
            assert torch.allclose(a.indegree_max[layer], b.indegree_max[layer], atol=1e-5)
    for layer, row in reference.items():
        assert torch.allclose(chunked[0].indegree[layer].double(), row, atol=1e-5)
    assert torch.allclose(chunked[0].embeddings, full, atol=1e-5)


def test_preprocess_then_encode_processed_equals_encode_pages(tiny_encoder, pages):
    batch = tiny_encoder.preprocess(pages[:3])
    split = tiny_encoder.encode_processed(batch, eos_attention=True)
    direct = tiny_encoder.encode_pages(pages[:3], batch_size=3, eos_attention=True)
    for a, b in zip(split, direct):
        assert a.image_size == b.image_size and a.grid_shape == b.grid_shape
        assert torch.allclose(a.embeddings, b.embeddings, atol=1e-6)
        assert torch.allclose(a.sap_scores, b.sap_scores, atol=1e-6)
    naive = tiny_encoder.naive_indegree(batch)
    for page, rows in zip(split, naive):
        window_mean = torch.stack([rows[layer] for layer in tiny_encoder.window]).mean(0)
        assert torch.allclose(page.sap_scores, window_mean, atol=1e-5)


def test_page_reprs_show_shapes_not_tensors():
    from sap_rag.types import PageEncoding, PrunedPage

    pruned = PrunedPage(torch.rand(7, 128), torch.rand(7, 2), torch.arange(7), None, 70, "sap")
    text = repr(pruned)
    assert text == "PrunedPage(method='sap', kept=7 of 70 tokens, dim=128, indices=True, scores=False)"
    page = PageEncoding(torch.rand(70, 128), torch.rand(70, 2), (7, 10), torch.ones(70, 2), {2: torch.rand(70)})
    assert "tensor(" not in repr(page) and "tokens=70" in repr(page) and "indegree_layers=[2]" in repr(page)
