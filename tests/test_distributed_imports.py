"""The core never imports Ray (nor pyarrow): only running a distributed job or a transfer does."""

from __future__ import annotations

import subprocess
import sys


def test_importing_sap_rag_and_its_scale_modules_pulls_in_neither_ray_nor_pyarrow():
    code = (
        "import sys, sap_rag, sap_rag.distributed, sap_rag.transfer, sap_rag.cli.scale_cmds\n"
        "from sap_rag import SAPIndex\n"
        "print(sorted(m for m in ('ray', 'ray.data', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
