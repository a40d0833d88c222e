"""What every subcommand shares: the default model, ``--verbose``, argument types checked at parse time.

Nothing here imports torch, transformers, an engine or a framework: ``--help`` and argument
errors answer before any of them load.
"""

from __future__ import annotations

import argparse
import math

DEFAULT_MODEL = "tiny:colqwen2"
"""The ``--model`` default of every subcommand (index, calibrate, eval): change it here only."""

TINY_NOTE = "note: a tiny random-weight model; results show that the plumbing works, not retrieval quality"
MAX_K = 10_000
MAX_DPI = 1200  # as sap_rag.ingest.pdf.MAX_DPI (not imported: that module pulls in PIL)


def verbose_parent() -> argparse.ArgumentParser:
    """A parent parser giving a subcommand ``-v/--verbose`` that does not reset the top-level one."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log details; show tracebacks"
    )
    return parent


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} takes a whole number, got {text!r}") from None


def positive_int(what: str, maximum: int | None = None):
    """An argparse type: a whole number from 1 (to ``maximum``), named ``what`` in its error."""

    def parse(text: str) -> int:
        value = _int(text, what)
        if value < 1 or (maximum is not None and value > maximum):
            upper = f" to {maximum:,}" if maximum is not None else " or more"
            raise argparse.ArgumentTypeError(f"{what} takes a whole number from 1{upper}, got {text}")
        return value

    return parse


def dpi(text: str) -> int:
    """``--dpi``: a resolution from 1 to MAX_DPI."""
    value = _int(text, "--dpi")
    if not 1 <= value <= MAX_DPI:
        raise argparse.ArgumentTypeError(f"--dpi takes a resolution from 1 to {MAX_DPI}, got {text} (default 144)")
    return value


def ratio(what: str):
    """An argparse type: a number in (0, 1]."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not 0 < value <= 1:
            raise argparse.ArgumentTypeError(f"{what} takes a number above 0 and at most 1, got {text!r}")
        return value

    return parse


def query(text: str) -> str:
    """A search query: some text that is not only spaces."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the query is empty; give some words to search for")
    return text
