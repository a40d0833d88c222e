"""The document registry: which documents are committed, and a journal of unfinished writes.

The vector engine has no transactions, so the registry (a SQLite database, ``registry.sqlite``)
is the source of truth. Every page point carries its document's *generation* ``gen``, a number
never reused, and its point id is derived from it (:func:`point_ids`). A write goes:

1. ``begin`` records ``(gen, doc_id, pages)`` in the journal as ``writing`` (committed to disk).
2. the points are written to the engine and flushed.
3. ``commit`` atomically makes ``gen`` the document's committed generation, and moves the
   generation it replaces (if any) to the journal as ``stale``.
4. the stale points are deleted and flushed, then ``forget`` clears the journal entry.

A crash at any point leaves journal entries; recovery deletes the points of every journaled
generation and clears the journal, so the engine again holds exactly the committed documents.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError
from .errors import IndexFormatError

__all__ = ["MAX_PAGES_PER_DOCUMENT", "DocumentRecord", "JournalEntry", "Registry", "point_ids"]

REGISTRY_NAME = "registry.sqlite"
_PAGE_BITS = 20
MAX_PAGES_PER_DOCUMENT = (1 << _PAGE_BITS) - 1
_SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,
    gen INTEGER NOT NULL UNIQUE,
    num_pages INTEGER NOT NULL,
    num_vectors INTEGER NOT NULL,
    images TEXT NOT NULL,
    metadata TEXT NOT NULL,
    added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    gen INTEGER PRIMARY KEY,
    doc_id TEXT NOT NULL,
    num_pages INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('writing', 'stale'))
);
CREATE TABLE IF NOT EXISTS image_refs (name TEXT NOT NULL, doc_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS image_refs_name ON image_refs(name);
CREATE INDEX IF NOT EXISTS image_refs_doc ON image_refs(doc_id);
CREATE INDEX IF NOT EXISTS documents_source ON documents(json_extract(metadata, '$.source'));
"""


_BY_SOURCE = "SELECT doc_id FROM documents WHERE json_extract(metadata, '$.source') = ? ORDER BY doc_id"


def point_ids(gen: int, num_pages: int) -> list[int]:
    """Engine point ids of a generation's pages: ``gen * 2**20 + page_index``.

    >>> point_ids(3, 2)
    [3145728, 3145729]
    """
    base = gen << _PAGE_BITS
    return [base + i for i in range(num_pages)]


@dataclass(frozen=True)
class DocumentRecord:
    """A committed document.

    Attributes:
        doc_id: the caller's document id.
        gen: its generation (point ids derive from it).
        num_pages: pages stored.
        num_vectors: anchor vectors stored over all its pages.
        images: per page, the stored image's name in the image store, or None.
        metadata: the document's metadata as given.
        added_at: UNIX time of the commit.
    """

    doc_id: str
    gen: int
    num_pages: int
    num_vectors: int
    images: list[str | None] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    added_at: float = 0.0


@dataclass(frozen=True)
class JournalEntry:
    """An unfinished write: points of ``gen`` that must be deleted if the writer stopped."""

    gen: int
    doc_id: str
    num_pages: int
    state: str


class Registry:
    """The SQLite registry of an index directory (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            version = self._meta("schema_version")
            if version is None:
                with self._transaction():
                    self._set_meta("schema_version", str(_SCHEMA_VERSION))
                    self._set_meta("next_gen", "1")
            elif int(version) > _SCHEMA_VERSION:
                raise IndexFormatError(
                    f"{self.path} was written by a newer sap-rag (registry schema {version}); upgrade sap-rag"
                )
        except sqlite3.DatabaseError as exc:
            raise IndexFormatError(f"{self.path} is not a readable registry ({exc}); the index is damaged") from exc

    # --- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def close(self) -> None:
        self._db.close()

    # --- reads ------------------------------------------------------------------------------

    def get(self, doc_id: str) -> DocumentRecord | None:
        row = self._db.execute(
            "SELECT doc_id, gen, num_pages, num_vectors, images, metadata, added_at FROM documents WHERE doc_id = ?",
            (doc_id,),
        ).fetchone()
        return None if row is None else _record(row)

    def documents(self) -> list[DocumentRecord]:
        rows = self._db.execute(
            "SELECT doc_id, gen, num_pages, num_vectors, images, metadata, added_at FROM documents ORDER BY doc_id"
        ).fetchall()
        return [_record(row) for row in rows]

    def doc_ids(self, source: str | None = None) -> list[str]:
        """Committed document ids, sorted; with ``source``, those whose metadata ``source`` is it
        (an index lookup, so re-adding files stays fast in an index of many documents)."""
        if source is None:
            return [row[0] for row in self._db.execute("SELECT doc_id FROM documents ORDER BY doc_id")]
        rows = self._db.execute(_BY_SOURCE, (source,))
        return [row[0] for row in rows]

    def totals(self) -> tuple[int, int, int]:
        """``(documents, pages, vectors)`` committed."""
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(num_pages), 0), COALESCE(SUM(num_vectors), 0) FROM documents"
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def journal(self) -> list[JournalEntry]:
        rows = self._db.execute("SELECT gen, doc_id, num_pages, state FROM journal ORDER BY gen").fetchall()
        return [JournalEntry(*row) for row in rows]

    def referenced_images(self) -> set[str]:
        """Names of every image a committed document refers to."""
        return {row[0] for row in self._db.execute("SELECT DISTINCT name FROM image_refs")}

    def unreferenced(self, names: list[str | None]) -> list[str]:
        """Those of ``names`` that no committed document refers to any more."""
        out = []
        for name in dict.fromkeys(n for n in names if n):
            if self._db.execute("SELECT 1 FROM image_refs WHERE name = ? LIMIT 1", (name,)).fetchone() is None:
                out.append(name)
        return out

    # --- writes -----------------------------------------------------------------------------

    def begin(self, doc_id: str, num_pages: int) -> int:
        """Journal a new write of ``num_pages`` pages of ``doc_id``; return its generation."""
        if num_pages > MAX_PAGES_PER_DOCUMENT:
            raise InvalidInputError(
                f"a document holds at most {MAX_PAGES_PER_DOCUMENT} pages, got {num_pages}; split it"
            )
        with self._transaction() as db:
            gen = int(self._meta("next_gen") or 1)
            self._set_meta("next_gen", str(gen + 1))
            db.execute(
                "INSERT INTO journal(gen, doc_id, num_pages, state) VALUES (?, ?, ?, 'writing')",
                (gen, doc_id, num_pages),
            )
        return gen

    def commit(self, record: DocumentRecord) -> DocumentRecord | None:
        """Make ``record`` the committed version of its document, atomically.

        Returns the record it replaced (now journaled as ``stale``), or None.
        """
        with self._transaction() as db:
            old = self.get(record.doc_id)
            if old is not None:
                db.execute("DELETE FROM documents WHERE doc_id = ?", (record.doc_id,))
                db.execute("DELETE FROM image_refs WHERE doc_id = ?", (record.doc_id,))
                db.execute(
                    "INSERT INTO journal(gen, doc_id, num_pages, state) VALUES (?, ?, ?, 'stale')",
                    (old.gen, old.doc_id, old.num_pages),
                )
            db.execute(
                "INSERT INTO documents(doc_id, gen, num_pages, num_vectors, images, metadata, added_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.doc_id,
                    record.gen,
                    record.num_pages,
                    record.num_vectors,
                    json.dumps(record.images),
                    json.dumps(record.metadata, sort_keys=True),
                    record.added_at or time.time(),
                ),
            )
            db.executemany(
                "INSERT INTO image_refs(name, doc_id) VALUES (?, ?)",
                [(name, record.doc_id) for name in dict.fromkeys(n for n in record.images if n)],
            )
            db.execute("DELETE FROM journal WHERE gen = ?", (record.gen,))
        return old

    def remove(self, doc_id: str) -> DocumentRecord | None:
        """Uncommit ``doc_id`` (its points become ``stale`` in the journal); return its record or None."""
        with self._transaction() as db:
            old = self.get(doc_id)
            if old is None:
                return None
            db.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
            db.execute("DELETE FROM image_refs WHERE doc_id = ?", (doc_id,))
            db.execute(
                "INSERT INTO journal(gen, doc_id, num_pages, state) VALUES (?, ?, ?, 'stale')",
                (old.gen, old.doc_id, old.num_pages),
            )
        return old

    def forget(self, gens: list[int]) -> None:
        """Clear journal entries whose points are gone from the engine."""
        if not gens:
            return
        with self._transaction() as db:
            db.executemany("DELETE FROM journal WHERE gen = ?", [(g,) for g in gens])


def _record(row: tuple) -> DocumentRecord:
    doc_id, gen, num_pages, num_vectors, images, metadata, added_at = row
    return DocumentRecord(
        doc_id=doc_id,
        gen=int(gen),
        num_pages=int(num_pages),
        num_vectors=int(num_vectors),
        images=json.loads(images),
        metadata=json.loads(metadata),
        added_at=float(added_at),
    )
