"""The committed toy checkpoint (models/sap-rag-toy-colqwen2): loads like a hub checkpoint, ranks held-out
pages as recorded, keeps its quality under SAP, and answers the demo's questions with the right page."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "models" / "sap-rag-toy-colqwen2"
SCORES = json.loads((CHECKPOINT / "heldout_scores.json").read_text())
SUBSET = SCORES["subset"]  # {"seed", "pages", "ndcg5", "sap_0.25_ndcg5", "sap_floor"} measured through load_encoder
# A checkpoint below the target (held-out NDCG@5 0.80) is committed as provisional; see its README.md.
PROVISIONAL = bool(SCORES["provisional"])


@pytest.fixture(scope="module")
def subset(toy_encoder):
    """The fixed held-out subset: pages of a seed never trained on, encoded once, and their questions."""
    from sap_rag.train.pages import make_pages
    from sap_rag.train.render import render_report_page

    pages = make_pages(SUBSET["pages"], SUBSET["seed"])
    encodings = toy_encoder.encode_pages([render_report_page(p, (252, 364)) for p in pages])
    queries = toy_encoder.encode_queries([p.question(p.index % 6)[0] for p in pages])
    return encodings, queries


def _ndcg5(queries: list[torch.Tensor], docs: list[torch.Tensor]) -> float:
    """One relevant page per query (query i <-> page i): mean of 1/log2(rank + 1) for ranks <= 5."""
    total = 0.0
    for i, query in enumerate(queries):
        scores = torch.stack([(query @ doc.T).amax(dim=1).sum() for doc in docs])
        rank = int((scores > scores[i]).sum()) + 1
        total += 1.0 / math.log2(rank + 1) if rank <= 5 else 0.0
    return total / len(queries)


def test_checkpoint_loads_as_a_colqwen2_with_a_sap_window(toy_encoder):
    assert toy_encoder.family == "colqwen2"
    assert toy_encoder.model_type == "qwen2_vl"
    layers = len(toy_encoder.family_spec.text_model(toy_encoder.model).layers)
    assert toy_encoder.window and all(0 <= layer < layers for layer in toy_encoder.window)
    size = sum(f.stat().st_size for f in CHECKPOINT.rglob("*") if f.is_file())
    assert size < 25e6


def test_heldout_ndcg5_reproduces_the_recorded_value(subset):
    encodings, queries = subset
    ndcg = _ndcg5(queries, [page.embeddings for page in encodings])
    assert ndcg == pytest.approx(SUBSET["ndcg5"], abs=0.02)
    if not PROVISIONAL:
        assert ndcg >= SCORES["target_ndcg5"] - 0.1  # far above chance (~0.12 for 32 pages)


def test_sap_at_quarter_keeps_most_of_the_quality(subset):
    from sap_rag.pruning import make_pruner

    encodings, queries = subset
    full = _ndcg5(queries, [page.embeddings for page in encodings])
    pruner = make_pruner("sap", 0.25)
    pruned = [pruner.prune(page) for page in encodings]
    assert all(p.embeddings.shape[0] < page.embeddings.shape[0] / 3 for p, page in zip(pruned, encodings))
    kept = _ndcg5(queries, [p.embeddings for p in pruned])
    # floor set from the measured value (see docs/toy-model.md), with a margin for float rounding
    assert kept >= SUBSET["sap_floor"] * full


DEMO_QUESTIONS = {
    "What was the revenue of Acme Industries in 2022?": ("acme_industries_2023.pdf", 1),
    "In which year were the emissions of Acme Industries highest?": ("acme_industries_2023.pdf", 2),
    "What was the water use of Borealis Energy in 2021?": ("borealis_energy_2023.pdf", 2),
    "How did the profit of Borealis Energy change between 2019 and 2023?": ("borealis_energy_2023.pdf", 3),
    "How many customers did Cobalt Health have in 2023?": ("cobalt_health_2023.pdf", 1),
    "What was the research spending of Cobalt Health in 2020?": ("cobalt_health_2023.pdf", 2),
}


def test_demo_questions_are_the_demo_scripts_questions():
    script = (ROOT / "scripts" / "demo.sh").read_text()
    for question in DEMO_QUESTIONS:
        assert f'"{question}"' in script


DEMO = SCORES["demo"]  # {"questions", "first_hits", "keep_ratio", ...}: measured on the sample PDFs


@pytest.fixture(scope="module")
def demo_first_hits(toy_encoder, tmp_path_factory) -> dict[str, bool]:
    """Per demo question: is the first hit of the demo index (sample PDFs, default keep ratio) its answering page?"""
    from sap_rag import SAPIndex

    with SAPIndex.create(tmp_path_factory.mktemp("demo") / "index", encoder=toy_encoder) as index:
        assert index.manifest.keep_ratio == DEMO["keep_ratio"] and index.manifest.window == DEMO["window"]
        index.add_documents(ROOT / "examples" / "data")
        out = {}
        for question, (filename, page_number) in DEMO_QUESTIONS.items():
            [hit] = index.search(question, k=1)
            out[question] = (hit.metadata["filename"], hit.page_number) == (filename, page_number)
    return out


def test_the_checkpoint_brings_its_calibrated_window(toy_encoder):
    """The demo's window is the checkpoint's own calibration (sap_calibration.json), not the depth fallback."""
    from sap_rag.calibration import CHECKPOINT_CALIBRATION, Calibration

    calibration = Calibration.load(CHECKPOINT / CHECKPOINT_CALIBRATION)
    assert toy_encoder.window == tuple(calibration.window) == tuple(DEMO["window"])
    assert toy_encoder.window_source == "checkpoint calibration"


def test_demo_first_hit_is_the_answering_page(demo_first_hits):
    """The demo's index answers every demo question with the right page first."""
    assert all(demo_first_hits.values()), [q for q, ok in demo_first_hits.items() if not ok]
