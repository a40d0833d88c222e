"""calibrate: per-layer Score Retention, the chosen window, JSON round trip, use by load_encoder."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_page

from sap_rag import Calibration, CalibrationError, InvalidInputError, calibrate, load_encoder, maxsim, select_window


@pytest.fixture(scope="module")
def pairs():
    queries = ["revenue in 2023", "chart of energy use", "table of assets", "government report", "healthcare"]
    return [(q, make_page(i % 3, text=q)) for i, q in enumerate(queries)]


@pytest.fixture(scope="module")
def calibration(tiny_encoder, pairs):
    return calibrate(tiny_encoder, pairs, keep_ratio=0.25, show_progress=False)


def test_curve_covers_every_layer_and_matches_a_direct_computation(calibration, tiny_encoder, pairs):
    assert calibration.layers == list(range(tiny_encoder.num_layers))
    assert calibration.num_pairs == len(pairs)
    assert all(v <= 1.0 + 1e-6 for v in calibration.sr_mean)
    # recompute layer 0's mean SR by hand
    pages = tiny_encoder.encode_pages([image for _, image in pairs], indegree_layers="all")
    queries = tiny_encoder.encode_queries([q for q, _ in pairs])
    values = []
    for page, query in zip(pages, queries):
        k = max(1, int(0.25 * page.num_tokens))
        kept = sorted(range(page.num_tokens), key=lambda j: (-float(page.indegree[0][j]), j))[:k]
        full = maxsim(query, page.embeddings)
        values.append(maxsim(query, page.embeddings[kept]) / full if full > 0 else 0.0)
    assert calibration.sr_mean[0] == pytest.approx(sum(values) / len(values), abs=1e-5)
    assert calibration.sr_std[0] == pytest.approx(float(torch.tensor(values).std(unbiased=False)), abs=1e-5)


def test_window_is_the_rule_applied_to_the_curve(calibration):
    assert tuple(calibration.window) == select_window(calibration.sr_mean, calibration.rho)
    assert "*" in calibration.table()


def test_saves_loads_and_drives_the_encoder(calibration, tmp_path):
    path = calibration.save(tmp_path / "calib.json")
    loaded = Calibration.load(path)
    assert loaded == calibration
    encoder = load_encoder("tiny:colqwen2", window=path)
    assert encoder.window == tuple(calibration.window) and encoder.window_source == "calibrated"
    encoder = load_encoder("tiny:colqwen2", window=loaded)
    assert encoder.window == tuple(calibration.window)


def test_calibration_for_another_model_is_refused(calibration):
    other = Calibration(**{**calibration.to_dict(), "family": "colpali"})
    with pytest.raises(InvalidInputError, match="calibrate this model instead"):
        load_encoder("tiny:colqwen2", window=other)


def test_bad_calibration_inputs_and_files(tiny_encoder, tmp_path):
    with pytest.raises(CalibrationError):
        calibrate(tiny_encoder, [])
    with pytest.raises(InvalidInputError, match="pair #0"):
        calibrate(tiny_encoder, [("only a query",)])
    with pytest.raises(CalibrationError, match="no calibration file"):
        Calibration.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CalibrationError, match="not valid JSON"):
        Calibration.load(tmp_path / "bad.json")
    (tmp_path / "future.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(CalibrationError, match="newer"):
        Calibration.load(tmp_path / "future.json")


def test_a_pair_with_a_non_positive_full_score_counts_as_zero(tiny_encoder, pairs, calibration, monkeypatch):
    # The authors' per-layer curve: such a pair scores 0 on every layer and stays in the average.
    from sap_rag.calibration import layer_score_retention

    e = torch.eye(3)
    assert layer_score_retention(torch.zeros(2, 3), e, torch.arange(3.0), 0.5) == 0.0
    assert layer_score_retention(-torch.ones(1, 3), e, torch.arange(3.0), 0.5) == 0.0
    assert layer_score_retention(torch.ones(1, 3), e, torch.tensor([0.0, 2.0, 1.0]), 0.34) == 1.0

    first = calibrate(tiny_encoder, pairs[:-1], keep_ratio=0.25, show_progress=False)
    real = tiny_encoder.encode_queries

    def zero_last(queries, **kwargs):
        out = real(queries, **kwargs)
        out[-1] = torch.zeros_like(out[-1])  # MaxSim 0 against any page
        return out

    monkeypatch.setattr(tiny_encoder, "encode_queries", zero_last)
    with_zero = calibrate(tiny_encoder, pairs, keep_ratio=0.25, show_progress=False)
    n = len(pairs)
    assert with_zero.num_pairs == n and with_zero.extra["non_positive_pairs"] == 1
    assert with_zero.sr_mean == pytest.approx([v * (n - 1) / n for v in first.sr_mean], abs=1e-6)
    monkeypatch.setattr(tiny_encoder, "encode_queries", lambda q, **kw: [torch.zeros(2, tiny_encoder.dim)] * len(q))
    with pytest.raises(CalibrationError, match="not positive"):
        calibrate(tiny_encoder, pairs[:2], keep_ratio=0.25, show_progress=False)
