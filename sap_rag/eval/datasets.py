"""Retrieval datasets from local disk in the ViDoRe layouts (v2 BEIR-style and v1 rows).

ViDoRe v2 (BEIR-style), a directory holding three parts, each as ``<part>.parquet``,
``<part>.jsonl``, or a folder ``<part>/`` of parquet / jsonl shards (the layout of a
``huggingface-cli download`` snapshot, e.g. ``corpus/test-00000-of-00001.parquet``):

- ``corpus``: ``corpus-id`` and ``image``;
- ``queries``: ``query-id`` and ``query`` (optional ``language``);
- ``qrels``: ``query-id``, ``corpus-id`` and ``score`` (qrels may also be a BEIR ``.tsv``).

ViDoRe v1, a directory of parquet / jsonl files (or ``data/`` shards) of rows with ``query``
(null for pages without a question), ``image`` and ``image_filename``. As in vidore-benchmark's
QA evaluator, queries are de-duplicated and each is relevant to the page of its (last) row;
pages are identified by ``image_filename`` (by image content when that column is missing).

An ``image`` is image bytes, a dict ``{"bytes": ..., "path": ...}`` (what Hugging Face's Image
feature stores; in jsonl the bytes are base64), or a path to an image file, relative to the file
that names it or to the dataset root.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingDependencyError
from .errors import DatasetError

logger = logging.getLogger(__name__)

__all__ = [
    "DatasetLayout",
    "RetrievalDataset",
    "dataset_folders",
    "discover_datasets",
    "load_dataset",
    "read_records",
]

V2_PARTS = ("corpus", "queries", "qrels")
TABLE_SUFFIXES = (".parquet", ".jsonl")

_CORPUS_ID = ("corpus-id", "corpus_id", "_id", "id")
_QUERY_ID = ("query-id", "query_id", "_id", "id")
_QUERY_TEXT = ("query", "text", "question")
_IMAGE = ("image", "page_image", "image_path", "image_file")
_SCORE = ("score", "relevance", "label")

# Values a ``language`` column may use for one language (ViDoRe v2 has used both styles).
_LANGUAGE_ALIASES = {
    "english": {"english", "en", "eng", "eng-latn"},
    "french": {"french", "fr", "fra", "fra-latn"},
    "spanish": {"spanish", "es", "spa", "spa-latn"},
    "german": {"german", "de", "deu", "deu-latn"},
}

ImageSource = bytes | Path


class DatasetLayout(str, Enum):
    """On-disk layout of a dataset."""

    AUTO = "auto"
    V2 = "v2"  # BEIR-style corpus / queries / qrels
    V1 = "v1"  # rows of query, image, image_filename


@dataclass
class RetrievalDataset:
    """Pages, queries and relevance judgements of one dataset, loaded from disk.

    Attributes:
        name: short name (the directory name unless given).
        corpus_ids: ``(D,)`` page ids, in corpus order.
        images: ``(D,)`` each page's image as bytes or a file path (decoded on use).
        query_ids: ``(Q,)`` query ids.
        queries: ``(Q,)`` query texts.
        qrels: query id -> {page id: graded relevance > 0}. Every query has at least one
            relevant page in the corpus (queries without one are dropped when loading).
        layout: ``"v2"``, ``"v1"`` or ``"synthetic"``.
        source: the directory it was read from.
    """

    name: str
    corpus_ids: list[str]
    images: list[ImageSource]
    query_ids: list[str]
    queries: list[str]
    qrels: dict[str, dict[str, int]]
    layout: str = DatasetLayout.V2.value
    source: str = ""
    _fingerprint: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.corpus_ids) != len(self.images):
            raise DatasetError(f"{self.name}: {len(self.corpus_ids)} page ids for {len(self.images)} images")
        if len(self.query_ids) != len(self.queries):
            raise DatasetError(f"{self.name}: {len(self.query_ids)} query ids for {len(self.queries)} queries")
        if len(set(self.corpus_ids)) != len(self.corpus_ids):
            raise DatasetError(f"{self.name}: duplicate page ids in the corpus")
        if len(set(self.query_ids)) != len(self.query_ids):
            raise DatasetError(f"{self.name}: duplicate query ids")
        if not self.corpus_ids:
            raise DatasetError(f"{self.name}: the corpus is empty")
        if not self.query_ids:
            raise DatasetError(f"{self.name}: no query has a relevant page in the corpus")

    @property
    def num_pages(self) -> int:
        return len(self.corpus_ids)

    @property
    def num_queries(self) -> int:
        return len(self.query_ids)

    def relevance_matrix(self, *, binary: bool = True) -> np.ndarray:
        """``(Q, D)`` float64 relevance of each page to each query (0 = not relevant).

        ``binary=True`` maps every positive grade to 1 (ViDoRe reports NDCG with binary gains).
        """
        column = {cid: j for j, cid in enumerate(self.corpus_ids)}
        matrix = np.zeros((self.num_queries, self.num_pages), dtype=np.float64)
        for i, qid in enumerate(self.query_ids):
            for cid, grade in self.qrels.get(qid, {}).items():
                if grade > 0 and cid in column:
                    matrix[i, column[cid]] = 1.0 if binary else float(grade)
        return matrix

    def image_bytes(self, index: int) -> bytes:
        """The encoded image file of page ``index``."""
        source = self.images[index]
        if isinstance(source, Path):
            try:
                return source.read_bytes()
            except OSError as exc:
                raise DatasetError(
                    f"{self.name}: cannot read the image of page {self.corpus_ids[index]!r} ({exc})"
                ) from exc
        return source

    def fingerprint(self) -> str:
        """A hex digest of the content: page ids and image bytes, queries, and qrels.

        Two datasets with the same fingerprint give the same encodings with the same model.
        """
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for i, cid in enumerate(self.corpus_ids):
                digest.update(f"page\0{cid}\0".encode())
                digest.update(hashlib.sha1(self.image_bytes(i)).digest())
            for qid, text in zip(self.query_ids, self.queries):
                digest.update(f"query\0{qid}\0{text}\0".encode())
            for qid in sorted(self.qrels):
                for cid, grade in sorted(self.qrels[qid].items()):
                    digest.update(f"qrel\0{qid}\0{cid}\0{grade}\0".encode())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def limit(self, *, max_queries: int | None = None, max_pages: int | None = None) -> RetrievalDataset:
        """A smaller dataset for quick runs: the first ``max_queries`` queries, at most ``max_pages`` pages.

        Every kept query keeps its relevant pages (they come first); the rest of the corpus, in
        order, fills up to ``max_pages``. If the relevant pages alone exceed ``max_pages``, queries
        are dropped from the end until they fit.
        """
        if max_queries is None and max_pages is None:
            return self
        keep_q = list(range(self.num_queries))[: max_queries if max_queries is not None else None]
        position = {cid: j for j, cid in enumerate(self.corpus_ids)}

        def needed(queries: list[int]) -> list[int]:
            pages = {position[cid] for i in queries for cid, g in self.qrels[self.query_ids[i]].items() if g > 0}
            return sorted(pages)

        while max_pages is not None and keep_q and len(needed(keep_q)) > max_pages:
            keep_q.pop()
        if not keep_q:
            raise DatasetError(f"{self.name}: max_pages={max_pages} is too small for any query's relevant pages")
        pages = needed(keep_q)
        chosen = set(pages)
        for j in range(self.num_pages):
            if max_pages is not None and len(pages) >= max_pages:
                break
            if j not in chosen:
                pages.append(j)
                chosen.add(j)
        pages.sort()
        query_ids = [self.query_ids[i] for i in keep_q]
        return replace(
            self,
            corpus_ids=[self.corpus_ids[j] for j in pages],
            images=[self.images[j] for j in pages],
            query_ids=query_ids,
            queries=[self.queries[i] for i in keep_q],
            qrels={qid: dict(self.qrels[qid]) for qid in query_ids},
            _fingerprint=None,
        )

    def __repr__(self) -> str:
        return (
            f"RetrievalDataset(name={self.name!r}, pages={self.num_pages}, queries={self.num_queries}, "
            f"layout={self.layout!r}, source={self.source!r})"
        )


# --- reading tables -----------------------------------------------------------------------------


def _require_pyarrow(path: Path):
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingDependencyError(
            f"reading {path} needs pyarrow: pip install pyarrow  (or pip install 'sap-rag[eval]'); "
            "jsonl files need nothing extra"
        ) from exc
    return pq


def read_records(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Yield the rows of a ``.parquet``, ``.jsonl`` or ``.tsv``/``.csv`` file as dicts."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        pq = _require_pyarrow(path)
        try:
            parquet = pq.ParquetFile(path)
            for batch in parquet.iter_batches(batch_size=256):
                yield from batch.to_pylist()
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path} is not a readable parquet file ({exc})") from exc
    elif suffix == ".jsonl":
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path} line {number} is not valid JSON ({exc.msg})") from exc
                if not isinstance(row, dict):
                    raise DatasetError(f"{path} line {number} is not a JSON object")
                yield row
    elif suffix in (".tsv", ".csv"):
        with path.open(encoding="utf-8", newline="") as handle:
            yield from csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ",")
    else:
        raise DatasetError(f"{path}: unsupported table format {suffix!r}; use .parquet or .jsonl")


def _split_first(files: list[Path], split: str) -> list[Path]:
    """Shards of the wanted split if the names say which split they hold, else all of them."""
    named = [f for f in files if f.name.startswith(f"{split}-") or f.stem == split or f.name.startswith(f"{split}.")]
    return named or files


def _find_part(root: Path, part: str, split: str) -> list[Path]:
    suffixes = (*TABLE_SUFFIXES, ".tsv") if part == "qrels" else TABLE_SUFFIXES
    for suffix in suffixes:
        single = root / f"{part}{suffix}"
        if single.is_file():
            return [single]
    for folder in (root / part, root / "data" / part):
        if folder.is_dir():
            for suffix in suffixes:
                files = sorted(folder.glob(f"*{suffix}"))
                if files:
                    return _split_first(files, split)
    return []


def _expected_v2(part: str) -> str:
    extra = ", qrels.tsv" if part == "qrels" else ""
    return f"{part}.parquet, {part}.jsonl{extra}, or a folder {part}/ of .parquet or .jsonl shards"


def _column(row: dict[str, Any], names: Sequence[str], where: str, what: str) -> Any:
    for name in names:
        if name in row and row[name] is not None:
            return row[name]
    present = [name for name in names if name in row]
    if present:
        raise DatasetError(f"{where}: the {what} column {present[0]!r} is empty")
    raise DatasetError(f"{where} has no {what} column (looked for {', '.join(names)}); it has: {sorted(row)}")


def _image_source(value: Any, base_dirs: Sequence[Path], where: str) -> ImageSource:
    """bytes, a {"bytes", "path"} dict, or a path -> bytes or an existing file path."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, dict):
        data = value.get("bytes")
        if data is not None:
            if isinstance(data, str):
                try:
                    return base64.b64decode(data, validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise DatasetError(f"{where}: image 'bytes' is a string but not base64 ({exc})") from exc
            return bytes(data)
        value = value.get("path")
        if value is None:
            raise DatasetError(f"{where}: the image has neither 'bytes' nor 'path'")
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        candidates = [path] if path.is_absolute() else [base / path for base in base_dirs]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        tried = ", ".join(str(c) for c in candidates)
        raise DatasetError(f"{where}: image file {str(value)!r} not found (tried {tried})")
    raise DatasetError(
        f"{where}: image must be bytes, a {{'bytes', 'path'}} dict or a file path, got {type(value).__name__}"
    )


def _language_matches(value: Any, language: str) -> bool:
    wanted = language.strip().lower()
    aliases = _LANGUAGE_ALIASES.get(wanted, {wanted})
    for name, group in _LANGUAGE_ALIASES.items():
        if wanted in group:
            aliases = group | {name}
    return str(value).strip().lower() in aliases


# --- the two layouts ----------------------------------------------------------------------------


def _finish(
    name: str,
    root: Path,
    layout: str,
    corpus_ids: list[str],
    images: list[ImageSource],
    queries: list[tuple[str, str]],
    qrels: dict[str, dict[str, int]],
) -> RetrievalDataset:
    known_pages = set(corpus_ids)
    known_queries = {qid for qid, _ in queries}
    unknown_pages = {cid for rel in qrels.values() for cid in rel if cid not in known_pages}
    if unknown_pages:
        logger.warning(
            "%s: %d page ids in the qrels are not in the corpus (e.g. %s); ignoring those judgements",
            name,
            len(unknown_pages),
            sorted(unknown_pages)[:3],
        )
    cleaned = {
        qid: {cid: grade for cid, grade in rel.items() if cid in known_pages and grade > 0}
        for qid, rel in qrels.items()
        if qid in known_queries
    }
    kept = [(qid, text) for qid, text in queries if cleaned.get(qid)]
    dropped = len(queries) - len(kept)
    if dropped:
        logger.info("%s: dropped %d queries without a relevant page in the corpus", name, dropped)
    if not kept:
        raise DatasetError(
            f"{root}: no query has a relevant page: check that the qrels' query-id and corpus-id values match "
            "the ids in queries and corpus"
        )
    return RetrievalDataset(
        name=name,
        corpus_ids=corpus_ids,
        images=images,
        query_ids=[qid for qid, _ in kept],
        queries=[text for _, text in kept],
        qrels={qid: cleaned[qid] for qid, _ in kept},
        layout=layout,
        source=str(root),
    )


def _load_v2(root: Path, name: str, split: str, language: str | None) -> RetrievalDataset:
    parts = {part: _find_part(root, part, split) for part in V2_PARTS}
    missing = [part for part, files in parts.items() if not files]
    if missing:
        expected = "; ".join(f"{part}: {_expected_v2(part)}" for part in missing)
        raise DatasetError(f"{root} is not a complete ViDoRe v2 (BEIR) dataset: missing {expected}")

    corpus_ids: list[str] = []
    images: list[ImageSource] = []
    for path in parts["corpus"]:
        for number, row in enumerate(read_records(path), start=1):
            where = f"{path} row {number}"
            corpus_ids.append(str(_column(row, _CORPUS_ID, where, "page id ('corpus-id')")))
            images.append(_image_source(_column(row, _IMAGE, where, "image"), (path.parent, root), where))

    queries: list[tuple[str, str]] = []
    languages: set[str] = set()
    has_language = False
    for path in parts["queries"]:
        for number, row in enumerate(read_records(path), start=1):
            where = f"{path} row {number}"
            qid = str(_column(row, _QUERY_ID, where, "query id ('query-id')"))
            text = _column(row, _QUERY_TEXT, where, "query text ('query')")
            if not isinstance(text, str) or not text.strip():
                raise DatasetError(f"{where}: the query text is empty or not a string")
            if language is not None and row.get("language") is not None:
                has_language = True
                languages.add(str(row["language"]))
                if not _language_matches(row["language"], language):
                    continue
            queries.append((qid, text))
    if language is not None:
        if not has_language:
            logger.info("%s: the queries have no language column; keeping all of them", name)
        elif not queries:
            raise DatasetError(f"{root}: no query in language {language!r}; the queries use {sorted(languages)}")

    qrels: dict[str, dict[str, int]] = {}
    for path in parts["qrels"]:
        for number, row in enumerate(read_records(path), start=1):
            where = f"{path} row {number}"
            qid = str(_column(row, _QUERY_ID[:2], where, "query id ('query-id')"))
            cid = str(_column(row, _CORPUS_ID[:2], where, "page id ('corpus-id')"))
            raw = next((row[c] for c in _SCORE if row.get(c) is not None), 1)
            try:
                grade = int(float(raw))
            except (TypeError, ValueError):
                raise DatasetError(f"{where}: relevance score {raw!r} is not a number") from None
            qrels.setdefault(qid, {})[cid] = grade
    return _finish(name, root, DatasetLayout.V2.value, corpus_ids, images, queries, qrels)


def _v1_files(root: Path, split: str) -> list[Path]:
    for folder in (root, root / "data"):
        if folder.is_dir():
            for suffix in TABLE_SUFFIXES:
                files = sorted(folder.glob(f"*{suffix}"))
                if files:
                    return _split_first(files, split)
    return []


def _load_v1(root: Path, name: str, split: str) -> RetrievalDataset:
    files = _v1_files(root, split)
    if not files:
        raise DatasetError(
            f"{root} is not a ViDoRe v1 dataset: expected .parquet or .jsonl files (in the folder or in data/) "
            "with rows of query, image, image_filename"
        )
    page_of: dict[str, int] = {}
    corpus_ids: list[str] = []
    images: list[ImageSource] = []
    query_page: dict[str, str] = {}
    for path in files:
        for number, row in enumerate(read_records(path), start=1):
            where = f"{path} row {number}"
            if "query" not in row:
                raise DatasetError(f"{where} has no 'query' column (ViDoRe v1 rows: query, image, image_filename)")
            source = _image_source(_column(row, ("image",), where, "image"), (path.parent, root), where)
            filename = row.get("image_filename")
            if filename is None:
                data = source.read_bytes() if isinstance(source, Path) else source
                filename = "sha1:" + hashlib.sha1(data).hexdigest()
            filename = str(filename)
            if filename not in page_of:
                page_of[filename] = len(corpus_ids)
                corpus_ids.append(filename)
                images.append(source)
            query = row["query"]
            if isinstance(query, str) and query.strip():
                # As vidore-benchmark: one relevant page per distinct query, the last row's.
                query_page.pop(query, None)
                query_page[query] = filename
    queries = [(f"q{i}", text) for i, text in enumerate(query_page)]
    qrels = {f"q{i}": {filename: 1} for i, filename in enumerate(query_page.values())}
    return _finish(name, root, DatasetLayout.V1.value, corpus_ids, images, queries, qrels)


def detect_layout(root: Path, split: str = "test") -> DatasetLayout | None:
    """``V2`` if any BEIR part is present, ``V1`` if there are row files, else None."""
    if any(_find_part(root, part, split) for part in V2_PARTS):
        return DatasetLayout.V2
    if _v1_files(root, split):
        return DatasetLayout.V1
    return None


def load_dataset(
    path: str | os.PathLike,
    *,
    layout: DatasetLayout | str = DatasetLayout.AUTO,
    name: str | None = None,
    split: str = "test",
    language: str | None = None,
) -> RetrievalDataset:
    """Load one dataset directory.

    Args:
        path: the dataset directory.
        layout: ``"auto"`` (detect), ``"v2"`` or ``"v1"``.
        name: the name used in result tables (default: the directory name).
        split: preferred split when shards are named by split (``test-00000-of-00001.parquet``).
        language: keep only queries in this language (v2 ``language`` column; ``"english"``
            also matches ``"eng-Latn"``/``"en"``). Ignored, with a log line, if there is no such column.

    Raises:
        DatasetError: the directory or a file is missing or malformed.
    """
    root = Path(path).expanduser()
    try:
        layout = DatasetLayout(layout)
    except ValueError:
        raise DatasetError(f"layout must be one of auto, v2, v1; got {layout!r}") from None
    if not root.is_dir():
        raise DatasetError(f"dataset directory {root} does not exist (or is not a directory)")
    name = name or root.name
    if layout is DatasetLayout.AUTO:
        detected = detect_layout(root, split)
        if detected is None:
            raise DatasetError(
                f"{root} holds no dataset: expected ViDoRe v2 parts (corpus, queries, qrels as .parquet, .jsonl "
                "or folders of shards) or ViDoRe v1 row files (.parquet/.jsonl with query, image, image_filename)"
            )
        layout = detected
    if layout is DatasetLayout.V2:
        return _load_v2(root, name, split, language)
    if language is not None:
        logger.info("%s: ViDoRe v1 rows have no language column; keeping all the queries", name)
    return _load_v1(root, name, split)


def dataset_folders(root: Path, split: str = "test") -> list[Path]:
    """The sub-folders of ``root`` (not hidden) that hold a dataset, sorted by name."""
    return [
        child
        for child in sorted(root.iterdir())
        if child.is_dir() and not child.name.startswith(".") and detect_layout(child, split) is not None
    ]


def discover_datasets(
    path: str | os.PathLike,
    *,
    layout: DatasetLayout | str = DatasetLayout.AUTO,
    split: str = "test",
    language: str | None = None,
) -> list[RetrievalDataset]:
    """The dataset at ``path``, or, if ``path`` is a folder of datasets, each dataset in it (sorted by name).

    This is how one ``--dataset data/vidore_v2`` evaluates every ViDoRe v2 subset downloaded there.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset directory {root} does not exist (or is not a directory)")
    wanted = None if DatasetLayout(layout) is DatasetLayout.AUTO else DatasetLayout(layout)
    if detect_layout(root, split) is not None and (wanted is None or detect_layout(root, split) is wanted):
        return [load_dataset(root, layout=layout, split=split, language=language)]
    children = dataset_folders(root, split)
    if not children:
        return [load_dataset(root, layout=layout, split=split, language=language)]  # raises the clear error
    return [load_dataset(child, layout=layout, split=split, language=language) for child in children]
