"""What a model spec names, without importing torch: the command line compares and checks specs
before any model loads.

A spec is a hub id (``"vidore/colqwen2-v1.0"``), a local checkpoint folder, or ``"tiny:<family>"``.
An index records a local folder as its absolute, resolved path, so it opens from any working
directory; hub ids and ``tiny:`` specs are recorded as they are.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["TINY_PREFIX", "is_local_path", "resolve_spec", "same_model"]

TINY_PREFIX = "tiny:"


def resolve_spec(spec: str | os.PathLike) -> str:
    """``spec`` as an index records it: a local checkpoint folder as its absolute, resolved path.

    A relative folder is resolved against the working directory (where a model is loaded, as
    ``load_encoder`` reads it); anything that is not a folder here (a hub id, a ``tiny:`` spec, a
    missing path) is returned as it is.

    >>> resolve_spec("tiny:colqwen2"), resolve_spec("vidore/colqwen2-v1.0")
    ('tiny:colqwen2', 'vidore/colqwen2-v1.0')
    """
    text = os.fspath(spec)
    if text.startswith(TINY_PREFIX):
        return text
    folder = Path(text).expanduser()
    return str(folder.resolve()) if folder.is_dir() else text


def same_model(a: str, b: str) -> bool:
    """Whether two specs name the same model: equal once local folders are resolved.

    >>> same_model("tiny:colqwen2", "tiny:colqwen2"), same_model("tiny:colqwen2", "tiny:colpali")
    (True, False)
    """
    return a == b or resolve_spec(a) == resolve_spec(b)


def is_local_path(spec: str) -> bool:
    """Whether ``spec`` can only be a local path: absolute, ``~``, ``./`` or ``../``, or a Windows path.

    A hub id (``owner/name``) is never one; a relative ``folder/name`` is ambiguous and is not one.

    >>> is_local_path("/models/toy"), is_local_path("vidore/colqwen2-v1.0"), is_local_path("tiny:colqwen2")
    (True, False, False)
    """
    if spec.startswith(TINY_PREFIX):
        return False
    return os.path.isabs(spec) or spec.startswith(("~", "./", "../", ".\\", "..\\")) or "\\" in spec
