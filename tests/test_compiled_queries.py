"""The compiled query encoder: the toy checkpoint's query side as TorchScript, the same vectors as the
full model, loaded without transformers, keyed by the checkpoint's files, and safe to lose."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sap_rag.encoders import compiled
from sap_rag.encoders.compiled import CompiledQueryEncoder, load_query_encoder, save_compiled_queries

QUERIES = [
    "What was the revenue of Acme Industries in 2022?",
    "emissions",
    "How many customers did Cobalt Health have in 2023, and how did that change from 2019?",
]


@pytest.fixture(scope="module")
def compiled_toy(toy_encoder):
    entry = save_compiled_queries(toy_encoder)
    assert entry is not None and (entry / "queries.pt").is_file()
    loaded = CompiledQueryEncoder.load(toy_encoder.spec, window=toy_encoder.window, fallback=lambda: toy_encoder)
    assert loaded is not None
    return loaded


def test_same_vectors_as_the_full_model(toy_encoder, compiled_toy):
    expected = toy_encoder.encode_queries(QUERIES)
    got = compiled_toy.encode_queries(QUERIES)
    for e, g in zip(expected, got):
        assert g.shape == e.shape and g.dtype == torch.float32
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-5)


def test_a_query_longer_than_the_trace_goes_to_the_full_model(toy_encoder, compiled_toy):
    long_query = " ".join(["revenue of acme industries"] * 40)  # far past QUERY_TOKENS
    assert compiled_toy._ids(long_query) is None
    got = compiled_toy.encode_queries([long_query, QUERIES[0]])
    expected = toy_encoder.encode_queries([long_query, QUERIES[0]])
    assert got[0].shape[0] > compiled.QUERY_TOKENS
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-5)


def test_stands_in_for_the_encoder_of_an_index(tmp_path, toy_encoder, compiled_toy, pages):
    from sap_rag import SAPIndex

    with SAPIndex.create(tmp_path / "idx", encoder=toy_encoder, keep_ratio=0.25) as index:
        index.add_images(pages[:4], doc_id="doc")
        expected = index.search(QUERIES[0], k=4)
    assert compiled_toy.describe() == toy_encoder.describe()
    with SAPIndex.open(tmp_path / "idx", encoder=compiled_toy, read_only=True) as index:
        got = index.search(QUERIES[0], k=4)
    assert [h.page_id for h in got] == [h.page_id for h in expected]
    assert [h.score for h in got] == pytest.approx([h.score for h in expected], abs=1e-4)


def test_bad_queries_are_refused_as_by_the_full_encoder(compiled_toy):
    from sap_rag.errors import InvalidInputError

    for bad in ("one string", [], ["  "], [3]):
        with pytest.raises(InvalidInputError):
            compiled_toy.encode_queries(bad)


def test_loading_it_imports_neither_transformers_nor_colpali_engine(compiled_toy, toy_encoder):
    code = (
        "import sys\n"
        "from sap_rag.encoders.compiled import CompiledQueryEncoder\n"
        f"enc = CompiledQueryEncoder.load({toy_encoder.spec!r})\n"
        "assert enc is not None\n"
        "v = enc.encode_queries(['revenue of acme'])[0]\n"
        "print(v.shape[1], sorted(m for m in ('transformers', 'colpali_engine') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(toy_encoder.dim), "[]"]


def test_a_changed_checkpoint_is_a_new_entry(tmp_path, toy_encoder):
    copy = tmp_path / "ckpt"
    shutil.copytree(toy_encoder.spec, copy)
    first = compiled._entry(str(copy))
    assert first is not None and first[0] == copy.resolve()
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps(config, indent=2))  # other bytes: other size
    second = compiled._entry(str(copy))
    assert second is not None and second[1] != first[1]
    assert CompiledQueryEncoder.load(str(copy)) is None


def test_only_small_local_checkpoints_are_compiled(tmp_path, toy_encoder, tiny_encoder, monkeypatch):
    assert compiled._entry("tiny:colqwen2") is None
    assert save_compiled_queries(tiny_encoder) is None
    assert compiled._entry(str(tmp_path / "missing")) is None
    monkeypatch.setattr(compiled, "MAX_WEIGHT_BYTES", 1000)
    assert compiled._entry(toy_encoder.spec) is None


def test_switched_off_by_the_environment(compiled_toy, toy_encoder, monkeypatch):
    monkeypatch.setenv(compiled.DISABLE_ENV, "1")
    assert CompiledQueryEncoder.load(toy_encoder.spec) is None
    assert isinstance(load_query_encoder(toy_encoder.spec, window=toy_encoder.window), type(toy_encoder))


def test_a_damaged_entry_falls_back_to_the_full_model(tmp_path, toy_encoder, monkeypatch, caplog):
    monkeypatch.setenv(compiled.CACHE_ENV, str(tmp_path / "cache"))
    entry = save_compiled_queries(toy_encoder)
    assert entry is not None and entry.is_relative_to(tmp_path / "cache")
    (entry / "queries.pt").write_bytes(b"not a torchscript archive")
    with caplog.at_level("WARNING"):
        assert CompiledQueryEncoder.load(toy_encoder.spec) is None
    assert "ignoring the compiled query encoder" in caplog.text


def test_the_cli_index_command_caches_it_and_search_uses_it(tmp_path, monkeypatch, capsys):
    from sap_rag.cli.main import main

    monkeypatch.setenv(compiled.CACHE_ENV, str(tmp_path / "cache"))
    root = Path(__file__).resolve().parents[1]
    checkpoint = str(root / "models" / "sap-rag-toy-colqwen2")
    assert (
        main(["index", str(root / "examples" / "data"), "--index", str(tmp_path / "idx"), "--model", checkpoint]) == 0
    )
    assert list((tmp_path / "cache" / "query-encoders").glob("*/queries.pt"))
    capsys.readouterr()
    loaded: list[object] = []
    real_load = CompiledQueryEncoder.load

    def spy(*args, **kwargs):
        loaded.append(real_load(*args, **kwargs))
        return loaded[-1]

    monkeypatch.setattr(CompiledQueryEncoder, "load", spy)
    search = ["search", "revenue of Acme Industries", "--index", str(tmp_path / "idx"), "-k", "3"]
    assert main(search) == 0
    assert len(loaded) == 1 and isinstance(loaded[0], CompiledQueryEncoder)
    fast = capsys.readouterr().out
    monkeypatch.setenv(compiled.DISABLE_ENV, "1")
    assert main(search) == 0
    assert loaded[-1] is None
    assert capsys.readouterr().out == fast  # the same table as with the full model
