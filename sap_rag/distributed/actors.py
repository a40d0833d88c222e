"""The actors a job starts, named so the job itself can stop them when it ends."""

from __future__ import annotations

import logging
import uuid
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["MAX_RESTARTS", "JobActors"]

MAX_RESTARTS = 3
"""Restarts of a dead actor (and retries of its batch) before the job fails."""


class JobActors:
    """Names every actor the job's pools start (through Ray Data's ``ray_remote_args_fn``).

    Ray Data lets a finished or failed pool's actors go by reference counting only; after a
    failure the exception's traceback still holds the executor, so while a caller keeps the
    exception (a retry loop, pytest's ``raises``) the actors would keep their CPUs, and a rerun's
    render tasks would wait for CPUs forever. :meth:`stop` kills them by name when the job ends.
    """

    def __init__(self) -> None:
        self.prefix = f"sap-rag-{uuid.uuid4().hex[:12]}"
        self.names: list[str] = []

    def remote_args(self) -> dict[str, Any]:
        """Ray remote options of one new actor: a bounded number of restarts, and a name."""
        name = f"{self.prefix}-{len(self.names)}"
        self.names.append(name)
        return {"max_restarts": MAX_RESTARTS, "max_task_retries": MAX_RESTARTS, "name": name}

    def stop(self, ray: Any) -> None:
        """Kill every actor of the job still alive (not restarted)."""
        for name in self.names:
            try:
                handle = ray.get_actor(name)
            except ValueError:  # already gone
                continue
            ray.kill(handle, no_restart=True)
            logger.debug("stopped actor %s", name)
        self.names.clear()
