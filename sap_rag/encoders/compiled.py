"""A compiled query encoder: a small model's query side saved as TorchScript, so a search process
needs ``torch`` and ``tokenizers`` only (no transformers, no colpali-engine, whose imports take
seconds).

The first time a small checkpoint is loaded in full (by ``sap-rag index`` or a first ``sap-rag
search``), :func:`save_compiled_queries` traces its query forward at a fixed length, checks the
traced module and the plain ``tokenizers`` tokenizer against the real processor and model on probe
queries, and stores them in the user's cache (``$SAP_RAG_CACHE_DIR``, else
``$XDG_CACHE_HOME/sap-rag``, else ``~/.cache/sap-rag``), keyed by the checkpoint's files (path, size,
modification time) and the library versions. Later searches load it with
:meth:`CompiledQueryEncoder.load`. Nothing is read from or written to an index folder: the cache
holds only what this library wrote itself.

Only checkpoints whose weights are at most :data:`MAX_WEIGHT_BYTES` are compiled: for a real model,
reading the weights dominates and a duplicate of them in the cache would cost gigabytes.
``SAP_RAG_NO_QUERY_CACHE=1`` turns the whole path off.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError
from ..model_spec import resolve_spec

if TYPE_CHECKING:
    import torch

    from .encoder import PageEncoder

logger = logging.getLogger(__name__)

__all__ = ["CompiledQueryEncoder", "cache_root", "check_query_strings", "save_compiled_queries"]

CACHE_ENV = "SAP_RAG_CACHE_DIR"
DISABLE_ENV = "SAP_RAG_NO_QUERY_CACHE"
MAX_WEIGHT_BYTES = 256 * 2**20
QUERY_TOKENS = 96  # the traced length: longer queries go through the full model
FORMAT = 1
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")  # files that hold a checkpoint's weights
_PROBES = (
    "x",
    "What was the revenue of Acme Industries in 2022?",
    "How did the profit change between 2019 and 2023, and which region grew fastest?",
    "energy use per employee",
)


def check_query_strings(queries: Sequence[str]) -> None:
    """Refuse anything but a non-empty list of non-empty strings (what every query encoder takes)."""
    if isinstance(queries, str) or not isinstance(queries, Sequence):
        raise InvalidInputError(
            f"encode_queries takes a list of strings, got {type(queries).__name__}; wrap one query in a list"
        )
    if len(queries) == 0:
        raise InvalidInputError("encode_queries got an empty list; pass at least one query")
    for i, query in enumerate(queries):
        if not isinstance(query, str):
            raise InvalidInputError(f"query #{i} is a {type(query).__name__}, not a string")
        if not query.strip():
            raise InvalidInputError(f"query #{i} is empty; a query needs some text to search with")


def enabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("1", "true", "yes")


def cache_root() -> Path:
    """Where compiled query encoders live (see the module docstring)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sap-rag"


def _checkpoint_dir(spec: str) -> Path | None:
    """The local folder of a checkpoint: ``spec`` itself, or a hub id's snapshot in the hub cache."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path.resolve()
    if spec.startswith("tiny:") or spec.count("/") != 1:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a dependency of transformers
        return None
    found = try_to_load_from_cache(spec, "config.json")
    return Path(found).resolve().parent if isinstance(found, str) else None


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "none"


def _entry(spec: str) -> tuple[Path, Path] | None:
    """``(checkpoint folder, cache entry folder)`` of ``spec``, or None if it cannot be compiled."""
    folder = _checkpoint_dir(spec)
    if folder is None:
        return None
    files = sorted(p for p in folder.iterdir() if p.is_file())
    weights = sum(p.stat().st_size for p in files if p.name.endswith(WEIGHT_SUFFIXES))
    if weights == 0 or weights > MAX_WEIGHT_BYTES or not (folder / "tokenizer.json").is_file():
        return None
    identity = {
        "format": FORMAT,
        "folder": str(folder),
        "files": [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files],
        "versions": [_version(n) for n in ("torch", "transformers", "colpali-engine", "tokenizers", "sap-rag")],
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]
    return folder, cache_root() / "query-encoders" / key


class CompiledQueryEncoder:
    """The query side of a small encoder, loaded without transformers (see the module docstring).

    It stands in for a :class:`~sap_rag.encoders.encoder.PageEncoder` in an index: ``describe()``,
    ``dim`` and ``encode_queries``. Anything else (pages, image queries, queries longer than the
    traced length) goes to the full encoder, built on first need by ``fallback``.
    """

    def __init__(
        self,
        module: Any,
        tokenizer: Any,
        meta: dict[str, Any],
        *,
        window: Sequence[int] | None = None,
        fallback: Callable[[], PageEncoder] | None = None,
    ) -> None:
        self._module = module
        self._tokenizer = tokenizer
        self._meta = meta
        self._description = dict(meta["describe"])
        if window is not None:
            self._description["window"] = [int(layer) for layer in window]
        self._fallback = fallback
        self._full: PageEncoder | None = None
        self.spec = str(self._description["spec"])
        self.batch_size = 16

    @classmethod
    def load(
        cls, spec: str, *, window: Sequence[int] | None = None, fallback: Callable[[], PageEncoder] | None = None
    ) -> CompiledQueryEncoder | None:
        """The cached compiled encoder of ``spec``, or None (none cached, or the cache is off)."""
        if not enabled():
            return None
        entry = _entry(spec)
        if entry is None or not (entry[1] / "meta.json").is_file():
            return None
        folder = entry[1]
        try:
            import torch
            from tokenizers import Tokenizer

            meta = json.loads((folder / "meta.json").read_text())
            if meta.get("format") != FORMAT:
                return None
            module = torch.jit.load(str(folder / "queries.pt"), map_location="cpu")
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as exc:  # a damaged cache entry: use the full model, say why
            logger.warning("ignoring the compiled query encoder in %s (%s: %s)", folder, type(exc).__name__, exc)
            return None
        logger.debug("compiled query encoder of %s from %s", spec, folder)
        # Entries written before indexes recorded local models by absolute path hold the spec as typed.
        meta = {**meta, "describe": {**meta["describe"], "spec": resolve_spec(spec)}}
        return cls(module, tokenizer, meta, window=window, fallback=fallback)

    @property
    def dim(self) -> int:
        return int(self._description["dim"])

    def describe(self) -> dict[str, Any]:
        return dict(self._description)

    def __repr__(self) -> str:
        return f"CompiledQueryEncoder(spec={self.spec!r}, dim={self.dim}, tokens={self._meta['length']})"

    @property
    def full(self) -> PageEncoder:
        """The full encoder (loaded on first use)."""
        if self._full is None:
            if self._fallback is None:
                raise InvalidInputError(
                    "this compiled encoder encodes query strings only; load the full model with load_encoder"
                )
            self._full = self._fallback()
        return self._full

    def _ids(self, query: str) -> list[int] | None:
        ids = self._tokenizer.encode(self._meta["prefix"] + query + self._meta["suffix"]).ids
        return ids if len(ids) <= int(self._meta["length"]) else None

    def encode_queries(
        self, queries: Sequence[str], *, batch_size: int | None = None, show_progress: bool = False
    ) -> list[torch.Tensor]:
        """Encode query strings to ``(n_tokens, dim)`` float32 tensors, as the full model does."""
        import torch

        check_query_strings(queries)
        encoded = [self._ids(q) for q in queries]
        if any(ids is None for ids in encoded):
            return self.full.encode_queries(queries, batch_size=batch_size, show_progress=show_progress)
        length, pad = int(self._meta["length"]), int(self._meta["pad_id"])
        out: list[torch.Tensor] = []
        with torch.no_grad():
            for ids in encoded:  # one at a time: the trace is of one query
                assert ids is not None
                input_ids = torch.tensor([ids + [pad] * (length - len(ids))])
                mask = torch.zeros(1, length, dtype=torch.long)
                mask[0, : len(ids)] = 1
                out.append(self._module(input_ids, mask)[0, : len(ids)].to(torch.float32).clone())
        return out

    def encode_pages(self, *args: Any, **kwargs: Any) -> Any:
        return self.full.encode_pages(*args, **kwargs)


def save_compiled_queries(encoder: PageEncoder) -> Path | None:
    """Trace ``encoder``'s query side and cache it (see the module docstring); None when not eligible.

    The saved module is checked first: the tokenizer's ids must equal the processor's and the
    traced outputs the model's (to 1e-4) on probe queries, else nothing is saved.
    """
    import torch

    if not enabled() or encoder.device.type != "cpu" or encoder.dtype != torch.float32:
        return None
    entry = _entry(encoder.spec)
    if entry is None:
        return None
    folder, target = entry
    if (target / "meta.json").is_file():
        return target
    from tokenizers import Tokenizer

    processor = encoder.processor
    prefix = str(getattr(processor, "query_prefix", ""))
    suffix = str(getattr(processor, "query_augmentation_token", "")) * 10
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    pad_id = getattr(getattr(processor, "tokenizer", None), "pad_token_id", None)
    if pad_id is None:
        logger.debug("not compiling %s: its tokenizer has no pad token", encoder.spec)
        return None

    class _Queries(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.model(input_ids=input_ids, attention_mask=attention_mask)

    def padded(ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        mask = torch.zeros(1, QUERY_TOKENS, dtype=torch.long)
        mask[0, : len(ids)] = 1
        return torch.tensor([ids + [int(pad_id)] * (QUERY_TOKENS - len(ids))]), mask

    # Trace with padding present, so the masked branch of the attention code is the one recorded.
    example = padded(tokenizer.encode(prefix + _PROBES[1] + suffix).ids)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(_Queries(encoder.model), example, check_trace=False)
    meta = {
        "format": FORMAT,
        "length": QUERY_TOKENS,
        "prefix": prefix,
        "suffix": suffix,
        "pad_id": int(pad_id),
        "describe": encoder.describe(),
    }
    candidate = CompiledQueryEncoder(traced, tokenizer, meta)
    reference = encoder.encode_queries(list(_PROBES))
    for query, expected in zip(_PROBES, reference):
        ids = tokenizer.encode(prefix + query + suffix).ids
        real = processor.process_queries([query])["input_ids"][0].tolist()
        got = candidate.encode_queries([query])[0]
        if ids != real or got.shape != expected.shape or float((got - expected).abs().max()) > 1e-4:
            logger.info("not compiling %s: the traced query encoder does not reproduce the model", encoder.spec)
            return None
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        torch.jit.save(traced, str(staging / "queries.pt"))
        shutil.copyfile(folder / "tokenizer.json", staging / "tokenizer.json")
        (staging / "meta.json").write_text(json.dumps(meta, indent=1))
        os.replace(staging, target)  # atomic: a reader sees a whole entry or none
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "meta.json").is_file():
            raise
    logger.debug("cached the compiled query encoder of %s in %s", encoder.spec, target)
    return target


def load_query_encoder(
    spec: str, *, device: str | None = None, window: Sequence[int] | None = None
) -> CompiledQueryEncoder | PageEncoder:
    """The encoder a searching process needs: the cached compiled query side of ``spec`` when there
    is one (CPU only), else the full model (whose query side is then compiled for next time)."""
    from .loading import load_encoder

    def full() -> PageEncoder:
        return load_encoder(spec, device=device, window=window)

    if device in (None, "cpu"):
        compiled = CompiledQueryEncoder.load(spec, window=window, fallback=full)
        if compiled is not None:
            return compiled
    encoder = full()
    remember_queries(encoder)
    return encoder


def remember_queries(encoder: PageEncoder) -> None:
    """:func:`save_compiled_queries`, where a failure only costs speed (it is logged, not raised)."""
    try:
        save_compiled_queries(encoder)
    except Exception as exc:  # the cache is an optimisation: never fail a command over it
        logger.warning(
            "could not cache the compiled query encoder of %s: %s: %s", encoder.spec, type(exc).__name__, exc
        )
