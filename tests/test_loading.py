"""load_encoder: tiny specs, local checkpoints (family from config.json), adapters, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from sap_rag import ModelLoadError, UnknownFamilyError, WindowError, load_encoder
from sap_rag.encoders import detect_family


def test_tiny_models_are_deterministic_per_seed(tiny_encoder, pages):
    again = load_encoder("tiny:colqwen2", seed=0)
    other = load_encoder("tiny:colqwen2", seed=1)
    (a,) = tiny_encoder.encode_pages(pages[:1])
    (b,) = again.encode_pages(pages[:1])
    (c,) = other.encode_pages(pages[:1])
    assert torch.equal(a.embeddings, b.embeddings)
    assert not torch.allclose(a.embeddings, c.embeddings)


def test_encoder_exposes_its_parts(tiny_encoder):
    assert tiny_encoder.family == "colqwen2"
    assert tiny_encoder.num_layers == 4
    assert tiny_encoder.window == (2,)  # depth-proportional fallback for an unknown 4-layer backbone
    assert tiny_encoder.model is not None and tiny_encoder.processor is not None
    described = tiny_encoder.describe()
    assert described["spec"] == "tiny:colqwen2" and described["dim"] == 128


def test_local_checkpoint_is_detected_from_its_config_and_round_trips(tiny_encoder, pages, tmp_path):
    checkpoint = tmp_path / "my-checkpoint"  # the name says nothing about the family
    tiny_encoder.model.save_pretrained(checkpoint)
    tiny_encoder.processor.save_pretrained(checkpoint)
    family, model_type, _ = detect_family(str(checkpoint))
    assert (family.name, model_type) == ("colqwen2", "qwen2_vl")
    loaded = load_encoder(checkpoint, window=[1, 2])
    assert loaded.family == "colqwen2" and loaded.window == (1, 2) and loaded.window_source == "given"
    (a,) = tiny_encoder.encode_pages(pages[:1])
    (b,) = loaded.encode_pages(pages[:1])
    assert torch.allclose(a.embeddings, b.embeddings, atol=1e-5)


def _calibration(window, family="colqwen2", num_layers=4):
    from sap_rag.calibration import Calibration

    return Calibration(
        spec="somewhere",
        family=family,
        model_type="qwen2_vl",
        num_layers=num_layers,
        keep_ratio=0.1,
        rho=0.2,
        num_pairs=8,
        layers=[0, 1, 2, 3],
        sr_mean=[0.9, 0.8, 0.7, 0.6],
        sr_std=[0.0] * 4,
        window=window,
    )


def test_a_checkpoint_carries_its_own_calibrated_window(tiny_encoder, tmp_path):
    """``sap_calibration.json`` beside the weights is the default window; a given window still wins."""
    from sap_rag import SapRagError
    from sap_rag.calibration import CHECKPOINT_CALIBRATION

    checkpoint = tmp_path / "calibrated"
    tiny_encoder.model.save_pretrained(checkpoint)
    tiny_encoder.processor.save_pretrained(checkpoint)
    assert load_encoder(checkpoint).window == (2,)  # no calibration yet: the fallback
    _calibration([0, 1]).save(checkpoint / CHECKPOINT_CALIBRATION)
    loaded = load_encoder(checkpoint)
    assert loaded.window == (0, 1) and loaded.window_source == "checkpoint calibration"
    assert load_encoder(checkpoint, window=[3]).window == (3,)
    _calibration([1], family="colpali", num_layers=18).save(checkpoint / CHECKPOINT_CALIBRATION)
    with pytest.raises(SapRagError, match="calibrate this model instead"):
        load_encoder(checkpoint)
    (checkpoint / CHECKPOINT_CALIBRATION).write_text("{not json")
    with pytest.raises(SapRagError, match=r"sap_calibration\.json.*fix or remove"):
        load_encoder(checkpoint)
    _calibration([7]).save(checkpoint / CHECKPOINT_CALIBRATION)
    with pytest.raises(WindowError, match="outside"):
        load_encoder(checkpoint)


def test_an_adapter_is_followed_to_its_base_config(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    family, model_type, source = detect_family(str(adapter))
    assert (family.name, model_type, source) == ("colqwen2_5", "qwen2_5_vl", str(base))


def test_unsupported_backbones_and_bad_specs_are_clear_errors(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(UnknownFamilyError, match="model_type 'bert'"):
        load_encoder(tmp_path)
    with pytest.raises(UnknownFamilyError, match="unknown model family 'colfoo'"):
        load_encoder("tiny:colfoo")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match=r"neither a config\.json"):
        load_encoder(empty)


def test_a_window_outside_the_model_is_a_clear_error():
    with pytest.raises(WindowError, match=r"outside the model's 4 decoder layers"):
        load_encoder("tiny:colqwen2", window=[3, 4])


def test_importing_the_core_pulls_in_no_framework_and_no_model_stack():
    code = (
        "import sys, sap_rag; "
        "bad = [m for m in ('langchain_core', 'llama_index', 'transformers', 'torch') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_a_local_checkpoint_is_recorded_by_its_absolute_path_and_loads_quietly(
    tiny_encoder, tmp_path, monkeypatch, capfd
):
    """An index records ``describe()``: a relative folder would not open from another directory.
    Loading a small checkpoint shows no weight-loading bar and no loss_type warning, and leaves
    transformers' own progress-bar setting as it was."""
    from transformers.utils import logging as hf_logging

    checkpoint = tmp_path / "models" / "toy"
    tiny_encoder.model.save_pretrained(checkpoint)
    tiny_encoder.processor.save_pretrained(checkpoint)
    monkeypatch.chdir(tmp_path)
    hf_logging.enable_progress_bar()
    capfd.readouterr()
    loaded = load_encoder("models/toy", window=[1])
    assert loaded.spec == str(checkpoint.resolve()) == loaded.describe()["spec"]
    assert load_encoder("tiny:colqwen2").describe()["spec"] == "tiny:colqwen2"
    loaded.model.loss_function  # noqa: B018 - what TorchScript tracing reads: transformers warns here
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "loss_type" not in err
    assert hf_logging.is_progress_bar_enabled()
