"""What every subcommand shares: the default model, ``--verbose``, argument types checked at parse time.

Nothing here imports torch, transformers, an engine or a framework: ``--help`` and argument
errors answer before any of them load.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, ModelLoadError, SapRagError
from ..model_spec import is_local_path, same_model

DEFAULT_MODEL = "tiny:colqwen2"
"""The ``--model`` default of the subcommands that take one (index, calibrate, eval, serve): change it here only."""

TINY_NOTE = "note: a tiny random-weight model; results show that the plumbing works, not retrieval quality"
DOCUMENTS_HINT = "list document ids with 'sap-rag info --index DIR --documents'"
MAX_K = 10_000
MAX_DPI = 1200  # as sap_rag.ingest.pdf.MAX_DPI (not imported: that module pulls in PIL)


def help_formatter(prog: str) -> argparse.HelpFormatter:
    """Subcommand help: examples kept as written, option help from column 32."""
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


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


def read_manifest(path: Path):
    """The index's manifest; a missing index is answered with the command that makes one.

    Whether there is a manifest at all is checked before importing the index package (numpy,
    the engines' wrappers), so that a wrong ``--index`` is answered at once.
    """
    missing = f"no sap-rag index at {path}; make one with: sap-rag index FILES_OR_FOLDERS... --index {path}"
    if not os.path.lexists(path / "manifest.json"):  # sap_rag.index.manifest.MANIFEST_NAME
        raise SapRagError(missing)
    from ..index.errors import IndexNotFoundError
    from ..index.manifest import Manifest

    try:
        return Manifest.read(path)
    except IndexNotFoundError as exc:
        raise IndexNotFoundError(missing) from exc


def recorded_model(path: Path, manifest: Any, model: str | None = None) -> tuple[str, Any]:
    """``(spec, window)`` of the index's encoder; refuse a different ``model`` and a model folder that is gone.

    ``model`` may name the recorded folder by another path (relative, through a link): it is
    compared once resolved. A local folder is recorded by its absolute path, so the index opens
    from any working directory; when that folder has been moved or deleted, the error says how to
    put it back or to open the index with the model elsewhere (``search`` and ``info`` take no
    ``--model``: an index names its own).
    """
    recorded = manifest.encoder
    if recorded is None:
        raise InvalidInputError(f"the index at {path} has no encoder (it holds precomputed pages only)")
    spec = recorded["spec"]
    if model is not None and not same_model(model, spec):
        raise InvalidInputError(
            f"the index at {path} was built with --model {spec}, not {model}; "
            "leave --model out to use the index's model, or choose another --index"
        )
    if is_local_path(spec) and not os.path.isdir(os.path.expanduser(spec)):
        raise ModelLoadError(
            f"the index at {path} was built with the model in {spec}, which is not there any more; put the "
            "checkpoint folder back at that path (or a link to it there), or open the index in Python with the "
            f"model's new folder: SAPIndex.open({str(path)!r}, encoder=sap_rag.load_encoder('NEW_FOLDER'))"
        )
    return spec, recorded.get("window")


def per_page(bytes_per_page: float | None) -> str:
    """Bytes per page as both the index summary and ``info`` print it."""
    return f"{bytes_per_page:,.0f}" if bytes_per_page else "n/a"
