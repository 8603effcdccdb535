"""What a person may change in a finished transcript: speaker names, merges, a segment's text, language
and speaker (the last also splits a merge back, turn by turn).

Every edit runs in the caller's transaction and first locks the job's row
(SELECT ... FOR UPDATE), so concurrent edits of one job queue up instead of
overwriting each other, and none can interleave with a deletion. Another
owner's job is NOT_FOUND, as everywhere.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kazru.db import jobs
from kazru.db.models import Job, Segment, Speaker, Word
from kazru.domain import errors
from kazru.domain.language_shares import language_shares

MAX_SPEAKER_NAME_CHARS = 100
MAX_SEGMENT_TEXT_CHARS = 10_000
# segments.position is a 32-bit integer: a larger index cannot exist.
MAX_SEGMENT_INDEX = 2**31 - 1
# A speaker a segment is moved to that the job does not have yet gets a label of the diarizer's kind.
NEW_SPEAKER_LABEL = re.compile(r"S[1-9][0-9]?")


def _has_control_characters(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def _has_lone_surrogates(text: str) -> bool:
    """JSON may escape half of a UTF-16 pair alone ("\\ud800"); that is no character, and neither the
    database nor any export can store it."""
    return any(unicodedata.category(ch) == "Cs" for ch in text)


def clean_speaker_name(raw: str, label: str) -> str:
    """Trimmed, 1-100 characters, no control characters; else a clear INVALID_ARGUMENT."""
    name = raw.strip()
    details = {"speaker": label[:32]}
    if not name:
        raise errors.InvalidArgument(f"the name for {label[:32]} is empty", code="SPEAKER_NAME_EMPTY", details=details)
    if len(name) > MAX_SPEAKER_NAME_CHARS:
        raise errors.InvalidArgument(
            f"the name for {label[:32]} has {len(name)} characters; at most {MAX_SPEAKER_NAME_CHARS} are allowed",
            code="SPEAKER_NAME_TOO_LONG",
            details=details,
        )
    if _has_control_characters(name):
        raise errors.InvalidArgument(
            f"the name for {label[:32]} contains control characters", code="SPEAKER_NAME_INVALID", details=details
        )
    if _has_lone_surrogates(name):
        raise errors.InvalidArgument(
            f"the name for {label[:32]} contains half of a UTF-16 surrogate pair, which is not a character",
            code="SPEAKER_NAME_INVALID",
            details=details,
        )
    return name


def clean_segment_text(raw: str) -> str:
    """Whitespace (line breaks, tabs) collapsed to single spaces; at most 10 000 characters.

    Empty text is allowed: it removes a segment's words from the exports (e.g. a
    hallucination over noise) while keeping the machine's text recoverable.
    """
    if len(raw) > MAX_SEGMENT_TEXT_CHARS:
        raise errors.InvalidArgument(
            f"the text has {len(raw)} characters; at most {MAX_SEGMENT_TEXT_CHARS} are allowed",
            code="SEGMENT_TEXT_TOO_LONG",
        )
    text = " ".join(raw.split())
    if _has_control_characters(text):
        raise errors.InvalidArgument("the text contains control characters", code="SEGMENT_TEXT_INVALID")
    if _has_lone_surrogates(text):
        raise errors.InvalidArgument(
            "the text contains half of a UTF-16 surrogate pair, which is not a character", code="SEGMENT_TEXT_INVALID"
        )
    return text


async def lock_editable_job(session: AsyncSession, job_id: str, owner_id: str) -> Job:
    """The owner's finished job, its row locked until the transaction ends."""
    job = await session.scalar(
        select(Job)
        .where(Job.id == jobs.parse_job_id(job_id))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if job is None or job.owner_id != owner_id:
        raise errors.NotFound("job not found", code="JOB_NOT_FOUND", details={"job_id": job_id})
    jobs.require_transcript(job)
    # Kept only if the edit commits; an edited transcript is no longer the machine's to reuse.
    job.transcript_edited_at = datetime.now(UTC)
    return job


def _speaker_not_found(job: Job, label: str) -> errors.NotFound:
    return errors.NotFound(
        f"the job has no speaker '{label[:32]}'",
        code="SPEAKER_NOT_FOUND",
        details={"job_id": str(job.id), "speaker": label[:32]},
    )


async def _speakers(session: AsyncSession, job: Job) -> dict[str, Speaker]:
    found = await session.scalars(select(Speaker).where(Speaker.job_id == job.id))
    return {speaker.label: speaker for speaker in found}


async def rename_speakers(session: AsyncSession, job_id: str, owner_id: str, names: dict[str, str]) -> None:
    """Give speakers names ({"S1": "Aigerim"}); a name equal to the label clears it."""
    if not names:
        raise errors.InvalidArgument("name at least one speaker", code="SPEAKERS_EMPTY")
    cleaned = {label: clean_speaker_name(name, label) for label, name in names.items()}
    job = await lock_editable_job(session, job_id, owner_id)
    speakers = await _speakers(session, job)
    for label in cleaned:
        if label not in speakers:
            raise _speaker_not_found(job, label)
    for label, name in cleaned.items():
        speakers[label].name = None if name == label else name


async def merge_speaker(session: AsyncSession, job_id: str, owner_id: str, speaker: str, into: str) -> None:
    """Relabel `speaker`'s segments and words as `into` and remove `speaker`.

    Adjacent segments that now share a speaker stay separate segments (their
    timings and edits are kept); the exports group them into one turn. The
    statistics are the sums of both speakers', as the transcriber computed them.
    """
    if speaker == into:
        raise errors.InvalidArgument("a speaker cannot be merged into itself", code="MERGE_INTO_SELF")
    job = await lock_editable_job(session, job_id, owner_id)
    speakers = await _speakers(session, job)
    for label in (speaker, into):
        if label not in speakers:
            raise _speaker_not_found(job, label)
    for table in (Segment, Word):
        await session.execute(
            update(table)
            .where(table.job_id == job.id, table.speaker == speaker)
            .values(speaker=into)
            .execution_options(synchronize_session=False)
        )
    merged, target = speakers[speaker], speakers[into]
    target.speaking_seconds += merged.speaking_seconds
    target.segment_count += merged.segment_count
    await session.execute(delete(Speaker).where(Speaker.id == merged.id).execution_options(synchronize_session=False))
    job.speaker_count = len(speakers) - 1


async def _locked_segment(session: AsyncSession, job: Job, index: int) -> Segment:
    segment = None
    if 0 <= index <= MAX_SEGMENT_INDEX:
        segment = await session.scalar(
            select(Segment).where(Segment.job_id == job.id, Segment.position == index).with_for_update()
        )
    if segment is None:
        raise errors.NotFound(
            f"the transcript has no segment {index}",
            code="SEGMENT_NOT_FOUND",
            details={"job_id": str(job.id), "segment": str(index)},
        )
    return segment


async def edit_segment(session: AsyncSession, job_id: str, owner_id: str, index: int, text: str | None) -> Segment:
    """Set a segment's text (timing kept), or with `text=None` restore the machine's text.

    The machine's text is stored once, at the first edit; a later edit keeps it, and
    text equal to it clears the edited state.
    """
    new_text = None if text is None else clean_segment_text(text)
    job = await lock_editable_job(session, job_id, owner_id)
    segment = await _locked_segment(session, job, index)
    machine_text = segment.original_text if segment.original_text is not None else segment.text
    if new_text is None or new_text == machine_text:
        segment.text, segment.original_text = machine_text, None
    else:
        segment.text, segment.original_text = new_text, machine_text
    return segment


async def set_segment_language(
    session: AsyncSession, job_id: str, owner_id: str, index: int, language: str, supported: tuple[str, ...]
) -> Segment:
    """Correct a segment's language (a wrong KK/RU badge); the job's language shares and main language follow."""
    language = language.strip().lower()
    if language not in supported:
        raise errors.InvalidArgument(
            f"unsupported language '{language[:8]}'; supported: {', '.join(supported)}", code="INVALID_LANGUAGE"
        )
    job = await lock_editable_job(session, job_id, owner_id)
    segment = await _locked_segment(session, job, index)
    segment.language = language
    await session.flush()
    spans = await session.execute(
        select(Segment.language, Segment.end_seconds - Segment.start_seconds).where(Segment.job_id == job.id)
    )
    job.language_shares = language_shares((row[0], row[1]) for row in spans)
    job.detected_language = next(iter(job.language_shares), None)
    return segment


async def set_segment_speaker(session: AsyncSession, job_id: str, owner_id: str, index: int, label: str) -> Segment:
    """Give a segment (and its words) to another speaker: an existing one, or a new label such as the one a
    merge removed (so a merge can be split back). A speaker left without segments is removed."""
    job = await lock_editable_job(session, job_id, owner_id)
    segment = await _locked_segment(session, job, index)
    speakers = await _speakers(session, job)
    if label not in speakers and not NEW_SPEAKER_LABEL.fullmatch(label):
        raise errors.InvalidArgument(
            f"'{label[:32]}' is neither a speaker of the job nor a new label S1-S99", code="SPEAKER_LABEL_INVALID"
        )
    previous = segment.speaker
    if previous == label:
        return segment
    length = max(segment.end_seconds - segment.start_seconds, 0.0)
    target = speakers.get(label)
    if target is None:
        target = Speaker(job_id=job.id, label=label, speaking_seconds=0.0, segment_count=0)
        session.add(target)
    target.speaking_seconds += length
    target.segment_count += 1
    if previous in speakers:
        source = speakers[previous]
        source.speaking_seconds = max(source.speaking_seconds - length, 0.0)
        source.segment_count -= 1
        if source.segment_count <= 0:
            await session.delete(source)
    segment.speaker = label
    await session.execute(
        update(Word)
        .where(Word.job_id == job.id, Word.segment_position == segment.position)
        .values(speaker=label)
        .execution_options(synchronize_session=False)
    )
    await session.flush()
    job.speaker_count = len(await _speakers(session, job))
    return segment


async def segment_words(session: AsyncSession, segment: Segment) -> list[Word]:
    found = await session.scalars(
        select(Word)
        .where(Word.job_id == segment.job_id, Word.segment_position == segment.position)
        .order_by(Word.position)
    )
    return list(found)
