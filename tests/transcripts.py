"""Finished transcripts written straight into PostgreSQL, as the transcriber would write them.

The exporter and the gateway read exactly these rows (jobs, speakers, segments,
words), so tests and the export benchmark can give them any transcript without
running the speech engine. `synthetic` makes a long, deterministic one.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kazru.db.models import Job, JobState, Segment, Speaker, Word

KAZAKH_LETTERS = "әғқңөұүһі"
VOCABULARY = (
    "сәлем қалайсыз рахмет бүгін ауа райы өте жақсы біз қазір жиналыста отырмыз жоба "
    "туралы сөйлесейік жұмыс үйге құжат өңір ғылым һәм үлкен іс тоқсан екі мың "
    "привет как дела сегодня погода очень хорошая мы обсуждаем проект отчёт встреча "
    "завтра договорились конечно спасибо вопрос ответ бюджет Алматы Астана"
).split()


@dataclass
class WordSpec:
    start: float
    end: float
    text: str
    probability: float = 0.9


@dataclass
class SegmentSpec:
    start: float
    end: float
    text: str
    speaker: str | None = "S1"
    language: str = "kk"
    confidence: float = 0.9
    words: list[WordSpec] = field(default_factory=list)
    original_text: str | None = None


def segment_of_words(speaker: str | None, words: list[WordSpec], language: str = "kk") -> SegmentSpec:
    return SegmentSpec(
        start=words[0].start, end=words[-1].end, text=" ".join(w.text for w in words),
        speaker=speaker, language=language, words=words,
    )  # fmt: skip


def synthetic(
    word_count: int = 30_000, speakers: int = 6, seconds: float = 3 * 3600.0, seed: int = 4
) -> list[SegmentSpec]:
    """A conversation of `word_count` words over `seconds`: turns of 3-25 words, sentence ends, pauses."""
    rng = random.Random(seed)
    pace = seconds / word_count  # seconds per word, pauses included
    segments: list[SegmentSpec] = []
    clock, made, speaker = 0.0, 0, 1
    while made < word_count:
        size = min(rng.randint(3, 25), word_count - made)
        if rng.random() < 0.6:
            speaker = rng.choice([s for s in range(1, speakers + 1) if s != speaker] or [speaker])
        words = []
        for index in range(size):
            text = rng.choice(VOCABULARY)
            if index == size - 1 or rng.random() < 0.08:
                text += rng.choice(".?!,")
            length = pace * rng.uniform(0.5, 0.95)
            words.append(WordSpec(round(clock, 3), round(clock + length, 3), text, rng.uniform(0.5, 1.0)))
            clock += pace * rng.uniform(0.9, 1.0)
        clock += pace * rng.uniform(0.0, 2.0)  # pause between turns
        language = "ru" if rng.random() < 0.4 else "kk"
        segments.append(segment_of_words(f"S{speaker}", words, language))
        made += size
    return segments


async def insert_transcript(
    sessions: async_sessionmaker[AsyncSession],
    segments: list[SegmentSpec],
    owner_id: str = "tests",
    filename: str = "сұхбат_әңгіме.flac",
    names: dict[str, str] | None = None,
    state: JobState = JobState.SUCCEEDED,
) -> uuid.UUID:
    """A finished job with these segments, their words and per-speaker statistics; returns the job id."""
    job_id = uuid.uuid4()
    now = datetime.now(UTC)
    duration = max((s.end for s in segments), default=0.0)
    stats: dict[str, list[float]] = {}
    for segment in segments:
        if segment.speaker:
            entry = stats.setdefault(segment.speaker, [0.0, 0])
            entry[0] += segment.end - segment.start
            entry[1] += 1
    async with sessions.begin() as session:
        session.add(Job(
            id=job_id, owner_id=owner_id, state=state, progress=100, filename=filename, content_type="audio/flac",
            size_bytes=1000, object_key=f"jobs/{job_id}", container="flac", duration_seconds=duration,
            languages=["kk", "ru"], detected_language="kk", speaker_count=len(stats), engine="whisper",
            engine_model="whisper-base",
            finished_at=now, expires_at=now + timedelta(hours=24),
        ))  # fmt: skip
        await session.flush()
        if stats:
            await session.execute(insert(Speaker), [
                {"job_id": job_id, "label": label, "name": (names or {}).get(label), "speaking_seconds": seconds,
                 "segment_count": count}
                for label, (seconds, count) in sorted(stats.items(), key=lambda item: int(item[0][1:]))
            ])  # fmt: skip
        if segments:
            await session.execute(insert(Segment), [
                {"job_id": job_id, "position": position, "start_seconds": s.start, "end_seconds": s.end,
                 "text": s.text, "language": s.language, "confidence": s.confidence, "speaker": s.speaker,
                 "original_text": s.original_text}
                for position, s in enumerate(segments)
            ])  # fmt: skip
        rows = [
            {"job_id": job_id, "segment_position": position, "position": 0, "start_seconds": w.start,
             "end_seconds": w.end, "text": w.text, "probability": w.probability, "speaker": s.speaker}
            for position, s in enumerate(segments) for w in s.words
        ]  # fmt: skip
        for number, row in enumerate(rows):
            row["position"] = number
        if rows:
            await session.execute(insert(Word), rows)
    return job_id
