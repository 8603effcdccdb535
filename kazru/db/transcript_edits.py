"""What a person may change in a finished transcript: speaker names, merges, a segment's text, language
and speaker (the last also splits a merge back, turn by turn).

Every edit runs in the caller's transaction and first locks the job's row
(SELECT ... FOR UPDATE), so concurrent edits of one job queue up instead of
overwriting each other, and none can interleave with a deletion. Another
owner's job is NOT_FOUND, as everywhere.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kazru.db import jobs
from kazru.db.models import Job, Segment, Speaker, Word
from kazru.domain import errors
from kazru.domain.language_shares import language_shares
from kazru.domain.transcript_edits import MAX_SEGMENT_INDEX, check_speaker_label, text_after_edit


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


async def rename_speakers(session: AsyncSession, job_id: str, owner_id: str, cleaned: dict[str, str]) -> None:
    """Give speakers names ({"S1": "Aigerim"}, cleaned by `kazru.domain.transcript_edits`); a name equal to the
    label clears it."""
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
    """Set a segment's text (cleaned; timing kept), or with `text=None` restore the machine's text
    (`kazru.domain.transcript_edits.text_after_edit`)."""
    job = await lock_editable_job(session, job_id, owner_id)
    segment = await _locked_segment(session, job, index)
    segment.text, segment.original_text = text_after_edit(segment.text, segment.original_text, text)
    return segment


async def set_segment_language(session: AsyncSession, job_id: str, owner_id: str, index: int, language: str) -> Segment:
    """Correct a segment's language (a wrong KK/RU badge; a supported one, checked by the caller); the job's
    language shares and main language follow."""
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
    check_speaker_label(label, speakers)
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
