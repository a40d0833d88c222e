"""The toy-model training code: pages, tokenizer, fast patchify, and the script end to end on a few steps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_pages_have_distinct_pairs_and_one_answering_page():
    from sap_rag.train.pages import make_pages

    pages = make_pages(160, seed=5)
    pairs = {(p.company, p.metric) for p in pages}
    assert len(pairs) == 160
    for page in pages[:40]:
        for variant in range(6):
            question, _ = page.question(variant)
            # the question names this page's company and metric, so no other page of the corpus answers it
            assert page.company in question and page.metric in question
    assert make_pages(20, seed=5) == make_pages(20, seed=5)  # deterministic per seed
    assert [p.values for p in make_pages(10, seed=1)] != [p.values for p in make_pages(10, seed=2)]
    with pytest.raises(ValueError):
        make_pages(161, seed=0)


def test_word_tokenizer_keeps_page_words_whole():
    from sap_rag.train.model import word_tokenizer

    tokenizer = word_tokenizer()
    tokens = tokenizer.tokenize("What was the research spending of Acme Industries in 2021?")
    assert tokens == [
        "what",
        "was",
        "the",
        "research",
        "spending",
        "of",
        "acme",
        "industries",
        "in",
        "2",
        "0",
        "2",
        "1",
        "?",
    ]
    assert tokenizer.tokenize("zebra") == ["[UNK]"]


def test_patchify_equals_the_image_processor():
    """The training fast path must feed the model exactly what the processor (used at search time) feeds it."""
    from sap_rag.train.data import page_batch
    from sap_rag.train.model import ModelShape, build_toy_colqwen2
    from sap_rag.train.pages import make_pages
    from sap_rag.train.render import render_report_page

    _, processor = build_toy_colqwen2(
        ModelShape(layers=1, hidden=32, intermediate=32, vision_width=16, vision_layers=1), 0
    )
    images = [render_report_page(p, (252, 364)) for p in make_pages(3, seed=0)]
    reference = processor.process_images(images)
    fast = page_batch(processor, np.stack([np.asarray(im) for im in images]))
    for key in ("input_ids", "attention_mask", "image_grid_thw", "mm_token_type_ids"):
        assert (reference[key] == fast[key]).all(), key
    assert float((reference["pixel_values"] - fast["pixel_values"]).abs().max()) < 1e-5


def test_resampled_pages_pass_through_the_pdf_path_and_are_reproducible():
    from sap_rag.train.data import render_pages, resampled
    from sap_rag.train.pages import make_pages
    from sap_rag.train.render import render_report_page

    page = make_pages(1, seed=3)[0]
    direct = np.asarray(render_report_page(page, (252, 364)))
    assert (np.asarray(resampled(page, (252, 364), 1, 1)) == direct).all()
    shrunk = np.asarray(resampled(page, (252, 364), 2, 2))
    assert shrunk.shape == direct.shape
    # the same page, read through a resize: close to the direct drawing, not equal to it
    difference = np.abs(shrunk.astype(int) - direct.astype(int))
    assert difference.max() > 0 and difference.mean() < 20
    first = render_pages([3, 4], 4, (252, 364), show_progress=False, resample=(1, 2, 4))
    again = render_pages([3, 4], 4, (252, 364), show_progress=False, resample=(1, 2, 4))
    plain = render_pages([3, 4], 4, (252, 364), show_progress=False)
    assert (first.images == again.images).all() and first.pages == plain.pages
    assert (first.images != plain.images).any()


def test_company_batches_hold_three_whole_companies():
    """A company-cut batch of 24 is 3 companies x 8 metrics: every query's same-company pages are its negatives."""
    from sap_rag.train.loop import _by_company
    from sap_rag.train.pages import make_pages

    pages = make_pages(160, seed=1)
    members = np.arange(160)
    order = _by_company(members, pages, np.random.default_rng(0))
    assert sorted(order.tolist()) == members.tolist()
    for start in range(0, 160 - 23, 24):
        batch = [pages[i] for i in order[start : start + 24]]
        assert len({p.company for p in batch}) == 3
    assert not (_by_company(members, pages, np.random.default_rng(1)) == order).all()  # shuffled per call


def test_token_dropout_keeps_visual_tokens_only_at_the_drawn_share():
    """Dropped rows are zeroed, prompt rows stay zero, each page keeps one token at least, shares vary by page."""
    import torch

    from sap_rag.train.loop import _drop_tokens

    pages, tokens = 64, 200
    visual = torch.zeros(pages, tokens, dtype=torch.bool)
    visual[:, 10:190] = True
    docs = torch.randn(pages, tokens, 8) * visual.unsqueeze(-1)
    out = _drop_tokens(docs, visual, 0.5, torch.Generator().manual_seed(0))
    kept = out.abs().sum(-1) > 0
    assert not kept[~visual].any()
    assert torch.equal(out[kept], docs[kept])  # kept rows untouched
    share = kept.sum(1).float() / visual.sum(1)
    assert share.min() > 0.4 and share.max() <= 1.0 and share.std() > 0.05  # u ~ U(0.5, 1) per page
    assert abs(share.mean().item() - 0.75) < 0.05
    tiny = _drop_tokens(docs, visual, 0.0, torch.Generator().manual_seed(1))
    assert ((tiny.abs().sum(-1) > 0).sum(1) >= 1).all()
    again = _drop_tokens(docs, visual, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(again, out)
    bands = _drop_tokens(docs, visual, 0.2, torch.Generator().manual_seed(2), span_share=1.0)
    for page in bands.abs().sum(-1) > 0:
        where = page.nonzero().flatten()
        assert where.min() >= 10 and where.max() < 190  # inside the visual run
        assert where.max() - where.min() + 1 == len(where)  # one contiguous band
    lengths = (bands.abs().sum(-1) > 0).sum(1).float() / 180
    assert lengths.min() >= 0.2 and lengths.std() > 0.1
    starts = [int(p.nonzero().min()) for p in (bands.abs().sum(-1) > 0)]
    assert len(set(starts)) > 10  # placed anywhere, not always at the top


def test_training_refuses_a_held_out_seed_from_the_first_epoch():
    from sap_rag.train.loop import TrainConfig, _epoch_seeds, train

    config = TrainConfig(train_seeds=(9000, 9001), heldout_seeds=(9001,))
    with pytest.raises(ValueError, match="overlap the held-out seeds"):
        train(config, show_progress=False)
    fresh = TrainConfig(train_seeds=(8999, 9000), heldout_seeds=(9001,))
    assert _epoch_seeds(fresh, 0) == [8999, 9000]
    with pytest.raises(ValueError, match="overlap"):
        _epoch_seeds(fresh, 1)  # 9001, 9002: new corpora every epoch move onto the held-out seed


def test_each_epochs_new_pages_are_drawn_once_in_the_background_and_only_when_trained_on(monkeypatch):
    """Fresh pages every epoch: epoch e's seeds drawn once, epochs after the first in the render thread,
    ready before the epoch starts; no pages for an epoch that max_steps cuts off."""
    import dataclasses
    import threading

    from sap_rag.train import loop
    from sap_rag.train.model import ModelShape

    real = loop.render_pages
    calls: list[tuple[list[int], str]] = []

    def recording(seeds, *args, **kwargs):
        calls.append((list(seeds), threading.current_thread().name))
        return real(seeds, *args, **kwargs)

    monkeypatch.setattr(loop, "render_pages", recording)
    config = loop.TrainConfig(
        shape=ModelShape(layers=2, hidden=32, intermediate=64, vision_width=16, vision_layers=1),
        train_seeds=(40, 41),
        pages_per_seed=8,
        batch_size=4,
        heldout_pages=6,
        epochs=10,
        max_steps=9,  # 4 steps an epoch: epochs 0-2 run, epoch 3 never starts
        cover_steps=0,
        warmup_steps=1,
    )
    result = loop.train(config, show_progress=False)
    assert [row["step"] for row in result.curve] == [4, 8, 9]
    training = [(seeds, thread) for seeds, thread in calls if seeds != list(config.heldout_seeds)]
    assert [seeds for seeds, _ in training] == [[40, 41], [42, 43], [44, 45]]
    assert "render" not in training[0][1]  # the first epoch's pages are drawn before training starts
    assert all(thread.startswith("sap-rag-render") for _, thread in training[1:])

    calls.clear()
    loop.train(dataclasses.replace(config, prefetch_pages=False), show_progress=False)
    training = [(seeds, thread) for seeds, thread in calls if seeds != list(config.heldout_seeds)]
    assert [seeds for seeds, _ in training] == [[40, 41], [42, 43], [44, 45]]
    assert not any(thread.startswith("sap-rag-render") for _, thread in training)


def test_training_script_runs_end_to_end(tmp_path):
    """A few steps of the real script (tiny shape, few pages): checkpoint, curve files and picture appear."""
    out = tmp_path / "ckpt"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "train_toy_model.py"),
            "--out",
            str(out),
            "--tiny",
            "--max-steps",
            "3",
            "--batch-size",
            "4",
            "--train-seeds",
            "1",
            "--pages-per-seed",
            "8",
            "--heldout-pages",
            "6",
            "--threads",
            "1",
            "--resample",
            "1,2",
            "--company-batches",
            "1",
            "--token-keep-min",
            "0.5",
            "--token-span-share",
            "0.5",
            "--select",
            "last",
            "--eval-every",
            "1",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "processor_config.json",
        "training_curve.csv",
        "training_curve.json",
        "training_curve.png",
    ):
        assert (out / name).is_file(), name
    curve = json.loads((out / "training_curve.json").read_text())["curve"]
    assert [row["step"] for row in curve] == [1, 2, 3]
    assert json.loads((out / "heldout_scores.json").read_text())["best"]["step"] == 3  # --select last
    assert 0.0 <= curve[-1]["heldout_ndcg5"] <= 1.0 and np.isfinite(curve[-1]["train_loss"])

    from sap_rag import load_encoder

    encoder = load_encoder(out, device="cpu")
    assert encoder.family == "colqwen2"
    from sap_rag.train.pages import make_pages
    from sap_rag.train.render import render_report_page

    [page] = encoder.encode_pages([render_report_page(make_pages(1, seed=3)[0], (252, 364))])
    assert page.embeddings.shape[0] == 117
