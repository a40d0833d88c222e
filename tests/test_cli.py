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
