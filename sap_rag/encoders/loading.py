"""``load_encoder``: hub ids, local checkpoints and ``tiny:<family>`` specs -> PageEncoder."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .._compat import import_colpali_engine
from ..errors import CalibrationError, InvalidInputError, ModelLoadError, UnknownFamilyError
from ..model_spec import TINY_PREFIX, resolve_spec
from .encoder import PageEncoder
from .families import FamilySpec, family_for_config, get_family

if TYPE_CHECKING:
    from ..calibration.calibrate import Calibration

logger = logging.getLogger(__name__)

__all__ = ["TINY_PREFIX", "detect_family", "hub_reachable", "load_encoder", "resolve_spec"]


_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
_hub_reachable: bool | None = None  # probed once per process


def _offline_mode() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub (``HF_ENDPOINT`` or huggingface.co) answers a TCP connection.

    Checked once per process so that a machine without network fails in seconds, not after the
    hub client's retries (about a minute).
    """
    global _hub_reachable
    if _hub_reachable is None:
        from urllib.parse import urlparse

        endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
        port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
        try:
            socket.create_connection((endpoint.hostname or "huggingface.co", port), timeout=timeout).close()
            _hub_reachable = True
        except OSError:
            _hub_reachable = False
    return _hub_reachable


def _local_hint(spec: str) -> str:
    # True for every command: `search` and `info` have no --model, an index names its own model.
    return (
        f"fetch it where there is network with 'hf download {spec}' (older huggingface_hub: "
        f"'huggingface-cli download {spec}'), which puts it in the hub cache that sap-rag reads offline; "
        "or download it to a folder (--local-dir DIR) and use that folder as the model (--model DIR for "
        "sap-rag index, calibrate and eval; load_encoder(DIR) in Python); or use 'tiny:<family>' for an "
        "offline test model"
    )


def _relative_hint(spec: str) -> str:
    """What to do when ``spec`` may be a checkpoint folder given relative to another working directory."""
    return (
        f"if {spec!r} is a checkpoint folder, run from the folder it is relative to (an index built before "
        "sap-rag recorded absolute model paths names its model folder as typed where it was built)"
    )


def _read_json(spec: str, filename: str) -> dict[str, Any] | None:
    """``filename`` of a local checkpoint directory or hub repo as a dict, or None if absent.

    A hub id is read from the local cache when it is there; otherwise the hub must be reachable,
    which is checked first so that no network fails fast with what to do instead.
    """
    path = Path(spec)
    if path.is_dir():
        target = path / filename
        return json.loads(target.read_text()) if target.is_file() else None
    if not _HUB_ID.fullmatch(spec):
        raise ModelLoadError(
            f"the model {spec!r} is neither a checkpoint folder (no such directory from {os.getcwd()}) nor a hub "
            "id like 'vidore/colqwen2-v1.0'; check the path or the name, or use 'tiny:<family>' for an offline "
            "test model"
        )
    try:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache
        from huggingface_hub.errors import EntryNotFoundError, GatedRepoError, RepositoryNotFoundError
    except ImportError as exc:  # pragma: no cover - transformers depends on huggingface_hub
        raise ModelLoadError(f"cannot look up {spec!r}: huggingface_hub is not installed") from exc
    cached = try_to_load_from_cache(spec, filename)
    if isinstance(cached, str):
        return json.loads(Path(cached).read_text())
    if _offline_mode() or not hub_reachable():
        why = "HF_HUB_OFFLINE is set" if _offline_mode() else "the Hugging Face hub cannot be reached (no network?)"
        raise ModelLoadError(
            f"cannot load {spec!r}: there is no folder of that name in {os.getcwd()} (the working directory), "
            f"it is not in the local hub cache, and {why}; {_relative_hint(spec)}; if it is a hub model, "
            f"{_local_hint(spec)}"
        )
    try:
        return json.loads(Path(hf_hub_download(spec, filename)).read_text())
    except EntryNotFoundError:
        return None
    except GatedRepoError as exc:
        raise ModelLoadError(
            f"{spec!r} is a gated model: accept its terms on the hub and log in (huggingface-cli login)"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise ModelLoadError(
            f"there is no model {spec!r} on the Hugging Face hub; check the name (e.g. vidore/colqwen2-v1.0)"
        ) from exc
    except Exception as exc:  # a network failure after the probe, a server error, ...
        raise ModelLoadError(
            f"cannot read {filename} of {spec!r}: {type(exc).__name__}: {exc}; {_local_hint(spec)}"
        ) from exc


def detect_family(spec: str) -> tuple[FamilySpec, str, str]:
    """Find the family of a checkpoint from its config (following a PEFT adapter to its base).

    Returns ``(family, model_type, where the config was found)``.
    """
    config = _read_json(spec, "config.json")
    source = spec
    if config is None or not (config.get("model_type") or config.get("architectures")):
        adapter = _read_json(spec, "adapter_config.json")
        base = (adapter or {}).get("base_model_name_or_path")
        if not base:
            raise ModelLoadError(
                f"{spec!r} has neither a config.json with a model_type nor an adapter_config.json naming "
                "its base model; is it a ColPali-family checkpoint?"
            )
        config = _read_json(base, "config.json") or {}
        source = base
    family, model_type = family_for_config(config, source=repr(source))
    return family, model_type, source


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _default_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def _checkpoint_calibration(spec: str):
    """The calibration a local checkpoint directory carries (``sap_calibration.json``), else None."""
    from ..calibration.calibrate import CHECKPOINT_CALIBRATION, Calibration

    path = Path(spec) / CHECKPOINT_CALIBRATION
    if not path.is_file():
        return None
    try:
        return Calibration.load(path)
    except CalibrationError as exc:
        raise CalibrationError(
            f"{exc}; the checkpoint's own calibration is read whenever no window is given: "
            f"fix or remove {path}, or pass window=..."
        ) from exc


def _resolve_window(
    window: Any, encoder_layers: int, model_type: str, family: FamilySpec, scorable, spec: str
) -> tuple[tuple[int, ...], str]:
    from ..calibration.calibrate import Calibration
    from ..calibration.window import default_window

    source = "calibrated"
    if window is None:
        window = _checkpoint_calibration(spec) if not spec.startswith(TINY_PREFIX) else None
        if window is None:
            return default_window(model_type, encoder_layers, scorable), "default"
        source = "checkpoint calibration"
    if isinstance(window, (str, os.PathLike)) and str(window).endswith(".json"):
        window = Calibration.load(window)
    if isinstance(window, Calibration):
        if window.family != family.name or window.num_layers != encoder_layers:
            raise InvalidInputError(
                f"the calibration was made for a {window.family} model with {window.num_layers} layers, "
                f"not this {family.name} model with {encoder_layers}; calibrate this model instead"
            )
        return tuple(window.window), source
    if isinstance(window, range) or (isinstance(window, Sequence) and not isinstance(window, str)):
        return tuple(window), "given"
    raise InvalidInputError(
        f"window must be None, a list of layer indices, a Calibration or a calibration .json path, got {window!r}"
    )


class _EncoderOnlyNoise(logging.Filter):
    """Drops transformers' "`loss_type=None` was set in the config but it is unrecognized" warning.

    It is about the training loss, which an encoder never computes, and colpali-engine's classes
    always trigger it (TorchScript tracing reads every property). Shown when this library logs at
    INFO (``sap-rag --verbose``).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return logger.isEnabledFor(logging.INFO) or not str(record.msg).startswith("`loss_type=")


def _drop_encoder_only_noise() -> None:
    """Install :class:`_EncoderOnlyNoise` on the logger that emits it (once per process)."""
    target = logging.getLogger("transformers.modeling_utils")
    if not any(isinstance(f, _EncoderOnlyNoise) for f in target.filters):
        target.addFilter(_EncoderOnlyNoise())


def _weight_bytes(spec: str) -> int | None:
    """Bytes of weight files of a local checkpoint or a hub id's cached snapshot; None if unknown."""
    from .compiled import WEIGHT_SUFFIXES, _checkpoint_dir

    folder = _checkpoint_dir(spec)
    if folder is None:
        return None
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))


@contextlib.contextmanager
def _quiet_small_load(spec: str) -> Iterator[None]:
    """transformers' "Loading weights" bar off while a small checkpoint loads (it takes a fraction of a
    second), unless this library logs at INFO (``sap-rag --verbose``). A large or not yet downloaded
    model keeps its bars: there they show real progress."""
    from transformers.utils import logging as hf_logging

    from .compiled import MAX_WEIGHT_BYTES

    size = _weight_bytes(spec)
    quiet = size is not None and size <= MAX_WEIGHT_BYTES and not logger.isEnabledFor(logging.INFO)
    if not quiet or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


def load_encoder(
    spec: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    window: Sequence[int] | Calibration | str | os.PathLike | None = None,
    batch_size: int = 4,
    seed: int = 0,
    **model_kwargs: Any,
) -> PageEncoder:
    """Load a ColPali-family model and its processor as a :class:`PageEncoder`.

    Args:
        spec: a hub id (``"vidore/colqwen2-v1.0"``), a local checkpoint directory, or
            ``"tiny:<family>"`` for a tiny random-weight model built offline (tests and demos
            only: its retrieval quality means nothing). A local directory becomes its absolute
            path (``encoder.spec``, recorded by an index), so the index opens from any folder.
        device: defaults to CUDA when available, else CPU.
        dtype: defaults to bfloat16 on CUDA, float32 on CPU.
        window: the SAP layer window: a list of layers, a ``Calibration`` or its JSON path.
            Default: the window of the checkpoint's own calibration (``sap_calibration.json`` in a
            local checkpoint directory, written by ``sap-rag calibrate --out``), else the known
            window of the backbone, else a depth-proportional one.
        batch_size: pages per forward pass.
        seed: seed of a ``tiny:`` model.
        model_kwargs: passed to the model's ``from_pretrained``.
    """
    if not isinstance(spec, (str, os.PathLike)) or not os.fspath(spec).strip():
        raise InvalidInputError(f"a model spec is a hub id, a local directory or 'tiny:<family>', got {spec!r}")
    spec = resolve_spec(spec)  # a local folder as its absolute path: what describe() and an index record
    _drop_encoder_only_noise()
    torch_device = torch.device(device) if device is not None else _default_device()
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise InvalidInputError("dtype must be a torch dtype or its name ('float32', 'bfloat16', 'float16')")
    torch_dtype = dtype or _default_dtype(torch_device)

    if spec.startswith(TINY_PREFIX):
        from .tiny import build_tiny

        family = get_family(spec[len(TINY_PREFIX) :])
        model, processor = build_tiny(family.name, seed=seed)
        model_type = str(model.config.model_type)
    else:
        family, model_type, _ = detect_family(spec)
        models = import_colpali_engine()
        model_cls = getattr(models, family.model_class)
        processor_cls = getattr(models, family.processor_class)
        logger.info("loading %s from %s", family.display, spec)
        try:
            with _quiet_small_load(spec):
                model = model_cls.from_pretrained(spec, dtype=torch_dtype, attn_implementation="sdpa", **model_kwargs)
                processor = processor_cls.from_pretrained(spec)
        except UnknownFamilyError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"could not load {family.display} from {spec!r}: {type(exc).__name__}: {exc}") from exc
    model = model.to(device=torch_device, dtype=torch_dtype).eval()
    num_layers = len(family.text_model(model).layers)
    scorable = tuple(sorted(family.attention_modules(model)))
    layers, source = _resolve_window(window, num_layers, model_type, family, scorable, spec)
    encoder = PageEncoder(
        model, processor, family, spec=spec, window=layers, batch_size=batch_size, window_source=source
    )
    logger.info("encoder ready: %r", encoder)
    return encoder
