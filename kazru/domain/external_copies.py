"""Forgetting the copy of a job an external engine keeps: a port, so ending a job's life
(`kazru.jobs.retention`) does not depend on which engine ran it.

The gateway's and the janitor's composition roots pass `for_engine(settings)` (its adapter is
chosen in `kazru.adapters.engine_copies`); the transcriber deletes its own copies through its
engine. The local engine keeps nothing outside our storage.
"""

from __future__ import annotations

from typing import Protocol


class ExternalCopies(Protocol):
    async def forget(self, external_operation_id: str) -> bool:
        """Delete the provider's copy of one job: True once it is gone, False if this engine cannot
        (the id then stays on the job, and the engine-copies alert counts it). Raises on failure."""
        ...

    async def close(self) -> None: ...


class NoExternalCopies:
    """The local engine: nothing is kept outside our own storage."""

    async def forget(self, external_operation_id: str) -> bool:
        return False  # a copy left by SpeechKit before the service was switched to Whisper stays counted

    async def close(self) -> None:
        return None


NO_EXTERNAL_COPIES = NoExternalCopies()
