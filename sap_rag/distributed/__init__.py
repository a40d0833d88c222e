"""Distributed indexing on Ray Data (optional extra ``sap-rag[ray]``).

Importing this package does not import Ray; :func:`index_with_ray` does, when it runs.

>>> from sap_rag.distributed import RayOptions, index_with_ray  # doctest: +SKIP
>>> options = RayOptions(address="auto", workers=8, gpus_per_worker=1)  # doctest: +SKIP
>>> report = index_with_ray(index, ["reports/"], ray=options)  # doctest: +SKIP
"""

from __future__ import annotations

from .pipeline import RayOptions, index_with_ray

__all__ = ["RayOptions", "index_with_ray"]
