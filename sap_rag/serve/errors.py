"""Errors as JSON: ``{"error": {"type": "InvalidInputError", "message": "one line"}}`` with a status code.

The package's own errors (``SapRagError`` subclasses) keep their class name as ``type`` so the
client raises the same class again; anything unexpected is a 500 with a one-line message, and its
traceback goes only to the server log.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import (
    CalibrationError,
    DimensionMismatchError,
    InvalidInputError,
    MissingDependencyError,
    ModelLoadError,
    NothingToIndexError,
    SapRagError,
    UnknownFamilyError,
    UnreadableInputError,
    WindowError,
)
from ..index.errors import (
    BackendError,
    DocumentNotFoundError,
    EncoderMismatchError,
    IndexClosedError,
    IndexExistsError,
    IndexFormatError,
    IndexLockedError,
    IndexNotFoundError,
    IndexReadOnlyError,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ERROR_TYPES",
    "AuthError",
    "ForbiddenPathError",
    "LimitExceededError",
    "NotFoundError",
    "ServerBusyError",
    "TooManyJobsError",
    "error_body",
    "error_class",
    "one_line",
    "status_of",
]


class LimitExceededError(InvalidInputError):
    """A request is over one of the server's limits (upload size, file count, query length, image size)."""


class ForbiddenPathError(InvalidInputError):
    """A server-side path outside every folder the operator allowed (``--allow-folder``)."""


class ServerBusyError(SapRagError):
    """The server cannot take the request now (too many uploads queued, a search timed out); retry later."""


class TooManyJobsError(ServerBusyError):
    """Too many uploads are waiting to be indexed; retry once some are done."""


class AuthError(SapRagError):
    """The request has no API key or the wrong one."""


class NotFoundError(SapRagError, LookupError):
    """A route, page, job or image that does not exist."""


ERROR_TYPES: dict[str, type[SapRagError]] = {
    cls.__name__: cls
    for cls in (
        SapRagError,
        InvalidInputError,
        UnreadableInputError,
        NothingToIndexError,
        ModelLoadError,
        UnknownFamilyError,
        WindowError,
        DimensionMismatchError,
        CalibrationError,
        MissingDependencyError,
        BackendError,
        DocumentNotFoundError,
        EncoderMismatchError,
        IndexClosedError,
        IndexExistsError,
        IndexFormatError,
        IndexLockedError,
        IndexNotFoundError,
        IndexReadOnlyError,
        LimitExceededError,
        ForbiddenPathError,
        ServerBusyError,
        TooManyJobsError,
        AuthError,
        NotFoundError,
    )
}
"""Every error class a server sends by name (the client maps ``type`` back through this)."""

# Most specific first: the first class the error is an instance of gives the status.
_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (AuthError, 401),
    (LimitExceededError, 413),
    (ForbiddenPathError, 403),
    (DocumentNotFoundError, 404),
    (NotFoundError, 404),
    (IndexNotFoundError, 404),
    (UnreadableInputError, 422),
    (EncoderMismatchError, 409),
    (InvalidInputError, 400),
    (IndexLockedError, 409),
    (IndexReadOnlyError, 409),
    (IndexExistsError, 409),
    (TooManyJobsError, 429),
    (ServerBusyError, 503),
    (IndexClosedError, 503),
)


def status_of(exc: BaseException) -> int:
    """The HTTP status for an error (500 for anything not the caller's mistake)."""
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def one_line(exc: BaseException | str) -> str:
    """The error as one line of printable text (as the CLI prints it), at most 1,000 characters."""
    text = exc if isinstance(exc, str) else str(exc)
    text = " ".join(text.split()) or (type(exc).__name__ if not isinstance(exc, str) else "error")
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= 1000 else text[:997] + "..."


def error_body(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """``(status, JSON body)`` for an error; unexpected errors are logged with their traceback."""
    status = status_of(exc)
    if isinstance(exc, SapRagError) and status < 500:
        kind = type(exc).__name__ if type(exc).__name__ in ERROR_TYPES else _known_base(exc)
        return status, {"error": {"type": kind, "message": one_line(exc)}}
    if isinstance(exc, SapRagError):
        logger.error("request failed: %s", one_line(exc), exc_info=exc)
        return status, {"error": {"type": _known_base(exc), "message": one_line(exc)}}
    logger.error("internal error: %s: %s", type(exc).__name__, one_line(exc), exc_info=exc)
    if isinstance(exc, OSError):  # disk full, permissions: the operator needs the reason, not a trace
        return 500, {"error": {"type": "OSError", "message": one_line(exc)}}
    return 500, {
        "error": {"type": "InternalError", "message": f"internal error ({type(exc).__name__}); see the server log"}
    }


def _known_base(exc: BaseException) -> str:
    for cls in type(exc).__mro__:
        if cls.__name__ in ERROR_TYPES and ERROR_TYPES[cls.__name__] is cls:
            return cls.__name__
    return "SapRagError"


def error_class(name: str) -> type[SapRagError]:
    """The error class a server named in ``type`` (``SapRagError`` for names it does not know)."""
    return ERROR_TYPES.get(name, SapRagError)
