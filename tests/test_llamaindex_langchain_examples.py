"""The framework examples run offline, and importing the core leaves both frameworks unloaded."""

from __future__ import annotations

import os
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


def _run(args: list[str], tmp_path: Path) -> str:
    result = subprocess.run(
        [sys.executable, *args], cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_importing_the_core_loads_no_framework(tmp_path):
    code = (
        "import sys, sap_rag, sap_rag.index, sap_rag.ingest\n"
        "sap_rag.load_encoder, sap_rag.SAPPruner, sap_rag.maxsim\n"
        "frameworks = ('llama_index', 'langchain_core', 'langchain')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in frameworks}))\n"
    )
    assert _run(["-c", code], tmp_path).strip() == "[]"


@pytest.mark.parametrize(
    ("example", "framework"),
    [("llamaindex_query_engine.py", "llama_index.core"), ("langchain_chain.py", "langchain_core")],
)
def test_example_runs_offline(tmp_path, example, framework):
    pytest.importorskip(framework)
    out = _run([str(ROOT / "examples" / example), "--index-dir", str(tmp_path / "index")], tmp_path)
    assert "indexed" in out and "retrieved:" in out
    assert "received 2 page images" in out
    assert (tmp_path / "index").is_dir()
