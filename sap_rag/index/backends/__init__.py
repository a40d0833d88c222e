"""Vector engines behind the index: Qdrant Edge (embedded) and a Qdrant server (qdrant-client)."""

from .base import ANCHORS, SUMMARY, Backend, PagePoint, QuerySpec, ScoredPoint

__all__ = ["ANCHORS", "SUMMARY", "Backend", "PagePoint", "QuerySpec", "ScoredPoint"]
