"""The facts page style: several facts a page, answers local to one block, distractors sharing title and layout."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest


def test_fact_pages_hold_each_fact_once_and_share_title_and_layout_within_a_company():
    from sap_rag.train.pages import METRICS, make_fact_pages, max_pages

    pages = make_fact_pages(60, seed=5)
    assert len(pages) == max_pages("facts") == 60
    facts = [(p.company, f.metric) for p in pages for f in p.facts]
    assert len(facts) == len(set(facts)) == 20 * len(METRICS)  # every (company, metric) once in the corpus
    assert all(2 <= len(p.facts) <= 3 for p in pages)
    by_company: dict[str, list] = {}
    for page in pages:
        by_company.setdefault(page.company, []).append(page)
    for company, group in by_company.items():
        assert len(group) == 3
        # the distractors: same title and layout, other facts
        layouts = {(p.title, p.font, p.title_size, p.heading_size, p.centered, p.band, p.palette) for p in group}
        assert len(layouts) == 1 and group[0].title == company
        assert not set.intersection(*({f.metric for f in p.facts} for p in group))
    assert make_fact_pages(12, seed=5) == pages[:12]  # deterministic, a prefix of the full corpus
    assert make_fact_pages(60, seed=6) != pages
    with pytest.raises(ValueError, match=r"at most|between"):
        make_fact_pages(61, seed=0)


def test_each_fact_question_has_exactly_one_answering_page():
    from sap_rag.train.pages import make_fact_pages

    pages = make_fact_pages(60, seed=11)
    for page in pages:
        for variant in range(12):
            question, answer = page.question(variant)
            holders = [
                other
                for other in pages
                if other.company in question and any(f" {f.metric} " in f" {question} " for f in other.facts)
            ]
            # the question names the company (shared by 3 pages) and one metric: only this page holds both
            assert holders == [page], question
            fact = page.facts[variant % len(page.facts)]
            assert fact.metric in question
            assert answer  # a value, a year or the series


def test_fact_pages_render_with_the_metric_inside_the_page_and_not_in_the_title():
    from sap_rag.train.pages import make_fact_pages, make_pages
    from sap_rag.train.render import render_page, render_report_page

    pages = make_fact_pages(3, seed=2)
    images = [np.asarray(render_page(page, (252, 364))) for page in pages]
    assert all(image.shape == (364, 252, 3) for image in images)
    # same company, same title and layout: the title band of the three pages is identical, the body is not
    assert np.array_equal(images[0][:40], images[1][:40]) and np.array_equal(images[1][:40], images[2][:40])
    assert not np.array_equal(images[0][60:300], images[1][60:300])
    report = make_pages(1, seed=2)[0]
    assert np.array_equal(
        np.asarray(render_page(report, (252, 364))), np.asarray(render_report_page(report, (252, 364)))
    )


def test_render_pages_mixes_styles_per_seed():
    from sap_rag.train.data import render_pages
    from sap_rag.train.pages import FactsPage, ReportPage

    pages = render_pages([3, 4], 64, (252, 364), show_progress=False, styles=["report", "facts"])
    kinds = Counter((int(c), type(p).__name__) for c, p in zip(pages.corpus, pages.pages))
    assert kinds == {(0, ReportPage.__name__): 64, (1, FactsPage.__name__): 60}  # facts corpora hold at most 60
    assert [p.index for p in pages.pages] == list(range(124))
    with pytest.raises(ValueError, match="style"):
        render_pages([3], 4, (252, 364), show_progress=False, styles=["poster"])


def test_facts_training_config_checks_its_corpora_and_heldout_seeds():
    from sap_rag.train.loop import TrainConfig, _epoch_seeds, _epoch_styles

    config = TrainConfig(train_seeds=(10, 11, 12), facts_corpora=1, heldout_facts_seeds=(16,))
    assert _epoch_styles(config) == ["report", "report", "facts"]
    assert _epoch_styles(TrainConfig()) is None
    with pytest.raises(ValueError, match="facts_corpora"):
        _epoch_styles(TrainConfig(train_seeds=(1,), facts_corpora=2))
    _epoch_seeds(config, 1)  # 13-15
    with pytest.raises(ValueError, match="overlap"):
        _epoch_seeds(config, 2)  # 16 is a held-out facts seed


def test_synthetic_facts_dataset_has_one_relevant_page_per_question(tmp_path):
    from sap_rag.errors import InvalidInputError
    from sap_rag.eval.datasets import load_dataset
    from sap_rag.eval.synthetic import make_synthetic_dataset

    root = make_synthetic_dataset(tmp_path / "facts", num_pages=9, num_queries=18, seed=4, style="facts")
    queries = [json.loads(line) for line in (root / "queries.jsonl").read_text().splitlines()]
    qrels = [json.loads(line) for line in (root / "qrels.jsonl").read_text().splitlines()]
    corpus = [json.loads(line) for line in (root / "corpus.jsonl").read_text().splitlines()]
    assert len(queries) == 18 and len(qrels) == 18 and len(corpus) == 9
    from sap_rag.train.pages import make_fact_pages

    pages = make_fact_pages(9, seed=4)
    for query, qrel in zip(queries, qrels):
        page = pages[qrel["corpus-id"]]
        assert page.company in query["query"]
        assert sum(f.metric in query["query"] for f in page.facts) >= 1
        # the company's other pages (same title) do not hold the metric asked about
        asked = [f.metric for f in page.facts if f" {f.metric} " in f" {query['query']} "]
        others = [p for p in pages if p.company == page.company and p is not page]
        assert others and not any(f.metric in asked for p in others for f in p.facts)
    # both rounds of questions ask different facts of a page
    assert queries[0]["query"] != queries[9]["query"]
    dataset = load_dataset(root)
    relevance = dataset.relevance_matrix()
    assert relevance.shape == (18, 9) and (relevance.sum(axis=1) == 1).all()
    with pytest.raises(InvalidInputError, match="60"):
        make_synthetic_dataset(tmp_path / "big", num_pages=61, style="facts")


def test_training_on_mixed_styles_reports_the_facts_heldout_and_stops_at_the_time_limit():
    from sap_rag.train.loop import TrainConfig, train
    from sap_rag.train.model import ModelShape

    config = TrainConfig(
        shape=ModelShape(layers=2, hidden=32, intermediate=64, vision_width=16, vision_layers=1),
        train_seeds=(40, 41),
        facts_corpora=1,
        heldout_facts_seeds=(77,),
        pages_per_seed=8,
        batch_size=4,
        heldout_pages=6,
        epochs=10,
        max_steps=9,
        max_minutes=0.0,  # the limit has passed after the first step
        cover_steps=0,
        warmup_steps=1,
    )
    result = train(config, show_progress=False)
    assert [row["step"] for row in result.curve] == [1]
    row = result.curve[-1]
    assert 0.0 <= row["heldout_facts_ndcg5"] <= 1.0 and 0.0 <= row["heldout_ndcg5"] <= 1.0
