"""SPARE in full: column-pivoted QR on magnitude features, the anti-relevance term, and its encoder-side inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from sap_rag.errors import InvalidInputError
from sap_rag.eval.fakes import page_from_embeddings
from sap_rag.pruning import SpareLastTokenPruner, SparePruner, make_pruner
from sap_rag.pruning.spare import anti_relevance_weights, greedy_residual_order, relevance
from sap_rag.pruning.spare_inputs import attach_spare_inputs, cached_spare_inputs, query_prompt_embedding


def _magnitude_page(n: int, dim: int, seed: int):
    """A page whose stored embeddings are normalised and whose ``features`` keep unequal lengths."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, dim, generator=g) * (0.2 + 3 * torch.rand(n, 1, generator=g))
    page = page_from_embeddings(torch.nn.functional.normalize(features, dim=-1))
    page.features = features
    return page


def _cpqr_pivots(features: torch.Tensor) -> list[int]:
    """Column-pivoted QR (LAPACK geqp3) of the (dim, N) matrix whose columns are the tokens."""
    _, _, pivots = scipy.linalg.qr(features.double().numpy().T, pivoting=True, mode="economic")
    return pivots.tolist()


@pytest.mark.parametrize("seed", range(5))
def test_selection_equals_column_pivoted_qr_on_the_magnitude_features(seed):
    page = _magnitude_page(60, 12, seed)
    pivots = _cpqr_pivots(page.features)
    for k in (1, 4, 12):  # up to the rank
        assert greedy_residual_order(page.features, k)[0].tolist() == pivots[:k]
        for pruner in (SparePruner(k / 60, text_side="none"), SparePruner(k / 60, strength=0.0)):
            assert pruner.prune(page).indices.tolist() == sorted(pivots[:k])
    # On the normalised embeddings the choice is a different one: the magnitude is what drives it.
    assert _cpqr_pivots(page.embeddings)[:12] != pivots[:12]


@pytest.mark.parametrize("seed", range(3))
def test_anti_relevance_is_column_pivoted_qr_on_reweighted_features(seed):
    page = _magnitude_page(50, 10, seed)
    text = torch.randn(3, 10, generator=torch.Generator().manual_seed(100 + seed))
    weights = anti_relevance_weights(relevance(page.embeddings, text), 2.0)
    expected = _cpqr_pivots(page.features * weights.to(torch.float32).sqrt()[:, None])
    pruner = SparePruner(8 / 50, strength=2.0).use_text(text)
    assert pruner.prune(page).indices.tolist() == sorted(expected[:8])
    assert greedy_residual_order(page.features, 8, weights=weights)[0].tolist() == expected[:8]


def test_relevance_and_weights_by_hand():
    x = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    t = torch.tensor([[1.0, 0.0], [5.0, 0.0]])  # lengths do not count
    assert relevance(x, t).tolist() == pytest.approx([1.0, 0.0, 1 / math.sqrt(2)])
    w = anti_relevance_weights(relevance(x, t), 1.0)
    assert w.tolist() == pytest.approx([math.exp(-1), 1.0, math.exp(-1 / math.sqrt(2))])
    assert anti_relevance_weights(torch.tensor([0.3, 0.3]), 5.0).tolist() == [1.0, 1.0]


def test_anti_relevance_favours_the_token_less_aligned_with_the_text():
    # Token 0 lies along the text direction and is a little longer; token 1 is orthogonal to the text.
    # Reconstruction alone takes the longer one; the anti-relevance term (paper: tokens with lower
    # image-text relevance preserve context) moves the pick to the less aligned one.
    features = torch.tensor([[1.1, 0.0, 0.0], [0.0, 1.0, 0.0], [0.3, 0.3, 0.1]])
    page = page_from_embeddings(torch.nn.functional.normalize(features, dim=-1))
    page.features = features
    text = torch.tensor([[1.0, 0.0, 0.0]])
    assert SparePruner(1 / 3, text_side="none").prune(page).indices.tolist() == [0]
    assert SparePruner(1 / 3, strength=1.0).use_text(text).prune(page).indices.tolist() == [1]
    # The last-token variant reads the same text side from the page.
    page.last_token_embedding = text[0]
    assert SpareLastTokenPruner(1 / 3).prune(page).indices.tolist() == [1]
    # A weak term does not overturn a large magnitude gap: 1.1^2 * exp(-0.1) > 1.
    assert SparePruner(1 / 3, strength=0.1).use_text(text).prune(page).indices.tolist() == [0]


def test_missing_inputs_fall_back_and_are_counted():
    page = page_from_embeddings(torch.eye(4).tolist())
    pruner = SpareLastTokenPruner(0.5)
    assert pruner.prune(page).num_kept == 2
    assert pruner.run_stats()["pages_without_features"] == 1 and pruner.run_stats()["pages_without_text"] == 1
    assert pruner.config() == {"name": "spare_lasttoken", "keep_ratio": 0.5, "text_side": "last_token", "strength": 1.0}
    # The identity does not change with what the pruner has seen (index manifests compare it).
    assert SpareLastTokenPruner(0.5).config() == pruner.config()
    assert make_pruner("spare", 0.5).config()["text_side"] == "query_prompt"


def test_spare_option_errors():
    with pytest.raises(InvalidInputError, match="text_side"):
        SparePruner(0.1, text_side="caption")
    with pytest.raises(InvalidInputError, match="strength"):
        SparePruner(0.1, strength=-1.0)
    with pytest.raises(InvalidInputError, match="strength"):
        SparePruner(0.1, strength=float("nan"))
    with pytest.raises(InvalidInputError, match=r"\(M, dim\)"):
        SparePruner(0.1).use_text(torch.zeros(0, 4))
    with pytest.raises(InvalidInputError, match="positive"):
        greedy_residual_order(torch.eye(3), 2, weights=torch.tensor([1.0, 0.0, 1.0]))


def test_encoder_side_inputs_on_a_tiny_model(tiny_encoder, pages):
    encoded = attach_spare_inputs(tiny_encoder, pages[:2], batch_size=1)
    for page in encoded:
        assert page.features.shape == page.embeddings.shape
        # The features are what the stored embeddings are the normalisation of, and their lengths vary.
        assert torch.allclose(torch.nn.functional.normalize(page.features, dim=-1), page.embeddings, atol=1e-5)
        norms = page.features.norm(dim=-1)
        assert float(norms.max() / norms.min()) > 1.01
        assert page.last_token_embedding.shape == (page.dim,)
        assert float(page.last_token_embedding.norm()) == pytest.approx(1.0, abs=1e-5)
    # Attaching to pages encoded before (e.g. cached ones) gives the same inputs.
    again = tiny_encoder.encode_pages(pages[:2], batch_size=2)
    attach_spare_inputs(tiny_encoder, pages[:2], again, batch_size=2)
    for a, b in zip(encoded, again, strict=True):
        assert torch.allclose(a.features, b.features, atol=1e-4)
    prompt = query_prompt_embedding(tiny_encoder)
    assert prompt.ndim == 2 and prompt.shape[1] == tiny_encoder.dim and prompt.shape[0] >= 1
    assert torch.allclose(prompt.norm(dim=-1), torch.ones(prompt.shape[0]), atol=1e-4)
    pruner = SparePruner(0.25).use_text(prompt)
    result = pruner.prune(encoded[0])
    assert pruner.run_stats() == {"text_vectors": prompt.shape[0], "pages_without_features": 0, "pages_without_text": 0}
    assert result.num_kept == max(1, int(0.25 * encoded[0].num_tokens))
    assert np.all(np.diff(result.indices.numpy()) > 0)


def test_spare_inputs_are_captured_once_and_kept_beside_the_cache(tmp_path, tiny_encoder, pages):
    calls = []

    def images():
        calls.append(1)
        return pages[:2]

    first = tiny_encoder.encode_pages(pages[:2], indegree_layers="none")
    prompt = cached_spare_inputs(tiny_encoder, first, images, tmp_path)
    assert calls == [1] and first[0].features.shape == first[0].embeddings.shape
    again = tiny_encoder.encode_pages(pages[:2], indegree_layers="none")
    assert torch.equal(cached_spare_inputs(tiny_encoder, again, images, tmp_path), prompt) and calls == [1]
    assert torch.equal(again[1].features, first[1].features)
    assert torch.equal(again[1].last_token_embedding, first[1].last_token_embedding)
    # A damaged side file is ignored and rewritten; pages that carry the inputs already are used as they are.
    (tmp_path / "spare_inputs.pt").write_bytes(b"not a tensor file")
    third = tiny_encoder.encode_pages(pages[:2], indegree_layers="none")
    cached_spare_inputs(tiny_encoder, third, images, tmp_path)
    assert calls == [1, 1] and torch.allclose(third[0].features, first[0].features, atol=1e-5)
    cached_spare_inputs(tiny_encoder, third, images, tmp_path, refresh=False)
    assert calls == [1, 1]
