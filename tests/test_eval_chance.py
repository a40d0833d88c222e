"""The chance level of NDCG@k and the warning when the unpruned model is near it."""

from __future__ import annotations

import itertools
import logging
import math

import numpy as np
import pytest

from sap_rag.eval.metrics import chance_ndcg_at_k, near_chance


def _slow_chance(relevance: np.ndarray, k: int) -> float:
    """Mean over queries of NDCG@k averaged over every permutation of the documents."""
    d = relevance.shape[1]
    values = []
    for row in relevance:
        ideal = sum(g / math.log2(r + 2) for r, g in enumerate(sorted(row, reverse=True)[:k]))
        if ideal == 0:
            values.append(0.0)
            continue
        total = [
            sum(row[p] / math.log2(r + 2) for r, p in enumerate(perm[:k])) for perm in itertools.permutations(range(d))
        ]
        values.append(float(np.mean(total)) / ideal)
    return float(np.mean(values))


def test_chance_ndcg_is_the_mean_over_all_rankings():
    rng = np.random.default_rng(0)
    for _ in range(4):
        relevance = rng.integers(0, 3, size=(3, 6)).astype(float)
        relevance[0] = 0.0  # a query with nothing relevant scores 0
        for k in (1, 3, 5, 10):
            assert chance_ndcg_at_k(relevance, k) == pytest.approx(_slow_chance(relevance, k), abs=1e-12)


def test_near_chance_is_a_quarter_of_the_way_to_one():
    assert near_chance(0.30, 0.1) and not near_chance(0.36, 0.1)
    assert not near_chance(0.893, 0.05)


def test_eval_warns_when_the_unpruned_model_is_near_chance(tmp_path, tiny_encoder, monkeypatch, capsys, caplog):
    """A tiny random-weight model on synthetic pages ranks near chance: the CLI says retention means nothing."""
    import json

    import sap_rag.encoders.loading as loading
    from sap_rag.cli.eval_cmd import eval_main
    from sap_rag.eval.datasets import load_dataset

    monkeypatch.setattr(loading, "load_encoder", lambda spec, **kwargs: tiny_encoder)
    out = tmp_path / "out"
    args = ["--dataset", "synthetic:8", "--model", "tiny:colqwen2", "--pruners", "random", "--keep-ratios", "0.5"]
    with caplog.at_level(logging.WARNING, logger="sap_rag.eval.harness"):
        code = eval_main([*args, "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert code == 0
    report = json.loads((out / "results.json").read_text())
    info = report["datasets"][0]
    unpruned = next(r for r in report["rows"] if r["pruner"] == "none")
    relevance = load_dataset(out / "synthetic-8").relevance_matrix()
    assert info["chance_ndcg_at_5"] == pytest.approx(chance_ndcg_at_k(relevance, 5))
    assert info["near_chance"] is True and near_chance(unpruned["ndcg_at_5"], info["chance_ndcg_at_5"])
    assert "meaningless" in capsys.readouterr().out
    assert "near a random ranking" in caplog.text


def test_a_model_well_above_chance_is_not_flagged(caplog):
    from types import SimpleNamespace

    from sap_rag.eval.harness import _flag_near_chance

    relevance = np.eye(10)
    info = [{"name": "good"}, {"name": "bad"}]
    sets = [SimpleNamespace(relevance=relevance), SimpleNamespace(relevance=relevance)]
    rows = [
        SimpleNamespace(dataset="good", pruner="none", ndcg_at_5=0.9),
        SimpleNamespace(dataset="bad", pruner="none", ndcg_at_5=0.4),
    ]
    with caplog.at_level(logging.WARNING, logger="sap_rag.eval.harness"):
        _flag_near_chance(info, sets, rows)
    assert info[0]["near_chance"] is False and info[1]["near_chance"] is True
    assert "bad" in caplog.text and "good" not in caplog.text
