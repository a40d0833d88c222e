"""Accept an index object or the path of one, as the framework adapters do."""

from __future__ import annotations

import os
from typing import Any

from ..errors import InvalidInputError

__all__ = ["as_index"]


def as_index(index: Any, *, hint: str = "", **open_kwargs: Any) -> Any:
    """``index`` itself when it is an index object; ``SAPIndex.open(index, **open_kwargs)`` for a path.

    Args:
        index: a ``SAPIndex`` (anything with a ``search`` method) or a path.
        hint: appended to the error, e.g. a framework's own way to create an index.

    Raises:
        sap_rag.index.IndexNotFoundError: no index at that path.
        InvalidInputError: ``index`` is neither an index nor a path.
    """
    if isinstance(index, (str, os.PathLike)):
        from .index import SAPIndex

        return SAPIndex.open(index, **open_kwargs)
    if index is None or not callable(getattr(index, "search", None)):
        raise InvalidInputError(
            f"index must be a sap_rag SAPIndex or the path of one, got {type(index).__name__}; "
            f"create one with SAPIndex.create(path, encoder=...){hint}"
        )
    return index
