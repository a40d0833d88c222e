"""The sap-rag command line, end to end in a temporary directory."""

from __future__ import annotations

import json

import pytest
from conftest import make_page
from PIL import Image

from sap_rag import Calibration
from sap_rag.cli import main


@pytest.fixture
def pairs_file(tmp_path):
    (tmp_path / "pages").mkdir()
    lines = []
    for i, query in enumerate(["revenue 2023", "energy chart", "assets table"]):
        make_page(i, text=query).save(tmp_path / "pages" / f"p{i}.png")
        lines.append(json.dumps({"query": query, "image": f"pages/p{i}.png"}))
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_calibrate_writes_the_calibration_and_the_plot(pairs_file, tmp_path, capsys):
    out, plot = tmp_path / "calib.json", tmp_path / "sr.png"
    code = main(
        ["calibrate", "--pairs", str(pairs_file), "--out", str(out), "--plot", str(plot), "--keep-ratio", "0.2"]
    )
    assert code == 0
    calibration = Calibration.load(out)
    assert calibration.num_pairs == 3 and calibration.keep_ratio == 0.2
    printed = capsys.readouterr().out
    assert "window" in printed and "SR mean" in printed
    with Image.open(plot) as png:
        assert png.format == "PNG"


def test_calibrating_a_checkpoint_directory_says_how_its_window_becomes_the_default(pairs_file, tmp_path, capsys):
    import shutil
    from pathlib import Path

    from sap_rag.calibration.calibrate import CHECKPOINT_CALIBRATION

    checkpoint = tmp_path / "toy"
    shutil.copytree(Path(__file__).resolve().parents[1] / "models" / "sap-rag-toy-colqwen2", checkpoint)
    (checkpoint / CHECKPOINT_CALIBRATION).unlink()
    aside = tmp_path / "calib.json"
    assert main(["calibrate", "--model", str(checkpoint), "--pairs", str(pairs_file), "--out", str(aside)]) == 0
    assert f"cp {aside} {checkpoint / CHECKPOINT_CALIBRATION}" in capsys.readouterr().out
    installed = checkpoint / CHECKPOINT_CALIBRATION
    assert main(["calibrate", "--model", str(checkpoint), "--pairs", str(pairs_file), "--out", str(installed)]) == 0
    printed = capsys.readouterr().out
    assert "cp " not in printed and "default window from now on" in printed
    assert Calibration.load(installed).window == Calibration.load(aside).window


def test_calibrate_takes_its_pairs_from_a_dataset_folder(tmp_path, capsys):
    from sap_rag.eval.datasets import load_dataset
    from sap_rag.eval.synthetic import make_synthetic_dataset

    root = make_synthetic_dataset(tmp_path / "synth", num_pages=5, seed=3)
    out = tmp_path / "calib.json"
    assert main(["calibrate", "--dataset", str(root), "--max-pairs", "4", "--out", str(out)]) == 0
    assert Calibration.load(out).num_pairs == 4
    assert main(["calibrate", "--dataset", str(root), "--out", str(out)]) == 0
    dataset = load_dataset(root)
    judged = sum(1 for qid in dataset.query_ids for grade in dataset.qrels[qid].values() if grade > 0)
    assert Calibration.load(out).num_pairs == judged > 4
    capsys.readouterr()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["calibrate", "--dataset", str(empty), "--out", str(tmp_path / "c2.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "holds no dataset" in err and "\n" not in err
    for option in (["--language", "english"], ["--split", "train"]):
        assert main(["calibrate", "--pairs", str(tmp_path / "p.jsonl"), *option, "--out", str(out)]) == 1
        assert f"{option[0]} applies to a dataset folder" in capsys.readouterr().err
    assert main(["calibrate", "--dataset", str(tmp_path), "--out", str(tmp_path / "c2.json")]) == 1
    err = capsys.readouterr().err
    assert "is a folder of 1 datasets (synth)" in err and f"--dataset {root}" in err
    assert not (tmp_path / "c2.json").exists()
    for bad in (["--pairs", "p.jsonl", "--dataset", str(root)], ["--dataset", str(root), "--max-pairs", "0"]):
        with pytest.raises(SystemExit) as info:
            main(["calibrate", *bad, "--out", str(out)])
        assert info.value.code == 2


def test_errors_are_one_line_and_a_nonzero_exit(tmp_path, capsys):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"query": "no image key"}\n')
    assert main(["calibrate", "--pairs", str(bad), "--out", str(tmp_path / "c.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "pairs.jsonl:1" in err and "\n" not in err
    assert main(["calibrate", "--pairs", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "c.json")]) == 1


def test_help_and_usage_errors_exit_like_a_script(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "examples:" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["calibrate"])  # --pairs and --out are required
    assert info.value.code == 2


@pytest.fixture
def corpus(tmp_path):
    """Two small PDFs and a scanned page in nested folders."""
    from test_ingest import write_pdf

    root = tmp_path / "docs"
    (root / "scans").mkdir(parents=True)
    write_pdf(root / "report.pdf", pages=2, text="Revenue by region")
    write_pdf(root / "energy.pdf", pages=1, text="Energy use by sector")
    make_page(7, (300, 420)).save(root / "scans" / "scan.png")
    return root


def run_json(capsys, argv):
    capsys.readouterr()  # drop what earlier commands printed
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_index_search_info_show_delete_end_to_end(corpus, tmp_path, capsys):
    index = tmp_path / "idx"
    assert main(["index", str(corpus), "--index", str(index), "--keep-ratio", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "indexed 3 documents, 4 pages" in out and "bytes per page" in out

    hits = run_json(capsys, ["search", "revenue by region", "--index", str(index), "-k", "3", "--json"])
    assert len(hits) == 3 and [h["rank"] for h in hits] == [1, 2, 3]
    assert all(hits[i]["score"] >= hits[i + 1]["score"] for i in range(2))
    assert {"doc_id", "page_number", "image_path", "metadata"} <= set(hits[0])

    only = run_json(
        capsys, ["search", "energy", "--index", str(index), "-k", "5", "--json", "--filter", "filename=energy.pdf"]
    )
    assert len(only) == 1 and only[0]["metadata"]["filename"] == "energy.pdf"

    info = run_json(capsys, ["info", "--index", str(index), "--json"])
    assert (info["documents"], info["pages"], info["model"], info["family"]) == (3, 4, "tiny:colqwen2", "colqwen2")
    assert info["keep_ratio"] == 0.2 and info["window"] == [2] and info["bytes_on_disk"] > 0

    report = next(h for h in hits if h["metadata"]["filename"] == "report.pdf")
    overlay = tmp_path / "overlay.png"
    assert main(["show", "--index", str(index), "--doc", report["doc_id"], "--page", "2", "--out", str(overlay)]) == 0
    capsys.readouterr()
    with Image.open(overlay) as png, Image.open(report["image_path"]) as page:
        assert png.size == page.size  # the page's own size
        caption = png.text["Caption"]  # document, page and keep ratio in the caption
        assert "report.pdf" in caption and "page 2" in caption and "0.2" in caption
    page_two = run_json(
        capsys,
        [
            "search",
            "x",
            "--index",
            str(index),
            "--json",
            "--filter",
            f"doc_id={report['doc_id']}",
            "--filter",
            "page_number=2",
        ],
    )
    assert [(h["doc_id"], h["page_number"]) for h in page_two] == [(report["doc_id"], 2)]

    assert main(["delete", report["doc_id"], "--index", str(index)]) == 0
    assert "2 pages" in capsys.readouterr().out
    info = run_json(capsys, ["info", "--index", str(index), "--json"])
    assert (info["documents"], info["pages"]) == (2, 2)
    assert main(["delete", report["doc_id"], "--index", str(index)]) == 1  # already gone: a clear error
    assert "no document" in capsys.readouterr().err


def test_reindexing_is_a_no_op_and_a_changed_file_replaces_its_pages(corpus, tmp_path, capsys):
    from test_ingest import write_pdf

    index = tmp_path / "idx"
    assert main(["index", str(corpus), "--index", str(index)]) == 0
    before = run_json(capsys, ["info", "--index", str(index), "--json"])
    assert main(["index", str(corpus), "--index", str(index)]) == 0
    assert "unchanged (already indexed): 3 documents" in capsys.readouterr().out
    assert run_json(capsys, ["info", "--index", str(index), "--json"])["document_ids"] == before["document_ids"]

    write_pdf(corpus / "report.pdf", pages=3, text="Revenue restated")  # 2 pages -> 3
    assert main(["index", str(corpus / "report.pdf"), "--index", str(index)]) == 0
    assert "replaced older versions: 1 documents" in capsys.readouterr().out
    after = run_json(capsys, ["info", "--index", str(index), "--json"])
    assert (after["documents"], after["pages"]) == (3, 5)
    assert len(set(after["document_ids"]) - set(before["document_ids"])) == 1


def test_bad_inputs_stop_before_the_index_changes_unless_skipped(corpus, tmp_path, capsys):
    from test_ingest import bad_inputs

    index = tmp_path / "idx"
    assert main(["index", str(corpus / "energy.pdf"), "--index", str(index)]) == 0
    before = run_json(capsys, ["info", "--index", str(index), "--json"])
    bad = tmp_path / "bad"
    bad.mkdir()
    expected = bad_inputs(bad)
    for path, message in expected.items():
        assert main(["index", str(corpus), str(path), "--index", str(index)]) == 1
        err = capsys.readouterr().err
        assert path.name in err and message in err and err.count("\n") == 1
        assert run_json(capsys, ["info", "--index", str(index), "--json"]) == before

    assert main(["index", str(corpus), str(bad), "--index", str(index), "--skip-errors"]) == 0
    captured = capsys.readouterr()
    assert "indexed 2 documents" in captured.out and "unchanged (already indexed): 1" in captured.out
    assert f"skipped {len(expected)} unreadable files" in captured.err
    assert all(path.name in captured.err for path in expected)
    assert run_json(capsys, ["info", "--index", str(index), "--json"])["documents"] == 3


def test_an_index_refuses_another_model(corpus, tmp_path, capsys):
    index = tmp_path / "idx"
    assert main(["index", str(corpus / "energy.pdf"), "--index", str(index)]) == 0
    capsys.readouterr()
    code = main(["index", str(corpus), "--index", str(index), "--model", "tiny:colpali"])
    assert code == 1 and "was built with --model tiny:colqwen2" in capsys.readouterr().err
