"""Job notices from the transcriber's findings (no model): no speech, speech outside the allowed languages,
and progress that counts the audio the VAD has scanned."""

from __future__ import annotations

import json

from kazru.db.models import Segment
from kazru.domain import notices
from kazru.domain.transcript import Transcript, TranscriptSegment
from services.exporter import formats
from services.transcriber.languages_heard import LanguagesHeard, language_outside
from services.transcriber.pipeline import DIARIZATION_PROGRESS_SHARE, job_notices, scanned_share
from tests.unit.test_formats import make_job, make_segments, stream

# Whisper base's languages heard on real recordings allowed kk,ru (bench figures, BENCHMARKS.md).
ENGLISH_MEETING = {"en": 0.9319, "cy": 0.0332}
ENGLISH_HEARD_AS_WELSH_TOO = {"cy": 0.4875, "en": 0.4847}
REAL_KAZAKH = {"lt": 0.4061, "kk": 0.3782, "ru": 0.1091}
REAL_RUSSIAN = {"ru": 0.9594, "uk": 0.0341}
# espeak-ng Russian (tests/fixtures/audio/conversation_2spk.flac): 0.87 outside, spread over many languages.
SYNTHETIC_SPREAD = {"ja": 0.3311, "la": 0.1222, "mn": 0.1185, "pl": 0.0554, "ru": 0.05, "de": 0.05, "fr": 0.05}
SUPPORTED = ("kk", "ru", "en")


def test_speech_mostly_in_a_language_not_allowed_is_named():
    assert language_outside(ENGLISH_MEETING, ("kk", "ru"), SUPPORTED) == "en"
    # Outside as a whole, even split between two: the one the job could be given is named.
    assert language_outside(ENGLISH_HEARD_AS_WELSH_TOO, ("kk", "ru"), SUPPORTED) == "en"
    assert language_outside(ENGLISH_HEARD_AS_WELSH_TOO, ("kk", "ru"), ("kk", "ru")) == "cy"


def test_allowed_speech_is_not_flagged_even_when_whisper_hears_it_partly_elsewhere():
    assert language_outside(REAL_KAZAKH, ("kk", "ru"), SUPPORTED) is None
    assert language_outside(REAL_RUSSIAN, ("kk", "ru"), SUPPORTED) is None
    assert language_outside(ENGLISH_MEETING, ("kk", "ru", "en"), SUPPORTED) is None
    assert language_outside({}, ("kk", "ru"), SUPPORTED) is None
    # Mostly outside, but no language clearly heard: speech Whisper base does not know, not another language.
    assert language_outside(SYNTHETIC_SPREAD, ("kk", "ru"), SUPPORTED) is None


def test_languages_heard_are_weighted_by_speech_and_need_enough_of_it():
    heard = LanguagesHeard()
    heard.add({"en": 1.0}, 3.0)
    heard.add({"ru": 0.5, "kk": 0.5}, 1.0)
    heard.add({"de": 1.0}, 0.0)
    assert heard.shares() == {"en": 0.75, "ru": 0.125, "kk": 0.125}
    short = LanguagesHeard()
    short.add({"en": 1.0}, 1.0)
    assert short.shares() == {}


def transcript(segment_count: int) -> Transcript:
    segments = [TranscriptSegment(0.0, 1.0, "S1", "ru", "Привет", 0.9, ()) for _ in range(segment_count)]
    return Transcript(segments, [], {"ru": 1.0} if segment_count else {})


def test_notices_of_a_transcript():
    assert job_notices(transcript(0), {}, ("kk", "ru"), SUPPORTED) == [notices.no_speech()]
    assert job_notices(transcript(1), REAL_RUSSIAN, ("kk", "ru"), SUPPORTED) == []
    [notice] = job_notices(transcript(1), ENGLISH_MEETING, ("kk", "ru"), SUPPORTED)
    assert notice.code == "UNSUPPORTED_LANGUAGE" and notice.language == "en"
    assert notice.message == (
        "Most of this recording sounds like English, which is not among the languages chosen for it "
        "(Kazakh, Russian). Choose English or the right language and upload again."
    )
    [welsh] = job_notices(transcript(1), {"cy": 0.9}, ("kk", "ru"), SUPPORTED)
    assert "sounds like Welsh" in welsh.message and "transcribes Kazakh, Russian, English only" in welsh.message


def test_progress_counts_silence_scanned_as_work_done():
    # Silence throughout: the scan is the whole job.
    assert scanned_share(600.0, 0.0, 1800.0) == 1 / 3
    assert scanned_share(1800.0, 0.0, 1800.0) == 1.0
    # Speech throughout: the scan is a small part of the work, recognition the rest.
    assert 0 < scanned_share(1800.0, 1800.0, 1800.0) < DIARIZATION_PROGRESS_SHARE
    assert scanned_share(0.0, 0.0, 1800.0) == 0.0


async def test_txt_of_a_job_without_speech_says_so_and_json_carries_its_notices():
    job = make_job()
    job.notices = [notices.no_speech().as_json()]
    text = "".join([piece async for piece in formats.render_txt(job, stream([]), formats.RenderOptions())])
    assert text == "No speech was found in this recording.\n"
    pieces = formats.render_json(job, stream([]), formats.RenderOptions())
    document = json.loads("".join([piece async for piece in pieces]))
    assert document["notices"] == [{"code": "NO_SPEECH", "message": "No speech was found in this recording.",
                                    "language": None}]  # fmt: skip


async def test_txt_of_a_job_in_another_language_is_the_transcript_alone():
    """The warning is the page's, the API's and the JSON's: a TXT file is what a person pastes elsewhere."""
    job = make_job()
    job.notices = [notices.unsupported_language("en", ("kk", "ru"), SUPPORTED).as_json()]
    segments: list[Segment] = make_segments()[:1]
    text = "".join([piece async for piece in formats.render_txt(job, stream(segments), formats.RenderOptions())])
    assert text == "[00:00:00] Сәлем, әлем!\n"
    pieces = formats.render_json(job, stream(segments), formats.RenderOptions())
    document = json.loads("".join([piece async for piece in pieces]))
    assert [notice["code"] for notice in document["notices"]] == ["UNSUPPORTED_LANGUAGE"]
