"""A bus that keeps what it is told, for tests of one service's rules without a NATS server
(the janitor's expiry, for instance). It speaks `kazru.adapters.bus.Bus`'s vocabulary, nothing more."""

from __future__ import annotations

from kazru.adapters.bus import QueueState


class RecordingBus:
    def __init__(self) -> None:
        self.published: list[str] = []  # job ids of JobUploaded messages
        self.removed: list[int] = []  # stream sequences taken off the queue
        self.cancelled: list[str] = []
        self.finished: list[tuple[str, str, str]] = []  # (job id, state, error code)
        self.progress: list[tuple[str, int]] = []  # (job id, percent)

    async def publish_uploaded(self, event) -> int:
        self.published.append(event.job_id)
        return len(self.published)

    async def remove_queued(self, sequence: int) -> bool:
        self.removed.append(sequence)
        return True

    async def announce_cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)

    async def announce_finished(self, job_id: str, state: str, error_code: str = "", error_message: str = "") -> None:
        self.finished.append((job_id, str(state), error_code or ""))

    async def publish_progress(self, event) -> None:
        self.progress.append((event.job_id, event.progress))

    async def queue_state(self) -> QueueState:
        return QueueState(0, 0, 0)
