"""Renderers: a finished job and its segments → the pieces of a file, in order.

Each renderer is a generator of str, so the exporter streams large
transcripts without building them whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import PurePath

from kazru.db.models import Job, Segment


@dataclass(frozen=True)
class RenderOptions:
    timestamps: bool = True


@dataclass(frozen=True)
class Format:
    extension: str
    content_type: str


TXT = Format("txt", "text/plain; charset=utf-8")
JSON = Format("json", "application/json")


def clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def export_filename(job: Job, fmt: Format) -> str:
    stem = PurePath(job.filename).stem or "transcript"
    return f"{stem}.{fmt.extension}"


def render_txt(job: Job, segments: Iterable[Segment], options: RenderOptions) -> Iterator[str]:
    for segment in segments:
        prefix = f"[{clock(segment.start_seconds)}] " if options.timestamps else ""
        speaker = f"{segment.speaker}: " if segment.speaker else ""
        yield f"{prefix}{speaker}{segment.text}\n"


def render_json(job: Job, segments: Iterable[Segment], options: RenderOptions) -> Iterator[str]:
    header = {
        "job_id": str(job.id),
        "filename": job.filename,
        "created_at": job.created_at.isoformat(),
        "duration_seconds": job.duration_seconds,
        "language": job.detected_language,
    }
    yield json.dumps(header, ensure_ascii=False)[:-1] + ', "segments": ['
    for index, segment in enumerate(segments):
        item = {
            "index": segment.position,
            "start": segment.start_seconds,
            "end": segment.end_seconds,
            "speaker": segment.speaker,
            "language": segment.language,
            "confidence": segment.confidence,
            "text": segment.text,
        }
        yield ("," if index else "") + json.dumps(item, ensure_ascii=False)
    yield "]}\n"
