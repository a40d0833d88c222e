"""Progress bars for long work (tqdm when installed and enabled; otherwise a no-op)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["progress"]


class _NullBar:
    def update(self, n: int = 1) -> None:
        """Do nothing."""

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        """Do nothing."""


@contextmanager
def progress(*, total: int | None, desc: str, unit: str = "it", enabled: bool = True) -> Iterator[Any]:
    """A tqdm bar with ``total`` steps, or an object with the same ``update`` method when disabled."""
    if not enabled:
        yield _NullBar()
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True) as bar:
        yield bar
