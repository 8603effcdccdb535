"""What every engine that runs on this machine shares: its recognition is blocking numerical work, run in a
worker thread so the worker's event loop keeps heartbeating the job, and it keeps no copy anywhere else."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np

from kazru.domain.recognition import ExternalCopyCallback, ProgressCallback, Recognition, RecordedAudio, SpeechRegion


class LocalEngine:
    """The `SpeechEngine` protocol's asynchronous half for a local engine; subclasses write `recognize_blocking`."""

    async def recognize(
        self,
        audio: np.ndarray | RecordedAudio,
        languages: Sequence[str],
        regions: Sequence[SpeechRegion],
        on_progress: ProgressCallback,
        on_external_copy: ExternalCopyCallback | None = None,
    ) -> Recognition:
        del on_external_copy  # everything stays on this machine
        return await asyncio.to_thread(self.recognize_blocking, audio, languages, regions, on_progress)

    async def forget(self, external_operation_id: str) -> None:
        """Nothing is kept outside our own storage."""

    def recognize_blocking(
        self,
        audio: np.ndarray | RecordedAudio,
        languages: Sequence[str],
        regions: Sequence[SpeechRegion],
        on_progress: ProgressCallback,
    ) -> Recognition:
        raise NotImplementedError
