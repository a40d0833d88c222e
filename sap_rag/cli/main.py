"""Entry point: one parser, a subcommand per module, errors as one clear line.

Parsing imports nothing heavy: ``sap-rag --help`` and argument errors answer at once, and each
command imports torch, transformers or an engine only once its arguments are known to be good.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from ..errors import SapRagError

__all__ = ["build_parser", "main"]

EPILOG = """examples:
  sap-rag index reports/ --index ./idx                  # tiny offline model by default
  sap-rag index reports/ --index ./idx --model vidore/colqwen2-v1.0
  sap-rag search "revenue in 2023" --index ./idx -k 5
  sap-rag info --index ./idx --documents
  sap-rag show --index ./idx --doc DOC_ID --page 1 --out overlay.png
  sap-rag calibrate --model vidore/colqwen2-v1.0 --pairs pairs.jsonl --out calib.json --plot sr.png
  sap-rag eval --dataset data/vidore_v2 --model vidore/colqwen2-v1.0 --pruners all --out out/eval
  sap-rag serve --index ./idx                           # HTTP API, web page and MCP on 127.0.0.1:8000
  sap-rag mcp --index ./idx                             # MCP tools over stdio, for desktop agents

Run 'sap-rag COMMAND --help' for each command's options and examples."""


def _registrars() -> list[Callable[[argparse._SubParsersAction], None]]:
    from . import calibrate_cmd, eval_cmd, index_cmds, inspect_cmds, mcp_cmd, scale_cmds, serve_cmd

    return [
        index_cmds.register,
        inspect_cmds.register,
        calibrate_cmd.register,
        eval_cmd.add_eval_parser,
        scale_cmds.register,
        serve_cmd.register,
        mcp_cmd.register,
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sap-rag",
        description="Visual-document retrieval with Structural Anchor Pruning (SAP).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="log progress details; show tracebacks (before or after COMMAND)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for register in _registrars():
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 error, 2 usage, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:
        # transformers and colpali-engine are chatty at import and load time.
        for noisy in ("transformers", "colpali_engine"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (SapRagError, OSError) as exc:
        if args.verbose:
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    """The error as one line of printable text (an OSError with its file name, no lone surrogates)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
