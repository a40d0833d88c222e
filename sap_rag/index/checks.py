"""Argument checks for ``SAPIndex``: counts, doc ids, queries, metadata (keys, text, integers, depth),
and compatibility checks (encoder, pruner)."""

from __future__ import annotations

import logging
import math
import reprlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidInputError
from .errors import EncoderMismatchError
from .manifest import Manifest

if TYPE_CHECKING:
    from ..encoders.encoder import PageEncoder
    from ..pruning.base import Pruner

logger = logging.getLogger(__name__)

__all__ = [
    "ENCODER_FIELDS",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_METADATA_DEPTH",
    "MAX_SEARCH_DEPTH",
    "check_doc_id",
    "check_encoder",
    "check_int64",
    "check_key",
    "check_pruner",
    "check_queries",
    "check_sequence",
    "check_text",
    "plain_scalar",
    "positive_int",
    "resolve_dim",
    "resolve_pruner",
    "short_repr",
    "validate_metadata",
]

ENCODER_FIELDS = ("family", "model_type", "dim", "num_layers", "window")
"""What must match between an index's recorded encoder and the encoder it is opened with."""


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""Qdrant stores and matches integers as signed 64-bit (Qdrant Edge turns bigger ones into floats)."""

MAX_METADATA_DEPTH = 32
"""Levels of nested dicts/lists in metadata. The engine's JSON decoder stops at 128 levels for the
whole payload, and a deeper payload written to Qdrant Edge makes every later filtered read fail."""

_PATH_CHARS = (".", "[", "]", '"', "\\")

MAX_SEARCH_DEPTH = 1_000_000
"""Upper bound on ``k``, ``prefetch`` and ``coarse``: far above any useful result list, far below
what the engines take (Qdrant Edge raises on a limit of 2**64; a server would try to serve it)."""

_BOUNDS = {"k": MAX_SEARCH_DEPTH, "prefetch": MAX_SEARCH_DEPTH, "coarse": MAX_SEARCH_DEPTH}
"""Upper bounds of the count arguments that go to the engine as result limits, by argument name."""


def check_doc_id(doc_id: Any) -> str:
    """``doc_id`` if it is a non-empty string of valid Unicode (it is stored in the payload)."""
    if not isinstance(doc_id, str) or not doc_id.strip():
        raise InvalidInputError(f"doc_id must be a non-empty string, got {doc_id!r}")
    return check_text(doc_id, "doc_id")


def check_queries(queries: list[Any]) -> list[Any]:
    """The queries with ``bytes`` decoded as UTF-8 text, or a clear error.

    Bytes are taken as text (strict UTF-8): bytes that are not UTF-8 are refused (an image given
    as bytes too; open it with PIL). A string must be valid Unicode (no lone surrogate). Other
    items (arrays, tensors, images) pass through unchanged, to be checked where they are encoded.
    """
    out = []
    for i, query in enumerate(queries):
        if isinstance(query, (bytes, bytearray, memoryview)):
            raw = bytes(query)
            try:
                query = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInputError(
                    f"query #{i} is bytes that are not UTF-8 text (byte {raw[exc.start]:#04x} at position "
                    f"{exc.start}); pass a str, decoded with its real encoding (e.g. raw.decode('latin-1')), "
                    "or a PIL image for an image query"
                ) from None
        if isinstance(query, str):
            check_text(query, f"query #{i}")
        out.append(query)
    return out


def check_sequence(items: Any, what: str) -> list[Any]:
    """``items`` as a non-empty list, or a clear error (a lone tensor, string or bytes is refused)."""
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        import torch

        lone = isinstance(items, (torch.Tensor, np.ndarray, str, bytes))
        hint = " (wrap a single item in a list)" if lone else ""
        raise InvalidInputError(f"{what} must be a list, got {type(items).__name__}{hint}")
    if len(items) == 0:
        raise InvalidInputError(f"{what} is empty; give at least one")
    return list(items)


def positive_int(value: Any, name: str, maximum: int | None = None) -> int:
    """``value`` as an int in ``1 .. maximum``; the default maximum is :data:`MAX_SEARCH_DEPTH` for
    ``k``, ``prefetch`` and ``coarse``, and the int64 limit for any other count.

    >>> positive_int(3, "k")
    3
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    limit = _BOUNDS.get(name, INT64_MAX) if maximum is None else maximum
    if value > limit:
        raise InvalidInputError(f"{name} must be at most {limit}, got {value}")
    return int(value)


def resolve_dim(encoder: PageEncoder | None, dim: int | None) -> int:
    """The index's embedding dim: the encoder's, or ``dim`` for an encoder-less index."""
    if encoder is None and dim is None:
        raise InvalidInputError("give an encoder, or the embedding dim of the pages you will add (dim=128)")
    if encoder is not None and not hasattr(encoder, "describe"):
        raise InvalidInputError(
            f"encoder must be a PageEncoder (from sap_rag.load_encoder), got {type(encoder).__name__}"
        )
    if encoder is not None and dim is not None and int(dim) != encoder.dim:
        raise InvalidInputError(f"dim={dim} but the encoder produces dim {encoder.dim}; leave dim out")
    return positive_int(encoder.dim if encoder is not None else dim, "dim")


def resolve_pruner(pruner: Pruner | None, keep_ratio: float | None) -> Pruner:
    """``pruner``, or ``SAPPruner(keep_ratio)`` (default 0.1)."""
    from ..pruning.base import Pruner
    from ..pruning.sap import SAPPruner

    if pruner is None:
        return SAPPruner(0.1 if keep_ratio is None else keep_ratio)
    if not isinstance(pruner, Pruner):
        raise InvalidInputError(f"pruner must be a sap_rag Pruner, got {type(pruner).__name__}")
    if keep_ratio is not None and float(keep_ratio) != pruner.keep_ratio:
        raise InvalidInputError(
            f"keep_ratio={keep_ratio} but the pruner keeps {pruner.keep_ratio}; give one or the other"
        )
    return pruner


def check_encoder(manifest: Manifest, encoder: PageEncoder | None) -> None:
    """Raise :class:`EncoderMismatchError` if ``encoder`` is not the one the index was built with."""
    if encoder is None:
        return
    actual = encoder.describe()
    expected = manifest.encoder
    if expected is None:
        if actual.get("dim") != manifest.dim:
            raise EncoderMismatchError(
                f"this index stores dim {manifest.dim} vectors but the encoder produces dim {actual.get('dim')}"
            )
        logger.warning("the index records no encoder; using %s without checking its identity", actual.get("spec"))
        return
    diffs = [
        f"{key}: index has {expected.get(key)!r}, encoder has {actual.get(key)!r}"
        for key in ENCODER_FIELDS
        if _as_list(expected.get(key)) != _as_list(actual.get(key))
    ]
    if diffs:
        raise EncoderMismatchError(
            "the encoder does not match the one this index was built with ("
            + "; ".join(diffs)
            + f"). Open it with that encoder: load_encoder({expected.get('spec')!r}, window={expected.get('window')}), "
            "or leave encoder= out to load it automatically"
        )
    if expected.get("spec") != actual.get("spec"):
        logger.warning(
            "the index was built with %r and is opened with %r (same architecture and window); "
            "make sure they are the same checkpoint",
            expected.get("spec"),
            actual.get("spec"),
        )


def check_pruner(manifest: Manifest, pruner: Pruner | None) -> Pruner | None:
    """The pruner for new pages: ``pruner`` if it matches the recorded one, else the recorded SAP
    pruner rebuilt from its config, else None (a non-SAP pruner must be passed again)."""
    from ..pruning.sap import SAPPruner

    recorded = manifest.pruner
    if pruner is not None:
        if pruner.config() != recorded:
            raise InvalidInputError(
                f"the pruner {pruner.config()} differs from the one this index was built with ({recorded})"
            )
        return pruner
    if recorded.get("name") == SAPPruner.name:
        return SAPPruner(recorded["keep_ratio"], window=recorded.get("window"), heads=recorded.get("heads", "mean"))
    return None


def _as_list(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


# --- text, keys, JSON metadata (shared by filters, doc ids and queries) ---------------------------


class _BoundedRepr(reprlib.Repr):
    """``reprlib`` limits with ints of any size: ``repr()`` refuses ints of more than 4300 digits."""

    def repr_int(self, x: int, level: int) -> str:
        return f"<an integer of {x.bit_length()} bits>" if x.bit_length() > 256 else super().repr_int(x, level)


_SHORT_REPR = _BoundedRepr()
_SHORT_REPR.maxlevel = 3  # a value nested thousands deep is shown as [[[...]]], never recursed into
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = 200


def short_repr(x: Any, limit: int = 60) -> str:
    """``repr(x)``, cut to ``limit`` characters; containers are shown at most three levels deep, so
    a crafted value nested thousands deep costs no recursion.

    >>> v = [1]
    >>> for _ in range(10_000): v = [v]
    >>> short_repr(v)
    '[[[[...]]]]'
    """
    text = repr(x) if isinstance(x, (str, float, bool, type(None))) else _SHORT_REPR.repr(x)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def check_text(s: str, what: str) -> str:
    """``s`` if it is valid Unicode (no lone surrogate), else an error naming ``what``."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{what} {short_repr(s)} holds a lone surrogate {s[exc.start]!r} at position {exc.start}, which is not "
            "valid Unicode and cannot be stored (often a file name decoded with 'surrogateescape'); repair it, "
            "e.g. text.encode('utf-8', 'replace').decode()"
        ) from None
    return s


def check_key(key: Any, what: str) -> str:
    """A metadata or filter key that can be filtered on (the rules: :mod:`sap_rag.index.filters`), or an error."""
    if not isinstance(key, str) or not key:
        raise InvalidInputError(f"{what} keys must be non-empty strings, got {short_repr(key)}")
    check_text(key, f"{what} key")
    if key.startswith("$"):
        raise InvalidInputError(
            f"{what} key {short_repr(key)} may not start with '$' (filter operators such as '$and' and '$gt' do); "
            f"rename it, e.g. {key.lstrip('$') or 'key'!r}"
        )
    if any(ch in key for ch in _PATH_CHARS):
        fixed = "".join("_" if ch in _PATH_CHARS else ch for ch in key)
        raise InvalidInputError(
            f"{what} key {short_repr(key)} may not contain '.', '[', ']', '\"' or '\\' (they are path syntax in "
            f"filters); rename it, e.g. {fixed!r}"
        )
    return key


def plain_scalar(value: Any) -> Any:
    """numpy scalars as the Python values they hold."""
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def check_int64(value: int, where: str) -> int:
    """``value`` if it fits Qdrant's signed 64-bit integers, else an error naming ``where``."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidInputError(
            f"{where}: {short_repr(value)} is outside the 64-bit integer range Qdrant stores (-2**63 .. 2**63-1); "
            "store and filter such numbers as strings"
        )
    return value


def _json_copy(value: Any, where: str, depth: int) -> Any:
    value = plain_scalar(value)
    if value is None or isinstance(value, (bool, str)):
        return value if not isinstance(value, str) else check_text(value, f"{where}: the string")
    if isinstance(value, int):
        return check_int64(value, where)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(f"metadata values must be JSON data: {where} is {value}, which JSON cannot hold")
        return value
    if isinstance(value, (Mapping, list, tuple)):
        if depth >= MAX_METADATA_DEPTH:
            raise InvalidInputError(
                f"metadata is nested more than {MAX_METADATA_DEPTH} levels deep (dicts and lists) at "
                f"{where if len(where) <= 120 else where[:117] + '...'}; flatten it, e.g. store the deep part "
                "as a JSON string"
            )
        if isinstance(value, Mapping):
            return {check_key(k, where): _json_copy(v, f"{where}[{k!r}]", depth + 1) for k, v in value.items()}
        return [_json_copy(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    raise InvalidInputError(
        f"metadata values must be JSON data (str, numbers, bools, None, lists, dicts): {where} is a "
        f"{type(value).__name__}"
    )


def validate_metadata(metadata: Any) -> dict[str, Any]:
    """A plain JSON copy of document metadata whose every key can be filtered on, or an error.

    Checked at add time, so nothing unfilterable or unstorable reaches the index: keys (at every
    depth) follow :func:`check_key`; values are JSON (str without lone surrogates, 64-bit ints,
    finite floats, bools, None, lists, dicts) nested at most :data:`MAX_METADATA_DEPTH` deep.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidInputError(f"metadata must be a dict, got {type(metadata).__name__}")
    return _json_copy(metadata, "metadata", 0)
