import json
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from kazru.db.models import Job, Segment, Speaker, Word
from services.exporter import formats
from services.gateway.routes.files import content_disposition

COLUMNS = ("position", "start_seconds", "end_seconds", "text", "language", "confidence", "speaker", "original_text")


def make_job() -> Job:
    return Job(id=uuid.uuid4(), filename="сұхбат.flac", created_at=datetime(2026, 11, 21, tzinfo=UTC),
               duration_seconds=3725.0, detected_language="kk")  # fmt: skip


def make_segments() -> list[Segment]:
    rows = [  # the COLUMNS of each segment
        (0, 0.0, 2.5, "Сәлем, әлем!", "kk", 0.9, None, None),
        (1, 3723.4, 3725.0, 'Привет "мир"', "ru", 0.8, "S2", None),
        (2, 3725.0, 3726.0, "Иә.", "kk", 0.8, "S2", None),
    ]
    return [Segment(**dict(zip(COLUMNS, row, strict=True))) for row in rows]


def stream(segments, speakers=(), words=None) -> formats.TranscriptStream:
    """Segments as the exporter reads them: their columns, with their words as both word forms."""

    async def rows():
        for segment in segments:
            found = (words or {}).get(segment.position, [])
            word_objects = [{"start": w.start_seconds, "end": w.end_seconds, "text": w.text,
                             "probability": w.probability, "speaker": w.speaker} for w in found]  # fmt: skip
            yield SimpleNamespace(
                **{column: getattr(segment, column) for column in COLUMNS},
                words=[[w.start_seconds, w.end_seconds, w.text] for w in found] or None,
                words_json=json.dumps(word_objects, ensure_ascii=False) if found else None,
            )

    return formats.TranscriptStream(list(speakers), rows())


async def render(renderer, segments, speakers=(), words=None, options=None) -> str:
    options = options or formats.RenderOptions()
    return "".join([piece async for piece in renderer(make_job(), stream(segments, speakers, words), options)])


async def test_txt_has_one_block_per_turn_with_timestamps_and_names():
    speakers = [Speaker(label="S2", name="Айгерім", speaking_seconds=2.6, segment_count=2)]
    text = await render(formats.render_txt, make_segments(), speakers)
    assert text == '[00:00:00] Сәлем, әлем!\n\n[01:02:03] Айгерім: Привет "мир" Иә.\n'


async def test_txt_without_timestamps():
    text = await render(formats.render_txt, make_segments(), options=formats.RenderOptions(timestamps=False))
    assert text.splitlines()[2] == 'S2: Привет "мир" Иә.'


async def test_json_is_valid_and_complete():
    words = {1: [Word(segment_position=1, start_seconds=3723.4, end_seconds=3724.0, text="Привет", probability=0.7,
                      speaker="S2")]}  # fmt: skip
    document = json.loads(await render(formats.render_json, make_segments(), words=words))
    assert [s["text"] for s in document["segments"]] == ["Сәлем, әлем!", 'Привет "мир"', "Иә."]
    assert document["segments"][1]["speaker"] == "S2"
    assert document["segments"][1]["words"][0]["text"] == "Привет"
    assert document["segments"][0]["edited"] is False


async def test_json_of_an_empty_transcript():
    document = json.loads(await render(formats.render_json, []))
    assert document["segments"] == [] and document["speakers"] == []


async def test_srt_and_vtt_of_an_edited_segment_use_its_new_text():
    segment = Segment(position=0, start_seconds=1.0, end_seconds=4.0, text="Жаңа мәтін", original_text="ескі",
                      language="kk", confidence=0.9, speaker="S1")  # fmt: skip
    old_word = Word(segment_position=0, start_seconds=1.0, end_seconds=2.0, text="ескі", probability=0.5)
    srt = await render(formats.render_srt, [segment], words={0: [old_word]})
    assert srt == "1\n00:00:01,000 --> 00:00:04,000\nS1: Жаңа мәтін\n\n"
    vtt = await render(formats.render_vtt, [segment], words={0: [old_word]})
    assert vtt == "WEBVTT\n\n1\n00:00:01.000 --> 00:00:04.000\n<v S1>Жаңа мәтін\n\n"


async def test_vtt_escapes_markup_in_text_and_names():
    segment = Segment(position=0, start_seconds=0.0, end_seconds=2.0, text="a <b> & c", speaker="S1",
                      language="kk", confidence=1.0)  # fmt: skip
    speakers = [Speaker(label="S1", name="A<B>", speaking_seconds=2.0, segment_count=1)]
    vtt = await render(formats.render_vtt, [segment], speakers)
    assert "<v A&lt;B&gt;>a &lt;b&gt; &amp; c" in vtt


@pytest.mark.parametrize("fmt", [formats.TXT, formats.SRT, formats.VTT, formats.JSON, formats.DOCX])
def test_export_filename_keeps_the_original_stem(fmt):
    assert formats.export_filename(make_job(), fmt) == f"сұхбат.{fmt.extension}"


def test_content_disposition_carries_utf8_name_with_ascii_fallback():
    header = content_disposition('сұхбат "1".txt')
    assert header.startswith('attachment; filename="')
    assert "filename*=UTF-8''%D1%81%D2%B1%D1%85%D0%B1%D0%B0%D1%82%20%221%22.txt" in header
    assert header.split(";")[1].isascii()


async def test_a_segment_emptied_by_a_person_leaves_no_trace_in_txt():
    segments = make_segments()
    segments[1].original_text, segments[1].text = segments[1].text, ""
    text = await render(formats.render_txt, segments)
    assert text == "[00:00:00] Сәлем, әлем!\n\n[01:02:05] S2: Иә.\n"
    assert await render(formats.render_srt, segments[1:2]) == ""
