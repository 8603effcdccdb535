"""Exports and transcript edits through the gateway's domain class and a real exporter gRPC
server (in this process), on real PostgreSQL: every format read by other people's parsers,
edits reflected in every export, owners kept apart, concurrent edits kept."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
import pytest_asyncio
import srt
from sqlalchemy import select

from kazru.adapters.bus import Bus
from kazru.db.models import Job, JobState, Segment, Speaker, Word
from kazru.db.session import create_engine, create_sessionmaker
from kazru.domain import errors, export_formats
from kazru.domain.external_copies import NO_EXTERNAL_COPIES
from kazru.grpc import server as grpc_server
from kazru.v1 import export_pb2, exporter_service_pb2, exporter_service_pb2_grpc
from services.exporter.__main__ import create_server
from services.exporter.grpc_api import ExporterServicer
from services.gateway.core import Gateway, SegmentChange, create_gateway
from tests import export_checks
from tests.transcripts import (
    KAZAKH_LETTERS,
    SegmentSpec,
    WordSpec,
    insert_transcript,
    segment_of_words,
    synthetic,
)

OWNER = "owner-exports"
FORMATS = export_formats.BY_NAME
CONTENT_TYPES = {
    "txt": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "json": "application/json",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}


@pytest_asyncio.fixture(scope="module")
async def gateway(settings, database, store):
    exporter = create_server(
        settings.model_copy(update={"exporter_address": "127.0.0.1:0"}), ExporterServicer(database)
    )
    await exporter.start()
    channel = grpc_server.channel(f"127.0.0.1:{exporter.port}")
    bus = await Bus.connect(settings, "tests-exports")
    # Exports and edits need no ingest: its channel points at the exporter and is never called.
    yield create_gateway(settings, database, bus, store, {"exporter": channel, "ingest": channel}, NO_EXTERNAL_COPIES)
    await bus.close()
    await channel.close()
    await exporter.stop(1)


async def export(gateway: Gateway, job_id, fmt: str, owner: str = OWNER, **options) -> bytes:
    first, rest = await gateway.export(owner, str(job_id), FORMATS[fmt], export_pb2.ExportOptions(**options))
    assert first.content_type == CONTENT_TYPES[fmt]
    assert first.filename.endswith(f".{fmt}")
    return first.data + b"".join([chunk.data async for chunk in rest])


def conversation() -> list:
    """Three speakers, Kazakh and Russian, with word timings."""

    def words(start: float, texts: str) -> list[WordSpec]:
        return [WordSpec(start + i * 0.5, start + i * 0.5 + 0.4, text) for i, text in enumerate(texts.split())]

    return [
        segment_of_words("S1", words(0.0, "Сәлеметсіз бе, бүгін ауа райы қандай?")),
        segment_of_words("S2", words(3.0, "Күн ашық, һәм жылы. Ұлы дала өңірі."), "kk"),
        segment_of_words("S3", words(7.0, "Погода отличная, спасибо."), "ru"),
        segment_of_words("S2", words(9.5, "Ғылым мен іс қатар жүреді."), "kk"),
    ]


async def test_every_format_of_an_empty_transcript(gateway, database):
    job_id = await insert_transcript(database, [], owner_id=OWNER)
    assert await export(gateway, job_id, "txt") == b""
    assert export_checks.parse_srt(await export(gateway, job_id, "srt")) == []
    assert export_checks.parse_vtt(await export(gateway, job_id, "vtt")) == []
    document = export_checks.parse_json(await export(gateway, job_id, "json"))
    assert document["segments"] == [] and document["speakers"] == []
    paragraphs = export_checks.open_docx(await export(gateway, job_id, "docx"))
    assert paragraphs[0] == "сұхбат_әңгіме.flac"


async def test_every_format_of_a_one_word_transcript(gateway, database):
    job_id = await insert_transcript(
        database, [segment_of_words("S1", [WordSpec(1.2, 1.5, "Қош")])], owner_id=OWNER, names={"S1": "Әлия"}
    )
    assert (await export(gateway, job_id, "txt")).decode() == "[00:00:01] Әлия: Қош\n"
    (only,) = export_checks.parse_srt(await export(gateway, job_id, "srt"))
    assert only.content == "Әлия: Қош"
    assert only.start.total_seconds() == 1.2 and only.end.total_seconds() >= 2.2  # held on screen ≥ 1 s
    (cue,) = export_checks.parse_vtt(await export(gateway, job_id, "vtt"))
    assert cue.voice == "Әлия" and cue.text == "Қош"
    document = export_checks.parse_json(await export(gateway, job_id, "json"))
    assert document["segments"][0]["words"][0]["text"] == "Қош"
    assert document["speakers"] == [
        {"id": "S1", "label": "Әлия", "name": "Әлия", "speaking_seconds": pytest.approx(0.3), "segment_count": 1}
    ]
    assert (document["engine"], document["engine_model"]) == ("whisper", "whisper-base")
    paragraphs = export_checks.open_docx(await export(gateway, job_id, "docx"))
    assert "[00:00:01] Әлия: Қош" in paragraphs
    # Which engine and model wrote it: in the document's facts under the title.
    assert "Transcribed by: Whisper (whisper-base)" in paragraphs[1].splitlines()


async def test_three_hour_transcript_in_every_format(gateway, database):
    segments = synthetic()
    job_id = await insert_transcript(
        database, segments, owner_id=OWNER, names={"S1": "Айгерім Нұрланқызы", "S4": "Дәурен"}
    )
    total_words = sum(len(s.words) for s in segments)
    assert total_words == 30_000 and segments[-1].end > 3 * 3600 - 600

    txt = (await export(gateway, job_id, "txt")).decode()
    assert txt.startswith("[00:00:00] ") and "Айгерім Нұрланқызы: " in txt and "Дәурен: " in txt

    subtitles = export_checks.parse_srt(await export(gateway, job_id, "srt"))
    squeezed = export_checks.check_caption_rules(subtitles)
    assert len(subtitles) > 2000
    assert squeezed["under_one_second"] < len(subtitles) * 0.02, squeezed

    cues = export_checks.parse_vtt(await export(gateway, job_id, "vtt"))
    assert [(c.start, c.end) for c in cues] == [
        (
            srt.timedelta_to_srt_timestamp(s.start).replace(",", "."),
            srt.timedelta_to_srt_timestamp(s.end).replace(",", "."),
        )
        for s in subtitles
    ]
    assert {c.voice for c in cues} == {"Айгерім Нұрланқызы", "S2", "S3", "Дәурен", "S5", "S6"}
    # every word once, in order, none cut (VTT's text has no names: they are voice tags)
    assert " ".join(c.text for c in cues).split() == [w.text for s in segments for w in s.words]

    document = export_checks.parse_json(await export(gateway, job_id, "json"))
    assert sum(len(s["words"]) for s in document["segments"]) == total_words
    assert len(document["speakers"]) == 6

    paragraphs = export_checks.open_docx(await export(gateway, job_id, "docx"))
    assert any(p.startswith("[00:00:00] ") for p in paragraphs)

    for fmt in ("txt", "srt", "vtt", "json"):
        text = (await export(gateway, job_id, fmt)).decode()
        assert set(KAZAKH_LETTERS) <= set(text), fmt
    assert set(KAZAKH_LETTERS) <= set("".join(paragraphs))


async def test_edits_show_in_every_export_and_the_machine_text_stays_recoverable(gateway, database):
    job_id = str(await insert_transcript(database, conversation(), owner_id=OWNER))

    async with database() as session:
        assert (await session.get(Job, uuid.UUID(job_id))).transcript_edited_at is None
    _, transcript = await gateway.rename_speakers(OWNER, job_id, {"S1": "  Әйгерім Құрманғалиқызы  ", "S2": "Дәурен"})
    async with database() as session:  # a person's edit: the transcript is no longer the machine's to reuse
        assert (await session.get(Job, uuid.UUID(job_id))).transcript_edited_at is not None
    assert {s.id: s.label for s in transcript.speakers} == {"S1": "Әйгерім Құрманғалиқызы", "S2": "Дәурен", "S3": "S3"}

    _, transcript = await gateway.merge_speaker(OWNER, job_id, "S3", "S2")
    assert [s.id for s in transcript.speakers] == ["S1", "S2"]
    merged = {s.id: s for s in transcript.speakers}["S2"]
    assert merged.segment_count == 3
    spans = [s.end - s.start for s in conversation()]
    assert merged.speaking_seconds == pytest.approx(spans[1] + spans[2] + spans[3])
    assert [s.speaker for s in transcript.segments] == ["S1", "S2", "S2", "S2"]
    assert {w.speaker for w in transcript.segments[2].words} == {"S2"}

    edited = await gateway.edit_segment(OWNER, job_id, 2, SegmentChange("text", "Ауа райы  тамаша,\nрақмет."))
    assert edited.text == "Ауа райы тамаша, рақмет." and edited.edited
    assert edited.original_text == "Погода отличная, спасибо."
    assert (edited.start_seconds, edited.end_seconds) == (7.0, 7.0 + 0.5 * 2 + 0.4)
    again = await gateway.edit_segment(OWNER, job_id, 2, SegmentChange("text", "Ауа райы керемет."))
    assert again.original_text == "Погода отличная, спасибо.", "the machine's text is kept from the first edit"

    txt = (await export(gateway, job_id, "txt")).decode()
    assert "Әйгерім Құрманғалиқызы: Сәлеметсіз бе" in txt
    # S2's three segments in a row are one turn now
    assert "Дәурен: Күн ашық, һәм жылы. Ұлы дала өңірі. Ауа райы керемет. Ғылым мен іс қатар жүреді." in txt
    assert "Погода" not in txt and "S3" not in txt

    subtitles = export_checks.parse_srt(await export(gateway, job_id, "srt"))
    export_checks.check_caption_rules(subtitles)
    srt_text = "\n".join(s.content for s in subtitles)
    assert subtitles[0].content.startswith("Әйгерім Құрманғалиқызы: ")  # a long name stays whole, as in VTT
    assert "Ауа райы керемет." in srt_text and "Погода" not in srt_text
    assert srt_text.count("Дәурен:") == 1, "the name is shown when the speaker changes, not at each segment"
    # the edited text is spread over the segment's own time
    edited_caption = next(s for s in subtitles if "керемет" in s.content)
    assert edited_caption.start.total_seconds() == 7.0

    cues = export_checks.parse_vtt(await export(gateway, job_id, "vtt"))
    assert [c.voice for c in cues][:2] == ["Әйгерім Құрманғалиқызы", "Дәурен"]
    assert any("керемет" in c.text for c in cues)

    document = export_checks.parse_json(await export(gateway, job_id, "json"))
    assert [s["id"] for s in document["speakers"]] == ["S1", "S2"]
    assert document["segments"][2]["edited"] is True
    assert document["segments"][2]["original_text"] == "Погода отличная, спасибо."
    assert document["segments"][2]["text"] == "Ауа райы керемет."
    assert document["segments"][2]["words"][0]["text"] == "Погода", "the machine's words stay"
    assert "Дәурен: " in "\n".join(export_checks.open_docx(await export(gateway, job_id, "docx")))

    # the same text as the machine's clears the edit; revert restores it
    same = await gateway.edit_segment(OWNER, job_id, 2, SegmentChange("text", "Погода отличная, спасибо."))
    assert not same.edited and same.original_text == ""
    await gateway.edit_segment(OWNER, job_id, 1, SegmentChange("text", "Өзгертілген мәтін"))
    reverted = await gateway.edit_segment(OWNER, job_id, 1, SegmentChange("revert"))
    assert reverted.text == "Күн ашық, һәм жылы. Ұлы дала өңірі." and not reverted.edited
    document = export_checks.parse_json(await export(gateway, job_id, "json"))
    assert not any(s["edited"] for s in document["segments"])

    # a name equal to the label clears it
    _, transcript = await gateway.rename_speakers(OWNER, job_id, {"S2": "S2"})
    assert {s.id: s.label for s in transcript.speakers}["S2"] == "S2"
    async with database() as session:
        assert await session.scalar(select(Speaker.name).where(Speaker.label == "S2", Speaker.job_id == job_id)) is None


async def test_long_speaker_names_stay_whole_in_srt(gateway, database):
    """Names are never cut: one that leaves no room for text beside it has the caption's first line to
    itself and the text wraps below it, within the line length."""
    job_id = str(await insert_transcript(database, conversation(), owner_id=OWNER))
    beside = "Айгерим Нурлановна Сейткалиева"  # 30 characters: the first words still fit beside it
    alone = "Дәурен Болатұлы Ахметов-Исмаилов Серік"  # 38: "Name: Күн" is over 42
    await gateway.rename_speakers(OWNER, job_id, {"S1": beside, "S2": alone})

    subtitles = export_checks.parse_srt(await export(gateway, job_id, "srt"))
    export_checks.check_caption_rules(subtitles)
    first_lines = [s.content.split("\n") for s in subtitles]
    assert first_lines[0][0].startswith(f"{beside}: Сәлеметсіз")
    assert first_lines[1] == [f"{alone}:", "Күн ашық, һәм жылы. Ұлы дала өңірі."]
    assert "…" not in "".join(s.content for s in subtitles)
    # Every word is still shown, once and in order.
    shown = " ".join(s.content for s in subtitles).replace(f"{beside}:", "").replace(f"{alone}:", "").replace("S3:", "")
    assert shown.split() == " ".join(segment.text for segment in conversation()).split()
    # VTT says the same names.
    cues = export_checks.parse_vtt(await export(gateway, job_id, "vtt"))
    assert [c.voice for c in cues][:2] == [beside, alone]


async def test_a_corrected_language_shows_in_every_export_and_in_the_jobs_shares(gateway, database):
    job_id = str(await insert_transcript(database, conversation(), owner_id=OWNER))
    corrected = await gateway.edit_segment(OWNER, job_id, 0, SegmentChange("language", "RU"))
    assert corrected.language == "ru"
    job, transcript = await gateway.get_transcript(OWNER, job_id)
    spans = {s.index: s.end_seconds - s.start_seconds for s in transcript.segments}
    russian = (spans[0] + spans[2]) / sum(spans.values())
    assert dict(job.language_shares) == pytest.approx({"ru": russian, "kk": 1 - russian}, abs=1e-3)
    assert job.detected_language == ("ru" if russian > 0.5 else "kk")

    txt = (await export(gateway, job_id, "txt")).decode()
    assert txt.startswith("[00:00:00] S1 (ru): Сәлеметсіз бе") and "S2 (kk): Күн ашық" in txt
    subtitles = export_checks.parse_srt(await export(gateway, job_id, "srt"))
    export_checks.check_caption_rules(subtitles)
    assert subtitles[0].content.startswith("S1 (ru): ")
    vtt = (await export(gateway, job_id, "vtt")).decode()
    assert "<v S1><lang ru>Сәлеметсіз" in vtt and "<lang kk>" in vtt
    export_checks.parse_vtt(vtt.encode())
    document = export_checks.parse_json(await export(gateway, job_id, "json"))
    assert [s["language"] for s in document["segments"]] == ["ru", "kk", "ru", "kk"]
    assert "[00:00:00] S1 (ru): Сәлеметсіз бе, бүгін ауа райы қандай?" in export_checks.open_docx(
        await export(gateway, job_id, "docx")
    )
    with pytest.raises(errors.InvalidArgument) as unsupported:
        await gateway.edit_segment(OWNER, job_id, 0, SegmentChange("language", "de"))
    assert unsupported.value.code == "INVALID_LANGUAGE"


async def test_a_merge_is_split_back_by_giving_segments_to_a_speaker(gateway, database):
    job_id = str(await insert_transcript(database, conversation(), owner_id=OWNER))
    _, before = await gateway.get_transcript(OWNER, job_id)
    await gateway.merge_speaker(OWNER, job_id, "S3", "S2")
    moved = await gateway.edit_segment(OWNER, job_id, 2, SegmentChange("speaker", "S3"))  # S3 is new again
    assert moved.speaker == "S3" and {w.speaker for w in moved.words} == {"S3"}
    job, after = await gateway.get_transcript(OWNER, job_id)
    figures = lambda t: {(s.id, s.segment_count, round(s.speaking_seconds, 3)) for s in t.speakers}  # noqa: E731
    assert figures(after) == figures(before) and job.speaker_count == 3
    assert [s.speaker for s in after.segments] == [s.speaker for s in before.segments]
    # Moving a speaker's only segment away removes the speaker.
    await gateway.edit_segment(OWNER, job_id, 0, SegmentChange("speaker", "S2"))
    job, transcript = await gateway.get_transcript(OWNER, job_id)
    assert [s.id for s in transcript.speakers] == ["S2", "S3"] and job.speaker_count == 2
    with pytest.raises(errors.InvalidArgument) as invalid:
        await gateway.edit_segment(OWNER, job_id, 0, SegmentChange("speaker", "Guest"))
    assert invalid.value.code == "SPEAKER_LABEL_INVALID"


async def test_the_transcript_api_returns_every_stored_field(gateway, database):
    segments = conversation()
    segments.append(SegmentSpec(start=12.0, end=13.0, text="", speaker=None, language="ru"))  # no words, no speaker
    job_id = str(await insert_transcript(database, segments, owner_id=OWNER, names={"S2": "Дәурен"}))
    await gateway.edit_segment(OWNER, job_id, 2, SegmentChange("text", "Погода прекрасная."))
    job, transcript = await gateway.get_transcript(OWNER, job_id)
    assert job.name.endswith(job_id) and transcript.duration_seconds == pytest.approx(13.0)
    assert [(s.id, s.label, s.segment_count) for s in transcript.speakers] == [
        ("S1", "S1", 1), ("S2", "Дәурен", 2), ("S3", "S3", 1)
    ]  # fmt: skip
    assert [s.index for s in transcript.segments] == [0, 1, 2, 3, 4]
    for stored, returned in zip(segments, transcript.segments, strict=True):
        assert (returned.start_seconds, returned.end_seconds) == (stored.start, stored.end)
        assert (returned.language, returned.speaker, returned.confidence) == (
            stored.language, stored.speaker or "", pytest.approx(stored.confidence)
        )  # fmt: skip
        assert [(w.start_seconds, w.end_seconds, w.text, w.speaker) for w in returned.words] == [
            (w.start, w.end, w.text, stored.speaker or "") for w in stored.words
        ]
        assert [w.probability for w in returned.words] == pytest.approx([w.probability for w in stored.words])
    edited = transcript.segments[2]
    assert (edited.text, edited.edited, edited.original_text) == ("Погода прекрасная.", True, segments[2].text)
    assert not transcript.segments[0].edited and transcript.segments[0].original_text == ""
    assert transcript.segments[4].words == [] and transcript.segments[4].text == ""


@pytest.mark.parametrize(
    ("names", "code"),
    [
        ({"S1": ""}, "SPEAKER_NAME_EMPTY"),
        ({"S1": "   "}, "SPEAKER_NAME_EMPTY"),
        ({"S1": "ә" * 10_000}, "SPEAKER_NAME_TOO_LONG"),
        ({"S1": "ә" * 101}, "SPEAKER_NAME_TOO_LONG"),
        ({"S1": "Ali\x00ce"}, "SPEAKER_NAME_INVALID"),
        ({"S1": "Ali\nce"}, "SPEAKER_NAME_INVALID"),
        ({}, "SPEAKERS_EMPTY"),
    ],
)
async def test_invalid_speaker_names_are_refused_clearly(gateway, database, names, code):
    job_id = str(await insert_transcript(database, conversation(), owner_id=OWNER))
    with pytest.raises(errors.InvalidArgument) as refused:
        await gateway.rename_speakers(OWNER, job_id, names)
    assert refused.value.code == code
    if names:
        assert "S1" in refused.value.message
    _, transcript = await gateway.get_transcript(OWNER, job_id)
    assert [s.label for s in transcript.speakers] == ["S1", "S2", "S3"]


async def test_unknown_speakers_segments_and_unfinished_jobs(gateway, database):
    job_id = str(await insert_transcript(database, conversation(), owner_id=OWNER))
    with pytest.raises(errors.NotFound) as unknown:
        await gateway.rename_speakers(OWNER, job_id, {"S1": "Әлия", "S9": "Нұрлан"})
    assert unknown.value.code == "SPEAKER_NOT_FOUND" and unknown.value.details["speaker"] == "S9"
    _, transcript = await gateway.get_transcript(OWNER, job_id)
    assert transcript.speakers[0].label == "S1", "nothing of a refused edit is kept"
    for speaker, into in (("S9", "S1"), ("S1", "S9")):
        with pytest.raises(errors.NotFound):
            await gateway.merge_speaker(OWNER, job_id, speaker, into)
    with pytest.raises(errors.InvalidArgument):
        await gateway.merge_speaker(OWNER, job_id, "S1", "S1")
    for index in (4, -1, 2**40):
        with pytest.raises(errors.NotFound) as missing:
            await gateway.edit_segment(OWNER, job_id, index, SegmentChange("text", "мәтін"))
        assert missing.value.code == "SEGMENT_NOT_FOUND"
    with pytest.raises(errors.InvalidArgument) as too_long:
        await gateway.edit_segment(OWNER, job_id, 0, SegmentChange("text", "ә" * 10_001))
    assert too_long.value.code == "SEGMENT_TEXT_TOO_LONG"

    running = str(await insert_transcript(database, conversation(), owner_id=OWNER, state=JobState.RUNNING))
    with pytest.raises(errors.FailedPrecondition):
        await gateway.rename_speakers(OWNER, running, {"S1": "Әлия"})
    with pytest.raises(errors.FailedPrecondition):
        await gateway.edit_segment(OWNER, running, 0, SegmentChange("text", "мәтін"))
    with pytest.raises(errors.FailedPrecondition):
        await export(gateway, running, "srt")


async def rows_of(database, job_id) -> tuple:
    async with database() as session:
        segments = (await session.execute(select(Segment.text, Segment.speaker, Segment.original_text)
                                          .where(Segment.job_id == job_id).order_by(Segment.position))).all()  # fmt: skip
        speakers = (await session.execute(select(Speaker.label, Speaker.name, Speaker.segment_count)
                                          .where(Speaker.job_id == job_id).order_by(Speaker.label))).all()  # fmt: skip
        words = (await session.execute(select(Word.speaker).where(Word.job_id == job_id))).all()
    return segments, speakers, words


async def test_another_owner_can_neither_see_nor_edit(gateway, database):
    job_id = await insert_transcript(database, conversation(), owner_id=OWNER)
    before = await rows_of(database, job_id)
    intruder = "owner-intruder"
    attempts = [
        gateway.rename_speakers(intruder, str(job_id), {"S1": "Хакер"}),
        gateway.merge_speaker(intruder, str(job_id), "S2", "S1"),
        gateway.edit_segment(intruder, str(job_id), 0, SegmentChange("text", "бұзылған")),
        gateway.edit_segment(intruder, str(job_id), 0, SegmentChange("revert")),
        gateway.edit_segment(intruder, str(job_id), 0, SegmentChange("language", "ru")),
        gateway.edit_segment(intruder, str(job_id), 0, SegmentChange("speaker", "S2")),
        gateway.get_transcript(intruder, str(job_id)),
        export(gateway, job_id, "json", owner=intruder),
    ]
    for attempt in attempts:
        with pytest.raises(errors.NotFound) as refused:
            await attempt
        assert refused.value.code == "JOB_NOT_FOUND"
    assert await rows_of(database, job_id) == before


async def test_concurrent_edits_do_not_lose_each_other(gateway, database):
    segments = [segment_of_words(f"S{n}", [WordSpec(n * 2.0, n * 2.0 + 1.0, f"сөз{n}")]) for n in range(1, 7)]
    job_id = str(await insert_transcript(database, segments, owner_id=OWNER))
    # Five merges into S1 at once: each adds to S1's statistics, none may overwrite another's sum;
    # renames and text edits run beside them.
    await asyncio.gather(
        *(gateway.merge_speaker(OWNER, job_id, f"S{n}", "S1") for n in range(2, 7)),
        *(gateway.edit_segment(OWNER, job_id, n, SegmentChange("text", f"жаңа {n}")) for n in range(6)),
        gateway.rename_speakers(OWNER, job_id, {"S1": "Бәрі"}),
    )
    _, transcript = await gateway.get_transcript(OWNER, job_id)
    assert [(s.id, s.label, s.segment_count) for s in transcript.speakers] == [("S1", "Бәрі", 6)]
    assert transcript.speakers[0].speaking_seconds == pytest.approx(6.0)
    assert [s.text for s in transcript.segments] == [f"жаңа {n}" for n in range(6)]
    assert [s.original_text for s in transcript.segments] == [f"сөз{n}" for n in range(1, 7)]
    assert {w.speaker for s in transcript.segments for w in s.words} == {"S1"}


async def test_a_slow_download_holds_no_database_connection(settings, database):
    """A client that stops reading must not keep a pooled connection: with a pool of one,
    a second export completes while the first download is still unread."""
    one_connection = settings.model_copy(update={"database_pool_size": 1, "database_max_overflow": 0})
    engine = create_engine(one_connection)
    exporter = create_server(
        one_connection.model_copy(update={"exporter_address": "127.0.0.1:0"}),
        ExporterServicer(create_sessionmaker(engine)),
    )
    await exporter.start()
    channel = grpc_server.channel(f"127.0.0.1:{exporter.port}")
    stub = exporter_service_pb2_grpc.ExporterServiceStub(channel)
    big = await insert_transcript(database, synthetic(), owner_id=OWNER)
    small = await insert_transcript(database, conversation(), owner_id=OWNER)

    def render(job_id):
        return stub.Render(
            exporter_service_pb2.RenderRequest(job_id=str(job_id), owner_id=OWNER, format=export_pb2.EXPORT_FORMAT_JSON)
        )

    async def read_all(call) -> bytes:
        data = bytearray()
        while (chunk := await call.read()) is not grpc.aio.EOF:
            data += chunk.data
        return bytes(data)

    try:
        slow = render(big)
        first = await slow.read()  # then nothing more for a while: the download stalls
        # A deadlock guard, not a timing goal: with the connection held this waits for the pool forever.
        small_document = await asyncio.wait_for(read_all(render(small)), timeout=20)
        assert len(export_checks.parse_json(small_document)["segments"]) == 4
        rest = await read_all(slow)
        document = export_checks.parse_json(first.data + rest)  # and the slow one still arrives whole
        assert sum(len(segment["words"]) for segment in document["segments"]) == 30_000
    finally:
        await channel.close()
        await exporter.stop(1)
        await engine.dispose()
