import json
import uuid
from datetime import UTC, datetime

from kazru.db.models import Job, Segment
from services.exporter import formats
from services.gateway.http_api import content_disposition


def make_job() -> Job:
    return Job(id=uuid.uuid4(), filename="сұхбат.flac", created_at=datetime(2026, 11, 21, tzinfo=UTC),
               duration_seconds=3725.0, detected_language="kk")  # fmt: skip


def make_segments() -> list[Segment]:
    return [
        Segment(position=0, start_seconds=0.0, end_seconds=2.5, text="Сәлем, әлем!", language="kk", confidence=0.9),
        Segment(position=1, start_seconds=3723.4, end_seconds=3725.0, text='Привет "мир"', language="ru",
                confidence=0.8, speaker="S2"),  # fmt: skip
    ]


def test_txt_has_timestamps_speakers_and_kazakh_letters():
    text = "".join(formats.render_txt(make_job(), make_segments(), formats.RenderOptions()))
    assert text == '[00:00:00] Сәлем, әлем!\n[01:02:03] S2: Привет "мир"\n'


def test_txt_without_timestamps():
    text = "".join(formats.render_txt(make_job(), make_segments(), formats.RenderOptions(timestamps=False)))
    assert text.splitlines()[0] == "Сәлем, әлем!"


def test_json_is_valid_and_complete():
    job = make_job()
    document = json.loads("".join(formats.render_json(job, make_segments(), formats.RenderOptions())))
    assert document["job_id"] == str(job.id)
    assert [s["text"] for s in document["segments"]] == ["Сәлем, әлем!", 'Привет "мир"']
    assert document["segments"][1]["speaker"] == "S2"


def test_json_of_an_empty_transcript():
    document = json.loads("".join(formats.render_json(make_job(), [], formats.RenderOptions())))
    assert document["segments"] == []


def test_export_filename_keeps_the_original_stem():
    assert formats.export_filename(make_job(), formats.TXT) == "сұхбат.txt"


def test_content_disposition_carries_utf8_name_with_ascii_fallback():
    header = content_disposition('сұхбат "1".txt')
    assert header.startswith('attachment; filename="')
    assert "filename*=UTF-8''%D1%81%D2%B1%D1%85%D0%B1%D0%B0%D1%82%20%221%22.txt" in header
    assert header.split(";")[1].isascii()
