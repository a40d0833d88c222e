"""Multipart uploads streamed straight into a private temporary folder, stopped at the limits.

Nothing is held in memory beyond one chunk, nothing goes to a shared temporary folder, and a
request over a limit is cut off at the limit (``LimitExceededError``, 413) with what it wrote removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, UnreadableInputError
from .errors import LimitExceededError

logger = logging.getLogger(__name__)

__all__ = ["UploadedFile", "Uploads", "private_dir", "receive_multipart", "remove_stale_uploads", "safe_name"]

UPLOAD_PREFIX = "sap-rag-upload-"
"""Upload folders are ``{UPLOAD_PREFIX}{owner pid}-{random}`` in the temporary folder."""
_STALE = re.compile(re.escape(UPLOAD_PREFIX) + r"([1-9][0-9]{0,9})-[A-Za-z0-9_]+")

MAX_FIELD_BYTES = 64 * 1024
"""Largest plain form field (metadata JSON, a filter)."""

MAX_NAME_CHARS = 200


@dataclass(frozen=True)
class UploadedFile:
    """One uploaded file on disk: the form field, the name the client gave (made safe), its path and size."""

    field: str
    name: str
    path: Path
    size: int


@dataclass
class Uploads:
    """A parsed multipart request: files written under ``folder`` and the plain fields."""

    folder: Path
    files: list[UploadedFile] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)

    def remove(self) -> None:
        """Delete the folder and every file in it (idempotent)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def private_dir(prefix: str = UPLOAD_PREFIX) -> Path:
    """A new folder only this user can read (``tempfile.mkdtemp`` makes it mode 0700), named after this
    process (``{prefix}{pid}-{random}``) so a later server can tell it was left by a killed one."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # another user's process (EPERM) or the question could not be asked: keep its folder
        return True
    return True


def remove_stale_uploads(root: str | os.PathLike | None = None) -> int:
    """Remove upload folders left in ``root`` (default: the temporary folder) by a server that was killed.

    A folder is removed only when it is a real folder (not a link), owned by this user, named
    ``sap-rag-upload-{pid}-...``, and no process ``pid`` exists any more; a live server's folder and
    anything else are left alone. Removal never follows links (``shutil.rmtree`` works on file
    descriptors on Linux). If the pid was reused by an unrelated process, the folder is kept (the safe side).

    Returns:
        How many folders were removed.
    """
    if os.name != "posix":  # os.kill(pid, 0) would end the process on Windows; there is no safe check
        return 0
    root = Path(root if root is not None else tempfile.gettempdir())
    removed = 0
    try:
        entries = list(os.scandir(root))
    except OSError as exc:
        logger.warning("could not look for stale uploads in %s: %s", root, exc)
        return 0
    for entry in entries:
        match = _STALE.fullmatch(entry.name)
        if match is None:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or _process_alive(int(match.group(1))):
            continue
        try:
            shutil.rmtree(entry.path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            logger.warning("could not remove the stale upload folder %s: %s", entry.path, exc)
            continue
        removed += 1
    if removed:
        logger.info("removed %d upload folder(s) left by a server that was stopped mid-upload", removed)
    return removed


def safe_name(raw: str) -> str:
    """A client's file name reduced to a plain base name: no folders, no control characters, not hidden.

    >>> safe_name("../../etc/passwd"), safe_name("C:\\\\docs\\\\report.pdf"), safe_name(".."), safe_name("a\\x00b.png")
    ('passwd', 'report.pdf', 'upload', 'ab.png')
    """
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    name = name.lstrip(".").strip()
    if len(name) > MAX_NAME_CHARS:
        stem, dot, suffix = name.rpartition(".")
        name = (
            (stem[: MAX_NAME_CHARS - len(suffix) - 1] + dot + suffix)
            if dot and len(suffix) < 16
            else name[:MAX_NAME_CHARS]
        )
    return name or "upload"


async def receive_multipart(
    request: Any,
    *,
    file_fields: tuple[str, ...],
    max_files: int,
    max_file_bytes: int,
    max_request_bytes: int,
    what: str = "upload",
) -> Uploads:
    """Parse a ``multipart/form-data`` request, writing its files into a new private folder.

    Args:
        request: a Starlette request.
        file_fields: the form fields that may hold files (others are refused).
        max_files: most files.
        max_file_bytes: largest file.
        max_request_bytes: largest body.

    Raises:
        LimitExceededError: over a limit (the folder is removed).
        InvalidInputError: not multipart form data, or malformed.
    """
    from python_multipart.multipart import MultipartParser, parse_options_header

    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise InvalidInputError(f"the {what} must be sent as multipart/form-data (files in the form field 'files')")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_request_bytes:
        raise LimitExceededError(
            f"the request is {int(declared):,} bytes; this server takes at most {max_request_bytes:,} bytes per request"
        )
    out = Uploads(folder=private_dir())
    state: dict[str, Any] = {"header": b"", "value": b"", "headers": {}, "file": None, "data": bytearray()}

    def on_part_begin() -> None:
        state.update(headers={}, file=None, data=bytearray(), size=0, info=None)

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["header"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["header"].lower()] = state["value"]
        state["header"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        _, options = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = _text(options.get(b"name", b""), "a form field name")
        state["name"] = name
        if b"filename" not in options:
            return
        if name not in file_fields:
            raise InvalidInputError(f"files go in the form field {file_fields[0]!r}, not {name!r}")
        if len(out.files) >= max_files:
            raise LimitExceededError(f"too many files: this server takes at most {max_files} per request")
        client_name = _text(options[b"filename"], "the file name", unreadable=True)
        slot = out.folder / f"{len(out.files):05d}"
        slot.mkdir(mode=0o700)
        path = slot / safe_name(client_name)
        handle = open(path, "xb")
        state["file"] = handle
        state["info"] = (name, path.name, path)

    def on_part_data(data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if state["file"] is None:
            if len(state["data"]) + len(chunk) > MAX_FIELD_BYTES:
                raise LimitExceededError(f"the form field {state.get('name')!r} is over {MAX_FIELD_BYTES:,} bytes")
            state["data"].extend(chunk)
            return
        state["size"] += len(chunk)
        if state["size"] > max_file_bytes:
            raise LimitExceededError(
                f"{state['info'][1]}: over {max_file_bytes:,} bytes, the largest file this server takes"
            )
        state["file"].write(chunk)

    def on_part_end() -> None:
        if state["file"] is None:
            out.fields[state["name"]] = _text(bytes(state["data"]), f"the form field {state['name']!r}")
            return
        state["file"].close()
        field_name, name, path = state["info"]
        out.files.append(UploadedFile(field_name, name, path, state["size"]))
        state["file"] = None

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
    }
    received = 0
    try:
        parser = MultipartParser(params[b"boundary"], callbacks)
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_request_bytes:
                raise LimitExceededError(f"the request is over {max_request_bytes:,} bytes, the most this server takes")
            parser.write(chunk)
        parser.finalize()
    except BaseException as exc:
        if state.get("file") is not None:
            with contextlib.suppress(OSError):
                state["file"].close()
        out.remove()
        if isinstance(exc, (InvalidInputError, LimitExceededError)):
            raise
        if isinstance(exc, Exception) and type(exc).__module__.startswith("python_multipart"):
            raise InvalidInputError(f"malformed multipart form data: {exc}") from None
        raise
    return out


def _text(raw: bytes, what: str, *, unreadable: bool = False) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        label = raw.decode("utf-8", "backslashreplace")
        error = UnreadableInputError if unreadable else InvalidInputError
        raise error(f"{label}: {what} is not valid UTF-8; rename the file or send UTF-8") from None


def remove_quietly(path: str | os.PathLike) -> None:
    """Remove a folder tree, logging (not raising) a failure."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("could not remove %s: %s", path, exc)
