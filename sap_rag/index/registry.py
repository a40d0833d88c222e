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

Deleting some pages of a document (``remove_pages``) keeps its generation: one transaction drops
the page numbers from the document's ``pages`` list and journals the point ids of those pages
(``journal_points``); the points are deleted next, then the entries cleared. A page's point id
is ``gen * 2**20 + page_number - 1`` whatever other pages were deleted, so page ids stay stable.
Schema 2 (written only once a document has lost pages, so older sap-rag versions keep reading
every index they can read correctly) adds the ``pages`` column and ``journal_points``.
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
from urllib.parse import quote

from ..errors import InvalidInputError
from .errors import IndexFormatError

__all__ = ["MAX_PAGES_PER_DOCUMENT", "DocumentRecord", "JournalEntry", "Registry", "page_point_id", "point_ids"]

REGISTRY_NAME = "registry.sqlite"
_PAGE_BITS = 20
MAX_PAGES_PER_DOCUMENT = (1 << _PAGE_BITS) - 1
_SCHEMA_VERSION = 2
_PARTIAL_SCHEMA_VERSION = 2
"""The schema version written once a document has lost pages (``pages`` is not NULL somewhere)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,
    gen INTEGER NOT NULL UNIQUE,
    num_pages INTEGER NOT NULL,
    num_vectors INTEGER NOT NULL,
    images TEXT NOT NULL,
    metadata TEXT NOT NULL,
    added_at REAL NOT NULL,
    pages TEXT
);
CREATE TABLE IF NOT EXISTS journal (
    gen INTEGER PRIMARY KEY,
    doc_id TEXT NOT NULL,
    num_pages INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('writing', 'stale'))
);
CREATE TABLE IF NOT EXISTS journal_points (point_id INTEGER PRIMARY KEY, gen INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS image_refs (name TEXT NOT NULL, doc_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS image_refs_name ON image_refs(name);
CREATE INDEX IF NOT EXISTS image_refs_doc ON image_refs(doc_id);
CREATE INDEX IF NOT EXISTS documents_source ON documents(json_extract(metadata, '$.source'));
"""


_BY_SOURCE = "SELECT doc_id FROM documents WHERE json_extract(metadata, '$.source') = ? ORDER BY doc_id"
_RECORD_COLUMNS = "doc_id, gen, num_pages, num_vectors, images, metadata, added_at, {pages}"


def point_ids(gen: int, num_pages: int) -> list[int]:
    """Engine point ids of a generation's pages: ``gen * 2**20 + page_index``.

    >>> point_ids(3, 2)
    [3145728, 3145729]
    """
    base = gen << _PAGE_BITS
    return [base + i for i in range(num_pages)]


def page_point_id(gen: int, page_number: int) -> int:
    """Engine point id of page ``page_number`` (1-based) of a generation.

    >>> page_point_id(3, 2) == point_ids(3, 2)[1]
    True
    """
    return (gen << _PAGE_BITS) + page_number - 1


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
        pages: the page numbers it still holds, where pages were deleted; None: ``1..num_pages``.
    """

    doc_id: str
    gen: int
    num_pages: int
    num_vectors: int
    images: list[str | None] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    added_at: float = 0.0
    pages: list[int] | None = None

    @property
    def page_numbers(self) -> list[int]:
        """The 1-based numbers of the pages it holds, in order."""
        return list(self.pages) if self.pages is not None else list(range(1, self.num_pages + 1))

    @property
    def span(self) -> int:
        """Pages the generation was written with (its point ids are ``point_ids(gen, span)``)."""
        return max(len(self.images), self.num_pages, max(self.page_numbers, default=0))

    def image_of(self, page_number: int) -> str | None:
        """The stored image name of a page, or None."""
        return self.images[page_number - 1] if 0 < page_number <= len(self.images) else None


@dataclass(frozen=True)
class JournalEntry:
    """An unfinished write: points of ``gen`` that must be deleted if the writer stopped."""

    gen: int
    doc_id: str
    num_pages: int
    state: str


class Registry:
    """The SQLite registry of an index directory (see the module docstring)."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        try:
            if read_only:
                # mode=ro: never creates or changes the file (not even a schema migration).
                uri = f"file:{quote(str(self.path.absolute()))}?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            else:
                self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(_SCHEMA)
                if "pages" not in self._columns("documents"):  # a schema-1 registry
                    self._db.execute("ALTER TABLE documents ADD COLUMN pages TEXT")
            version = self._meta("schema_version")
            if version is None and not read_only:
                with self._transaction():
                    self._set_meta("schema_version", "1")
                    self._set_meta("next_gen", "1")
            elif version is None:
                raise IndexFormatError(f"{self.path} has no schema version; the index is incomplete or damaged")
            elif int(version) > _SCHEMA_VERSION:
                raise IndexFormatError(
                    f"{self.path} was written by a newer sap-rag (registry schema {version}); upgrade sap-rag"
                )
            self._has_pages = "pages" in self._columns("documents")
            self._has_points = bool(
                self._db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'journal_points'"
                ).fetchone()
            )
        except sqlite3.DatabaseError as exc:
            if read_only and _interrupted(exc, self.path):
                from .errors import IndexReadOnlyError

                root = self.path.parent
                raise IndexReadOnlyError(
                    f"the index at {root} has a write that was interrupted inside its commit (a writer stopped "
                    "before finishing), which a read-only open cannot clean up: open it once for writing "
                    f"(SAPIndex.open({str(root)!r}) or any sap-rag command that changes it), then read-only opens work"
                ) from exc
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

    def _columns(self, table: str) -> set[str]:
        return {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}

    @property
    def _select(self) -> str:
        return "SELECT " + _RECORD_COLUMNS.format(pages="pages" if self._has_pages else "NULL") + " FROM documents"

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def close(self) -> None:
        self._db.close()

    # --- reads ------------------------------------------------------------------------------

    def get(self, doc_id: str) -> DocumentRecord | None:
        row = self._db.execute(self._select + " WHERE doc_id = ?", (doc_id,)).fetchone()
        return None if row is None else _record(row)

    def documents(self) -> list[DocumentRecord]:
        rows = self._db.execute(self._select + " ORDER BY doc_id").fetchall()
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

    def journal_points(self) -> list[int]:
        """Point ids of deleted pages whose points may still be in the engine."""
        if not self._has_points:
            return []
        return [row[0] for row in self._db.execute("SELECT point_id FROM journal_points ORDER BY point_id")]

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
                    (old.gen, old.doc_id, old.span),
                )
            db.execute(
                "INSERT INTO documents(doc_id, gen, num_pages, num_vectors, images, metadata, added_at, pages) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.doc_id,
                    record.gen,
                    record.num_pages,
                    record.num_vectors,
                    json.dumps(record.images),
                    json.dumps(record.metadata, sort_keys=True),
                    record.added_at or time.time(),
                    None if record.pages is None else json.dumps(list(record.pages)),
                ),
            )
            if record.pages is not None:  # page numbers with gaps: older sap-rag cannot read this registry
                self._set_meta("schema_version", str(_PARTIAL_SCHEMA_VERSION))
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
                (old.gen, old.doc_id, old.span),
            )
        return old

    def remove_pages(self, doc_id: str, page_numbers: list[int], num_vectors: int) -> DocumentRecord:
        """Drop some (not all) pages of a committed document, atomically; their point ids go to
        ``journal_points``. ``num_vectors``: anchors those pages held. Returns the new record."""
        with self._transaction() as db:
            old = self.get(doc_id)
            if old is None:
                raise InvalidInputError(f"no document {doc_id!r}")  # the caller checked: a race
            gone = set(page_numbers)
            kept = [n for n in old.page_numbers if n not in gone]
            if not kept or len(kept) + len(gone) != old.num_pages:
                raise InvalidInputError(f"cannot remove pages {sorted(gone)} of {doc_id!r}; it has {old.page_numbers}")
            images = [None if i + 1 in gone else name for i, name in enumerate(old.images)]
            db.execute(
                "UPDATE documents SET num_pages = ?, num_vectors = ?, images = ?, pages = ? WHERE doc_id = ?",
                (len(kept), old.num_vectors - num_vectors, json.dumps(images), json.dumps(kept), doc_id),
            )
            db.execute("DELETE FROM image_refs WHERE doc_id = ?", (doc_id,))
            db.executemany(
                "INSERT INTO image_refs(name, doc_id) VALUES (?, ?)",
                [(name, doc_id) for name in dict.fromkeys(n for n in images if n)],
            )
            db.executemany(
                "INSERT OR IGNORE INTO journal_points(point_id, gen) VALUES (?, ?)",
                [(page_point_id(old.gen, n), old.gen) for n in sorted(gone)],
            )
            self._set_meta("schema_version", str(_PARTIAL_SCHEMA_VERSION))
        new = self.get(doc_id)
        assert new is not None
        return new

    def forget_points(self, ids: list[int]) -> None:
        """Clear ``journal_points`` entries whose points are gone from the engine."""
        if not ids or not self._has_points:
            return
        with self._transaction() as db:
            db.executemany("DELETE FROM journal_points WHERE point_id = ?", [(i,) for i in ids])

    def forget(self, gens: list[int]) -> None:
        """Clear journal entries whose points are gone from the engine."""
        if not gens:
            return
        with self._transaction() as db:
            db.executemany("DELETE FROM journal WHERE gen = ?", [(g,) for g in gens])


def _interrupted(exc: sqlite3.DatabaseError, path: Path) -> bool:
    """Whether a read-only connection failed on a transaction a writer left (a hot rollback journal,
    or a WAL to recover), which only a writer's connection can roll back."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    journal = path.with_name(path.name + "-journal")
    return name.startswith("SQLITE_READONLY") or (journal.is_file() and journal.stat().st_size > 0)


def _record(row: tuple) -> DocumentRecord:
    doc_id, gen, num_pages, num_vectors, images, metadata, added_at, pages = row
    return DocumentRecord(
        doc_id=doc_id,
        gen=int(gen),
        num_pages=int(num_pages),
        num_vectors=int(num_vectors),
        images=json.loads(images),
        metadata=json.loads(metadata),
        added_at=float(added_at),
        pages=[int(n) for n in json.loads(pages)] if pages is not None else None,
    )
