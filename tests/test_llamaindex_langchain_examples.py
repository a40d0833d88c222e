"""The framework examples run offline with the toy model and put the answering page first, quietly;
importing the core leaves both frameworks unloaded."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _env(tmp_path: Path) -> dict[str, str]:
    """The code under test first on the path (also when the packages are not installed); temp files in tmp_path."""
    paths = [ROOT, ROOT / "integrations" / "llamaindex", ROOT / "integrations" / "langchain"]
    extra = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([*map(str, paths), *([extra] if extra else [])]),
        "TMPDIR": str(tmp_path),
    }


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *args], cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_importing_the_core_loads_no_framework(tmp_path):
    code = (
        "import sys, sap_rag, sap_rag.index, sap_rag.ingest\n"
        "sap_rag.load_encoder, sap_rag.SAPPruner, sap_rag.maxsim\n"
        "frameworks = ('llama_index', 'langchain_core', 'langchain')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in frameworks}))\n"
    )
    assert _run(["-c", code], tmp_path).stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("example", "framework"),
    [("llamaindex_query_engine.py", "llama_index.core"), ("langchain_chain.py", "langchain_core")],
)
def test_example_runs_offline_and_retrieves_the_answering_page_first(tmp_path, example, framework):
    pytest.importorskip(framework)
    done = _run([str(ROOT / "examples" / example), "--index-dir", str(tmp_path / "index")], tmp_path)
    out = done.stdout
    assert "indexed" in out and "received 2 page images" in out
    retrieved = [line for line in out.splitlines() if line.startswith("retrieved:")]
    assert len(retrieved) == 2
    # The default question asks for Acme Industries' revenue: page 1 of its report answers it.
    assert re.search(r"acme_industries_2023\.pdf page 1\b", retrieved[0]), out
    assert "Acme Industries: revenue" in retrieved[0]  # the page's own text, as the LLM sees it
    assert (tmp_path / "index").is_dir()
    # Nothing on stderr by default: no weight-loading bar, no transformers or llama-index warnings.
    assert done.stderr == ""
