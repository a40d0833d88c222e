"""The command line answers at once: parsing and argument errors import no model stack.

Each check runs in a fresh interpreter where torch, transformers, colpali_engine and the engines
cannot be imported at all: a command that reached for one would fail instead of answering.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from sap_rag.cli._common import DEFAULT_MODEL
from sap_rag.cli.eval_cmd import PRUNER_NAMES
from sap_rag.cli.main import build_parser

HEAVY = ("torch", "transformers", "colpali_engine", "qdrant_edge", "qdrant_client", "torchvision")

_RUNNER = textwrap.dedent(
    """
    import contextlib, io, json, sys
    for name in HEAVY:
        sys.modules[name] = None  # importing it now raises ImportError
    from sap_rag.cli import main
    out = []
    for argv in json.loads(sys.argv[1]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code
        out.append([code, err.getvalue()])
    print(json.dumps(out))
    """
)


def run_without_model_stack(cases: list[list[str]], cwd) -> list[tuple[int, str]]:
    script = f"HEAVY = {HEAVY!r}\n{_RUNNER}"
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(cases)], capture_output=True, text=True, cwd=cwd, check=True
    )
    return [tuple(row) for row in json.loads(done.stdout)]


def test_importing_and_parsing_pull_in_no_model_stack():
    code = (
        "import sys; from sap_rag.cli.main import build_parser; "
        "build_parser().parse_args(['search', 'q', '--index', 'x']); "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_mistakes_are_refused_before_any_model_loads(tmp_path):
    from test_ingest import write_pdf

    only_text = tmp_path / "notes"
    only_text.mkdir()
    (only_text / "a.txt").write_text("text")
    (only_text / "b.docx").write_bytes(b"PK")
    write_pdf(tmp_path / "a.pdf", pages=1)
    missing = str(tmp_path / "no-index")
    cases = {
        "help": (["--help"], 0, ""),
        "k zero": (["search", "q", "--index", missing, "-k", "0"], 2, "-k takes a whole number from 1"),
        "k negative": (["search", "q", "--index", missing, "-k", "-2"], 2, "-k takes"),
        "empty query": (["search", "  ", "--index", missing], 2, "the query is empty"),
        "bad filter": (["search", "q", "--index", missing, "--filter", "nokey"], 1, "--filter takes KEY=VALUE"),
        "missing index": (
            ["search", "q", "--index", missing],
            1,
            f"sap-rag index FILES_OR_FOLDERS... --index {missing}",
        ),
        "info missing": (["info", "--index", missing], 1, "make one with: sap-rag index"),
        "dpi zero": (["index", "a.pdf", "--index", missing, "--dpi", "0"], 2, "--dpi takes a resolution from 1"),
        "dpi negative": (["index", "a.pdf", "--index", missing, "--dpi", "-72"], 2, "--dpi takes"),
        "batch zero": (["index", "a.pdf", "--index", missing, "--batch-size", "0"], 2, "--batch-size takes"),
        "batch negative": (["index", "a.pdf", "--index", missing, "--batch-size", "-3"], 2, "--batch-size takes"),
        "keep ratio": (["index", "a.pdf", "--index", missing, "--keep-ratio", "0"], 2, "--keep-ratio takes"),
        "show page 0": (["show", "--index", missing, "--doc", "d", "--page", "0", "--out", "o.png"], 2, "--page"),
        "nothing indexable": (["index", str(only_text), "--index", missing], 1, "supported types are .pdf, .png"),
        "no such path": (["index", "nope.pdf", "--index", missing], 1, "nope.pdf: no such file or folder"),
    }
    results = run_without_model_stack([argv for argv, _, _ in cases.values()], cwd=tmp_path)
    for (name, (_argv, code, message)), (got_code, err) in zip(cases.items(), results):
        assert got_code == code, (name, got_code, err)
        assert message in err, (name, err)
        if code == 1:
            assert err.startswith("error: ") and err.count("\n") == 1, (name, err)
    assert not (tmp_path / "no-index").exists()  # nothing was created by a refused command


def test_verbose_works_before_or_after_the_command():
    parser = build_parser()
    for argv in (["-v", "info", "--index", "x"], ["info", "--index", "x", "-v"], ["info", "-v", "--index", "x"]):
        assert parser.parse_args(argv).verbose is True
    assert parser.parse_args(["info", "--index", "x"]).verbose is False
    assert parser.parse_args(["-v", "eval", "--dataset", "d"]).verbose is True
    assert parser.parse_args(["eval", "--dataset", "d", "--verbose"]).verbose is True
    assert parser.parse_args(["eval", "--dataset", "d"]).verbose is False
    assert parser.parse_args(["--verbose", "search", "q", "--index", "x"]).verbose is True


def test_every_command_has_the_same_model_default():
    parser = build_parser()
    assert parser.parse_args(["eval", "--dataset", "d"]).model == DEFAULT_MODEL
    assert parser.parse_args(["calibrate", "--pairs", "p", "--out", "o"]).model == DEFAULT_MODEL
    # index leaves --model unset so an existing index keeps its own; a new one uses the default
    assert parser.parse_args(["index", "f", "--index", "x"]).model is None


def test_the_listed_pruner_names_are_the_registry():
    from sap_rag.pruning.registry import PRUNERS

    assert list(PRUNER_NAMES) == list(PRUNERS)


@pytest.mark.parametrize("command", ["delete", "show"])
def test_help_names_the_command_that_lists_document_ids(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    out = capsys.readouterr().out
    assert "sap-rag info --index" in out and "--documents" in out
