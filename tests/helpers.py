"""Small helpers the integration and e2e tests share."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from kazru.adapters.storage import ObjectStore
from kazru.db.models import Job


def wav_header(data_bytes: int, sample_rate: int = 16000, channels: int = 1) -> bytes:
    byte_rate = sample_rate * channels * 2
    return (
        b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, byte_rate, channels * 2, 16)
        + b"data" + struct.pack("<I", data_bytes)
    )  # fmt: skip


def silent_wav_chunks(total_bytes: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    """A valid silent WAV of exactly `total_bytes`, produced piece by piece (never whole)."""
    header = wav_header(total_bytes - 44)
    yield header
    remaining = total_bytes - len(header)
    zeros = bytes(chunk)
    while remaining > 0:
        piece = min(chunk, remaining)
        yield zeros[:piece]
        remaining -= piece


async def aiter_of(pieces) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


@asynccontextmanager
async def running(worker, stop_timeout: float) -> AsyncIterator[None]:
    """`worker.run(stop)` as a background task for the body; then stopped, waiting at most `stop_timeout` s."""
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, stop_timeout)


async def leftovers(store: ObjectStore, sessions) -> dict[str, int]:
    """Everything an upload could leave behind: objects, unfinished multipart uploads, job rows."""
    objects = await store.list_objects("jobs/")
    multipart = store._client._list_multipart_uploads(store.bucket).uploads  # test-only peek
    async with sessions() as session:
        rows = await session.scalar(select(func.count()).select_from(Job))
    return {"objects": sorted(name for name, _ in objects), "multipart_uploads": len(multipart), "jobs": rows}


async def queued_messages(bus, settings) -> int:
    info = await bus.js.stream_info(settings.jobs_stream)
    return info.state.messages


async def messages_left_after_acks(bus, settings, settle_seconds: float = 5.0) -> int:
    """Messages left once in-flight acks have landed: the worker acks only after its commit,
    so a job can read SUCCEEDED or FAILED a moment before its message leaves the stream."""
    deadline = asyncio.get_running_loop().time() + settle_seconds
    while (left := await queued_messages(bus, settings)) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
    return left


async def store_finished_job(database, store, *, owner="owner-j", state="SUCCEEDED", expires_in_hours=1.0,
                             duration=2.9, billed_seconds=None, extra_objects=("intermediate.pcm",)):  # fmt: skip
    """A job as a worker leaves it: objects under its prefix, segments, words, speakers."""
    import uuid
    from datetime import UTC, datetime, timedelta

    from kazru.db.models import Job, Segment, Speaker, Word

    job_id = uuid.uuid4()
    key = f"jobs/{job_id}/original"
    for name in (key, *(f"jobs/{job_id}/{extra}" for extra in extra_objects)):
        await store.put_stream(name, aiter_of([b"fLaC" + bytes(100)]))
    now = datetime.now(UTC)
    job = Job(id=job_id, owner_id=owner, state=state, progress=100 if state == "SUCCEEDED" else 0, filename="a.flac",
              content_type="audio/flac", size_bytes=104, object_key=key, container="flac", languages=["kk", "ru"],
              duration_seconds=duration, billed_seconds=billed_seconds, created_at=now - timedelta(hours=1),
              expires_at=now + timedelta(hours=expires_in_hours), attempts=1)  # fmt: skip
    async with database.begin() as session:
        session.add(job)
        await session.flush()
        session.add(Segment(job_id=job_id, position=0, start_seconds=0, end_seconds=1, text="сөз", language="kk",
                            confidence=0.5, speaker="S1"))  # fmt: skip
        session.add(Word(job_id=job_id, segment_position=0, position=0, start_seconds=0, end_seconds=1, text="сөз",
                         probability=0.5, speaker="S1"))  # fmt: skip
        session.add(Speaker(job_id=job_id, label="S1", speaking_seconds=1.0, segment_count=1))
    return job


async def remains_of(database, store, job_id) -> dict:
    """What is left of one job: its objects and transcript rows (a tombstone has none)."""
    from kazru.db.models import Segment, Speaker, Word

    objects = [name for name, _ in await store.list_objects(f"jobs/{job_id}/")]
    async with database() as session:
        rows = {
            table.__tablename__: await session.scalar(
                select(func.count()).select_from(table).where(table.job_id == job_id)
            )
            for table in (Segment, Word, Speaker)
        }
    return {"objects": objects, **rows}


async def usage_of_day(database, day) -> dict:
    from kazru.db.models import UsageStats

    async with database() as session:
        row = await session.get(UsageStats, day, populate_existing=True)
    if row is None:
        return {}
    return {name: getattr(row, name) for name in ("files", "audio_seconds", "succeeded", "failed", "cancelled",
                                                   "engine_billed_seconds", "estimated_cost")}  # fmt: skip


def long_speech(path, repeats: int = 1) -> bytes:
    """About a minute of varied speech per repeat (every fixture clip, one after another), as FLAC:
    long enough to act on a job in the middle of its work. (A single clip looped makes Whisper
    hear nothing.)"""
    import subprocess
    from pathlib import Path

    from kazru.adapters.audio import ffmpeg_exe

    clips = sorted((Path(__file__).parent / "fixtures" / "audio").glob("*.flac")) * repeats
    inputs = [arg for clip in clips for arg in ("-i", str(clip))]
    joined = "".join(f"[{n}:a]" for n in range(len(clips))) + f"concat=n={len(clips)}:v=0:a=1"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *inputs, "-filter_complex", joined, "-ac", "1", "-ar", "16000",
                    "-c:a", "flac", str(path)], check=True)  # fmt: skip
    return Path(path).read_bytes()


def load_reference(path: Path) -> dict[str, np.ndarray]:
    """An encoder's reference outputs (tests/fixtures/*_reference.npz), with the clips they were made from."""
    with np.load(path) as stored:
        return dict(stored)


def reference_fixture(name: str):
    """A module-scoped fixture: load_reference of tests/fixtures/`name`, read once per module. Assign it as
    `reference = reference_fixture("<encoder>_reference.npz")`."""

    @pytest.fixture(scope="module")
    def fixture() -> dict[str, np.ndarray]:
        return load_reference(Path(__file__).resolve().parent / "fixtures" / name)

    return fixture


def reference_clip(reference: dict[str, np.ndarray], name: str) -> np.ndarray:
    """The exact 16 kHz waveform in [-1, 1] a reference was computed on (stored as int16 `pcm_<name>`)."""
    return reference[f"pcm_{name}"].astype(np.float32) / 32768.0


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# How people's recordings come: phone recorders (AMR, ADTS AAC), Windows (WMA), Macs (AIFF), and films and TV
# (a picture with sound: MPEG-TS, M2TS, AVI, MKV, MOV). name → (with a picture, ffmpeg's output options); every
# encoder here is in imageio-ffmpeg's build.
RECORDING_FORMATS: dict[str, tuple[bool, list[str]]] = {
    "aac": (False, ["-c:a", "aac", "-f", "adts"]),
    "amr": (False, ["-ar", "8000", "-c:a", "libopencore_amrnb", "-b:a", "12.2k", "-f", "amr"]),
    "aiff": (False, ["-f", "aiff"]),
    "wma": (False, ["-c:a", "wmav2", "-f", "asf"]),
    "ts": (True, ["-c:v", "mpeg2video", "-c:a", "mp2", "-f", "mpegts"]),
    "m2ts": (True, ["-c:v", "mpeg2video", "-c:a", "ac3", "-f", "mpegts", "-mpegts_m2ts_mode", "1"]),
    "avi": (True, ["-c:v", "mpeg4", "-c:a", "pcm_s16le", "-f", "avi"]),
    "mkv": (True, ["-c:v", "mpeg4", "-c:a", "ac3", "-f", "matroska"]),
    "mov": (True, ["-c:v", "mpeg4", "-c:a", "aac", "-f", "mov"]),
}


def encoded(source: Path, name: str, folder: Path) -> bytes:
    """`source` re-encoded as a recording of the kind `name` (RECORDING_FORMATS) by a real ffmpeg:
    imageio-ffmpeg's own build, which is always installed and has the AMR encoder."""
    import subprocess

    import imageio_ffmpeg

    from kazru.adapters.audio import parse_ffmpeg_probe

    with_picture, output = RECORDING_FORMATS[name]
    target = folder / f"recording.{name}"
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    command = [ffmpeg, "-v", "error", "-y"]
    if with_picture:  # a test pattern as input 0, as long as the sound, which is input 1
        # (-shortest instead made files whose length varied from run to run with the encoder's threads)
        listing = subprocess.run([ffmpeg, "-hide_banner", "-i", str(source)], capture_output=True, text=True).stderr
        seconds = parse_ffmpeg_probe(listing).duration_seconds
        command += ["-f", "lavfi", "-i", f"testsrc=size=160x120:rate=25:duration={seconds}", "-i", str(source)]
        command += ["-map", "0:v", "-map", "1:a"]
    else:
        command += ["-i", str(source)]
    subprocess.run([*command, *output, str(target)], check=True)
    return target.read_bytes()
