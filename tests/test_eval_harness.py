"""The harness end to end on the synthetic dataset with a tiny model, the cache, the CLI and the reports."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from sap_rag.eval import PrunerSpec, encode_dataset, eval_main, load_dataset, make_synthetic_dataset, run_eval
from sap_rag.eval.fakes import page_from_embeddings
from sap_rag.eval.harness import UNPRUNED, PaddedPages, evaluate_encoded
from sap_rag.pruning import pruner_names
from sap_rag.search import maxsim_matrix

SMALL = (112, 140)
METRICS = ("ndcg_at_5", "ndcg_at_10", "recall_at_1", "recall_at_5", "recall_at_10")


def _forbid_model(monkeypatch, encoder):
    def boom(*args, **kwargs):
        raise AssertionError("the model was called although the cache holds the encodings")

    monkeypatch.setattr(encoder.model, "forward", boom)
    monkeypatch.setattr(encoder, "encode_pages", boom)
    monkeypatch.setattr(encoder, "encode_queries", boom)


def test_every_pruner_every_ratio_then_the_cache_is_reused(tmp_path, tiny_encoder, monkeypatch):
    dataset = load_dataset(make_synthetic_dataset(tmp_path / "syn", num_pages=6, image_size=SMALL))
    ratios = (1.0, 0.5, 0.1)
    results = run_eval(dataset, tiny_encoder, pruner_names(), ratios, tmp_path / "out", seeds=(0, 1))

    assert len(results.rows) == 1 + len(pruner_names()) * len(ratios)
    full = results.unpruned("syn")
    assert full.pruner == UNPRUNED and full.num_pages == 6 and full.num_queries == 6
    for name in pruner_names():
        for ratio in ratios:
            row = results.row("syn", name, ratio)
            assert 0.0 <= row.ndcg_at_5 <= 1.0 and row.vectors_per_page >= 1
            assert row.bytes_per_page == pytest.approx(row.vectors_per_page * tiny_encoder.dim * 2)
            for metric in METRICS:
                expected = getattr(row, metric) / getattr(full, metric) if getattr(full, metric) > 0 else math.nan
                assert getattr(row, f"{metric}_retention") == pytest.approx(expected, nan_ok=True)
        # Keeping everything reproduces the unpruned run exactly, for every method.
        kept_all = results.row("syn", name, 1.0)
        for metric in METRICS:
            assert getattr(kept_all, metric) == getattr(full, metric), (name, metric)
        assert kept_all.score_retention == pytest.approx(1.0, abs=1e-6)
        assert kept_all.vectors_per_page == full.vectors_per_page
    assert results.row("syn", "random", 0.5).seeds == 2
    assert results.row("syn", "sap", 0.1).vectors_per_page == max(1, int(0.1 * full.vectors_per_page))
    assert results.datasets[0]["from_cache"] is False

    files = results.files
    assert files["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## syn" in files["markdown"].read_text() and "| sap |" in files["markdown"].read_text()
    with files["csv"].open() as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == len(results.rows) and float(table[0]["ndcg_at_5"]) == full.ndcg_at_5
    assert files["json"].is_file()

    # Second run: the model must not be called; the numbers are the same.
    _forbid_model(monkeypatch, tiny_encoder)
    again = run_eval(
        dataset, tiny_encoder, ["sap", "spare"], (0.5,), tmp_path / "out2", cache_dir=tmp_path / "out" / "cache"
    )
    assert again.datasets[0]["from_cache"] is True
    for name in ("sap", "spare"):
        assert again.row("syn", name, 0.5).ndcg_at_5 == results.row("syn", name, 0.5).ndcg_at_5
    assert again.unpruned("syn").ndcg_at_10 == full.ndcg_at_10


def test_the_cache_does_not_depend_on_the_window(tmp_path, tiny_encoder, monkeypatch):
    dataset = load_dataset(make_synthetic_dataset(tmp_path / "syn", num_pages=2, num_queries=1, image_size=SMALL))
    first = encode_dataset(dataset, tiny_encoder, tmp_path / "cache")
    assert not first.from_cache
    assert sorted(first.pages[0].indegree) == list(tiny_encoder.scorable_layers)
    assert first.pages[0].eos_attention is not None and len(first.query_embeddings) == 1
    _forbid_model(monkeypatch, tiny_encoder)
    monkeypatch.setattr(tiny_encoder, "window", (1,))
    second = encode_dataset(dataset, tiny_encoder, tmp_path / "cache")
    assert second.from_cache and second.path == first.path
    page = second.pages[0]
    assert page.window == (1,) and torch.equal(page.sap_scores, page.indegree[1])
    assert torch.equal(page.embeddings, first.pages[0].embeddings)


def test_a_checkpoint_retrained_in_place_is_encoded_again(tmp_path, tiny_encoder):
    """Same path, new weights: the cache key changes (an old entry would score the old model)."""
    import os

    from sap_rag import load_encoder
    from sap_rag.eval.cache import cache_key

    dataset = load_dataset(make_synthetic_dataset(tmp_path / "syn", num_pages=2, num_queries=1, image_size=SMALL))
    checkpoint = tmp_path / "ckpt"
    tiny_encoder.model.save_pretrained(checkpoint)
    tiny_encoder.processor.save_pretrained(checkpoint)
    before = cache_key(load_encoder(checkpoint, device="cpu"), dataset)
    assert cache_key(load_encoder(checkpoint, device="cpu"), dataset) == before
    [weights] = checkpoint.glob("*.safetensors")
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # rewritten by a new run
    assert cache_key(load_encoder(checkpoint, device="cpu"), dataset) != before


def test_several_datasets_give_mean_and_union_rows(tmp_path, tiny_encoder):
    a = load_dataset(make_synthetic_dataset(tmp_path / "a", num_pages=3, num_queries=2, image_size=SMALL))
    b = load_dataset(make_synthetic_dataset(tmp_path / "b", num_pages=3, num_queries=2, seed=1, image_size=SMALL))
    results = run_eval(
        [a, b],
        tiny_encoder,
        ["sap", PrunerSpec("cluster", {"normalize": True}, label="cluster_n")],
        (0.5,),
        tmp_path / "out",
        union=True,
    )
    assert {r.dataset for r in results.rows} == {"a", "b", "mean", "union"}
    mean = results.row("mean", "sap", 0.5)
    assert mean.ndcg_at_5 == pytest.approx(
        (results.row("a", "sap", 0.5).ndcg_at_5 + results.row("b", "sap", 0.5).ndcg_at_5) / 2
    )
    union = results.unpruned("union")
    assert (union.num_pages, union.num_queries) == (6, 4)
    assert results.row("union", "cluster_n", 0.5).vectors_per_page <= 0.5 * union.vectors_per_page


def test_evaluate_encoded_on_hand_made_scores():
    # Two pages of two tokens; token 1 of each page is a shorter, off-axis vector.
    pages = [
        page_from_embeddings([[1.0, 0.0], [0.3, 0.4]], indegree={0: [0.0, 1.0]}, window=(0,)),
        page_from_embeddings([[0.0, 1.0], [0.4, 0.3]], indegree={0: [1.0, 0.0]}, window=(0,)),
    ]
    queries = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])]
    full, spare, sap = evaluate_encoded("hand", pages, queries, np.eye(2), ["spare", "sap"], [0.5], seeds=(0,))
    # Unpruned: q0 scores 1 vs 0.4, q1 scores 0.4 vs 1: both rank their page first.
    assert full.ndcg_at_5 == 1.0 and full.recall_at_1 == 1.0
    assert full.vectors_per_page == 2 and full.bytes_per_page == 2 * 2 * 2
    # SPARE keeps the longer token 0 of each page: nothing lost.
    assert spare.score_retention == pytest.approx(1.0) and spare.ndcg_at_5 == 1.0
    assert spare.vectors_per_page == 1 and spare.compression == 2 and spare.ndcg_at_5_retention == 1.0
    # SAP keeps token 1 of page 0 (0.3 of 1 for q0) and token 0 of page 1 (1 of 1 for q1):
    # equal full scores, so the benchmark SR (0.3 + 1) / (1 + 1) equals the per-pair mean.
    assert sap.score_retention == pytest.approx(0.65) and sap.score_retention_per_pair == pytest.approx(0.65)
    assert full.score_retention == 1.0 and full.score_retention_per_pair == 1.0
    # q0 now scores 0.3 on page 0 and 0 on page 1: still first. Rankings survive.
    assert sap.recall_at_1 == 1.0


def test_benchmark_score_retention_weighs_pairs_by_their_full_score():
    # Page 0's kept token (by in-degree) is the short one; page 0 scores 2 in full, page 1 scores 1.
    pages = [
        page_from_embeddings([[2.0, 0.0], [0.3, 0.4]], indegree={0: [0.0, 1.0]}, window=(0,)),
        page_from_embeddings([[0.0, 1.0], [0.4, 0.3]], indegree={0: [1.0, 0.0]}, window=(0,)),
        page_from_embeddings([[-1.0, 0.0], [0.0, -1.0]], indegree={0: [1.0, 0.0]}, window=(0,)),
    ]
    queries = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 1.0]])]
    relevance = np.eye(3)  # q2's relevant page 2 has a negative full MaxSim (-1)
    full, sap = evaluate_encoded("hand", pages, queries, relevance, ["sap"], [0.5], seeds=(0,))
    # Pairs (full, pruned): (2, 0.3), (1, 1), (-1, -1): benchmark (0.3 + 1 - 1) / (2 + 1 - 1), per-pair
    # (0.15 + 1 + 0) / 3 with the non-positive pair scoring 0.
    assert sap.score_retention == pytest.approx(0.15)
    assert sap.score_retention_per_pair == pytest.approx(1.15 / 3)
    assert full.score_retention == 1.0 and full.score_retention_per_pair == pytest.approx(2 / 3)
    # The report shows both, labelled, in columns that line up with the header.
    from sap_rag.eval.reports import _detail_table

    lines = _detail_table([full, sap], "hand").splitlines()
    assert "| SR | SR per-pair mean |" in lines[0]
    assert len({line.count("|") for line in lines}) == 1
    assert "| 0.150 | 0.383 |" in lines[-1]


def test_spare_variants_get_their_encoder_side_inputs(tmp_path, tiny_encoder, monkeypatch):
    dataset = load_dataset(make_synthetic_dataset(tmp_path / "syn", num_pages=3, num_queries=2, image_size=SMALL))
    results = run_eval(dataset, tiny_encoder, ["spare", "spare_lasttoken"], (0.25,), tmp_path / "out", write=False)
    configs = {c["label"]: c for c in results.config["pruner_configs"]}
    for label in ("spare", "spare_lasttoken"):
        assert configs[label]["pages_without_features"] == 0 and configs[label]["pages_without_text"] == 0
    assert configs["spare"]["text_vectors"] >= 1 and configs["spare_lasttoken"]["text_side"] == "last_token"
    # The inputs are kept beside the encoding cache: a second run does not call the model.
    _forbid_model(monkeypatch, tiny_encoder)
    again = run_eval(dataset, tiny_encoder, ["spare", "spare_lasttoken"], (0.25,), tmp_path / "out", write=False)
    for label in ("spare", "spare_lasttoken"):
        assert again.row("syn", label, 0.25).ndcg_at_5 == results.row("syn", label, 0.25).ndcg_at_5


def test_padded_pages_equal_maxsim_matrix():
    docs = [torch.randn(n, 8) for n in (3, 7, 1, 5)]
    queries = [torch.randn(4, 8), torch.randn(2, 8)]
    scores, seconds = PaddedPages(docs, chunk=3).search(queries, repeats=2)
    assert np.allclose(scores, maxsim_matrix(queries, docs).numpy(), atol=1e-5)
    assert seconds > 0


def test_cli_on_the_synthetic_dataset(tmp_path, tiny_encoder, monkeypatch, capsys):
    import sap_rag.encoders.loading as loading

    monkeypatch.setattr(loading, "load_encoder", lambda spec, **kwargs: tiny_encoder)
    code = eval_main(
        [
            "--dataset",
            "synthetic:4",
            "--model",
            "tiny:colqwen2",
            "--pruners",
            "sap,random",
            "--keep-ratios",
            "0.5",
            "--seeds",
            "2",
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "synthetic-4: NDCG@5 kept (% of unpruned)" in out and "| random |" in out
    assert (tmp_path / "out" / "results.csv").is_file() and (
        tmp_path / "out" / "synthetic-4" / "corpus.jsonl"
    ).is_file()


def test_cli_errors_and_help(tmp_path, capsys):
    assert eval_main(["--dataset", str(tmp_path / "missing"), "--model", "tiny:colqwen2"]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        eval_main(["--help"])
    help_text = capsys.readouterr().out
    assert "examples:" in help_text and "vidore/colqwen2-v1.0" in help_text
    assert eval_main(["--dataset", "x", "--model", "tiny:colqwen2", "--pruners", "sap,bogus"]) == 2
    assert "unknown pruner 'bogus'" in capsys.readouterr().err


def test_add_eval_parser_registers_a_subcommand(tmp_path):
    import argparse

    from sap_rag.eval import add_eval_parser
    from sap_rag.eval.cli import run

    parser = argparse.ArgumentParser(prog="sap-rag")
    add_eval_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", "--dataset", "d", "--model", "tiny:colqwen2", "--keep-ratios", "0.3,0.1"])
    assert args.func is run and args.keep_ratios == [0.3, 0.1] and args.pruners == ["all"]
    assert args.out == "eval-out" and args.seeds == 3 and not args.union
