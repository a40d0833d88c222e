"""``sap-rag eval``: its parser and runner live in :mod:`sap_rag.cli.eval_cmd` (light to import); kept here
so ``from sap_rag.eval.cli import run`` and ``python -m sap_rag.eval`` keep working."""

from __future__ import annotations

from ..cli.eval_cmd import add_eval_parser, build_parser, eval_main, run

__all__ = ["add_eval_parser", "build_parser", "eval_main", "run"]
