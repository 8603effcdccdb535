"""Renderers: a finished job and its transcript → the pieces of a file, in order.

Each renderer is an async generator (of str, or of bytes for DOCX) over a
TranscriptStream, so the exporter streams large transcripts as it reads them.

Speakers appear by their display name: the name a person gave, else the label. A transcript in more than
one language says each turn's language in every format (`Aigerim (kk):`, VTT's `<lang kk>`, JSON's
`language`), so a person's correction of a segment's language shows wherever the transcript goes.
"""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from kazru.db.models import Job
from kazru.domain.notices import NO_SPEECH, JobNotice
from services.exporter import captions

DOCX_CHUNK_BYTES = 64 * 1024

# How a document names the engines (`Job.engine`) for people; the page has the same names (static/app.js).
ENGINE_TITLES = {"whisper": "Whisper", "gigaam": "GigaAM-Multilingual", "speechkit": "Yandex SpeechKit"}


@dataclass(frozen=True)
class RenderOptions:
    timestamps: bool = True


@dataclass(frozen=True)
class Format:
    extension: str
    content_type: str


TXT = Format("txt", "text/plain; charset=utf-8")
SRT = Format("srt", "application/x-subrip; charset=utf-8")
VTT = Format("vtt", "text/vtt; charset=utf-8")
JSON = Format("json", "application/json")
DOCX = Format("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document")


@dataclass
class TranscriptStream:
    """What renderers read: the speakers, then the segments in order, as they are read.

    Speakers have `label`, `name`, `speaking_seconds`, `segment_count`. Segments have
    `position`, `start_seconds`, `end_seconds`, `text`, `language`, `confidence`,
    `speaker`, `original_text`, and the words of formats that show them: `words`,
    [start, end, text] lists (SRT, VTT), or `words_json`, the JSON array of word
    objects {"start", "end", "text", "probability", "speaker"} (JSON); None when
    the segment has no words.
    """

    speakers: list[Any]
    segments: AsyncIterator[Any]


def clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def export_filename(job: Job, fmt: Format) -> str:
    stem = PurePath(job.filename).stem or "transcript"
    return f"{stem}.{fmt.extension}"


def speaker_names(speakers: Iterable[Any]) -> dict[str, str]:
    return {speaker.label: speaker.name or speaker.label for speaker in speakers}


def says_languages(job: Job) -> bool:
    """Whether turns say their language: the transcript has more than one."""
    return len(job.language_shares or {}) > 1


def who_says(name: str | None, language: str | None) -> str:
    """`Aigerim: `, `Aigerim (kk): `, `(kk): ` or nothing: the head of a turn."""
    label = (f"{name or ''} ({language})" if language else name or "").strip()
    return f"{label}: " if label else ""


def turn_text(segments: list[Any]) -> str:
    return " ".join(text for text in (segment.text.strip() for segment in segments) if text)


async def turns(
    transcript: TranscriptStream, by_language: bool = False
) -> AsyncIterator[tuple[str | None, str | None, list[Any]]]:
    """Consecutive segments of one speaker (and, `by_language`, one language) with some text:
    (speaker label, language or None, segments). (A person may empty a segment's text, e.g. words made
    up over noise.)"""
    key, turn = None, []
    async for segment in transcript.segments:
        if not segment.text.strip():
            continue
        segment_key = (segment.speaker, segment.language if by_language else None)
        if turn and segment_key != key:
            yield *key, turn
            turn = []
        key = segment_key
        turn.append(segment)
    if turn:
        yield *key, turn


async def render_txt(job: Job, transcript: TranscriptStream, options: RenderOptions) -> AsyncIterator[str]:
    """One paragraph per speaker turn: `[00:01:23] Aigerim: …`, a blank line between turns."""
    names = speaker_names(transcript.speakers)
    index = 0
    # A file with no text says why (no speech found), rather than being empty. Other notices are the page's,
    # the API's and the JSON export's: a TXT file is the transcript a person pastes elsewhere.
    for notice in map(JobNotice.from_json, job.notices or []):
        if notice.code == NO_SPEECH:
            yield f"{notice.message}\n"
            index += 1
    async for speaker, language, segments in turns(transcript, by_language=says_languages(job)):
        prefix = f"[{clock(segments[0].start_seconds)}] " if options.timestamps else ""
        who = who_says(names.get(speaker, speaker) if speaker else None, language)
        text = turn_text(segments)
        yield f"{chr(10) if index else ''}{prefix}{who}{text}\n"
        index += 1


async def caption_sources(transcript: TranscriptStream, languages: bool) -> AsyncIterator[captions.CaptionSource]:
    names = speaker_names(transcript.speakers)
    async for segment in transcript.segments:
        yield captions.CaptionSource(
            start=segment.start_seconds,
            end=segment.end_seconds,
            text=segment.text,
            speaker=segment.speaker,
            speaker_name=names.get(segment.speaker, segment.speaker) if segment.speaker else None,
            # A person's edit leaves the machine's words behind: the new text is timed by characters.
            words=(segment.words or ()) if segment.original_text is None else (),
            language=segment.language if languages else None,
        )


def _subtitle_time(ms: int, separator: str) -> str:
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{separator}{ms % 1000:03d}"


def _cue_safe(line: str) -> str:
    # "-->" inside text would read as a timing line to some parsers.
    return line.replace("-->", "->")


async def timed_captions(transcript: TranscriptStream, languages: bool) -> AsyncIterator[captions.Caption]:
    builder = captions.CaptionBuilder()
    async for source in caption_sources(transcript, languages):
        for caption in builder.add(source):
            yield caption
    for caption in builder.finish():
        yield caption


async def render_srt(job: Job, transcript: TranscriptStream, options: RenderOptions) -> AsyncIterator[str]:
    number = 0
    async for caption in timed_captions(transcript, says_languages(job)):
        number += 1
        lines = [_cue_safe(line) for line in caption.lines]
        if caption.announce:
            lines[0] = (captions.name_prefix(caption.speaker_name, caption.language) + lines[0]).rstrip()
        timing = f"{_subtitle_time(caption.start_ms, ',')} --> {_subtitle_time(caption.end_ms, ',')}"
        yield f"{number}\n{timing}\n" + "\n".join(lines) + "\n\n"


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


async def render_vtt(job: Job, transcript: TranscriptStream, options: RenderOptions) -> AsyncIterator[str]:
    """WebVTT; every cue carries its speaker as a voice tag (`<v Aigerim>`), which players use for styling,
    and in a transcript of several languages its language as a language span (`<lang kk>`)."""
    yield "WEBVTT\n\n"
    number = 0
    async for caption in timed_captions(transcript, says_languages(job)):
        number += 1
        lines = [_vtt_escape(_cue_safe(line)) for line in caption.lines]
        if caption.language:
            lines[0], lines[-1] = f"<lang {caption.language}>{lines[0]}", f"{lines[-1]}</lang>"
        if caption.speaker_name:
            lines[0] = f"<v {_vtt_escape(caption.speaker_name)}>{lines[0]}"
        timing = f"{_subtitle_time(caption.start_ms, '.')} --> {_subtitle_time(caption.end_ms, '.')}"
        yield f"{number}\n{timing}\n" + "\n".join(lines) + "\n\n"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def render_json(job: Job, transcript: TranscriptStream, options: RenderOptions) -> AsyncIterator[str]:
    """The whole transcript; the shape is services/exporter/schemas/transcript.schema.json."""
    header = {
        "schema_version": 1,
        "job_id": str(job.id),
        "filename": job.filename,
        "created_at": _iso(job.created_at),
        "finished_at": _iso(job.finished_at),
        "duration_seconds": job.duration_seconds,
        "language": job.detected_language,
        "language_shares": job.language_shares or {},
        "engine": job.engine,
        "engine_model": job.engine_model,
        "notices": [
            {"code": notice.code, "message": notice.message, "language": notice.language or None}
            for notice in map(JobNotice.from_json, job.notices or [])
        ],
        "speakers": [
            {
                "id": speaker.label,
                "label": speaker.name or speaker.label,
                "name": speaker.name,
                "speaking_seconds": speaker.speaking_seconds,
                "segment_count": speaker.segment_count,
            }
            for speaker in transcript.speakers
        ],
    }
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    yield dumps(header)[:-1] + ', "segments": ['
    index = 0
    async for segment in transcript.segments:
        item = {
            "index": segment.position,
            "speaker": segment.speaker,
            "start": segment.start_seconds,
            "end": segment.end_seconds,
            "text": segment.text,
            "language": segment.language,
            "confidence": segment.confidence,
            "edited": segment.original_text is not None,
            "original_text": segment.original_text,
            # After an edit the words are still the machine's: they time `original_text`, not `text`.
            "words_of": "text" if segment.original_text is None else "original_text",
        }
        # The words come as JSON text already (see TranscriptStream): spliced in, not re-encoded.
        words = f', "words": {segment.words_json or "[]"}}}'
        yield ("," if index else "") + dumps(item)[:-1] + words
        index += 1
    yield "]}\n"


async def render_docx(job: Job, transcript: TranscriptStream, options: RenderOptions) -> AsyncIterator[bytes]:
    """A readable document: title, date, duration, speakers, then the turns with timestamps.

    A DOCX is a zip of XML parts. python-docx builds the small parts (styles, the
    title, the speakers) with a marker paragraph where the turns go; the zip is then
    rewritten as a stream: the parts are copied, and the turns are written into
    word/document.xml as they arrive from the database. A zip written to a stream
    (not seekable) gives each entry's sizes in a data descriptor after its data,
    which every zip reader, Word included, accepts.
    """
    names = speaker_names(transcript.speakers)
    template = await asyncio.to_thread(_docx_template, job, transcript.speakers, names)
    sink = _Sink()
    with zipfile.ZipFile(io.BytesIO(template)) as source, zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as target:
        for entry in source.infolist():
            data = source.read(entry)
            if entry.filename != "word/document.xml":
                target.writestr(entry.filename, data)
                continue
            head, tail = _split_at_marker(data)
            with target.open(entry.filename, "w") as part:
                part.write(head)
                yield sink.take()
                async for speaker, language, segments in turns(transcript, by_language=says_languages(job)):
                    part.write(_turn_xml(speaker, language, segments, names, options).encode("utf-8"))
                    if sink.size >= DOCX_CHUNK_BYTES:
                        yield sink.take()
                part.write(tail)
    yield sink.take()


class _Sink:
    """A write-only stream the zip writer fills and the renderer empties."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def size(self) -> int:
        return len(self._buffer)

    def write(self, data: bytes) -> int:
        self._buffer += data
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


# Characters XML 1.0 does not allow (C0 controls other than tab, newline, carriage return).
_XML_ILLEGAL = dict.fromkeys(c for c in range(32) if c not in (9, 10, 13))
_TURNS_MARKER = "KAZRU-TRANSCRIPT-TURNS"


def _xml_text(text: str) -> str:
    return xml_escape(text.translate(_XML_ILLEGAL))


def _turn_xml(
    speaker: str | None, language: str | None, segments: list[Any], names: dict[str, str], options: RenderOptions
) -> str:
    head = f"[{clock(segments[0].start_seconds)}] " if options.timestamps else ""
    head += who_says(names.get(speaker, speaker) if speaker else None, language)
    text = turn_text(segments)
    bold = f'<w:r><w:rPr><w:b/></w:rPr><w:t xml:space="preserve">{_xml_text(head)}</w:t></w:r>' if head else ""
    return f'<w:p>{bold}<w:r><w:t xml:space="preserve">{_xml_text(text)}</w:t></w:r></w:p>'


def _split_at_marker(document_xml: bytes) -> tuple[bytes, bytes]:
    """word/document.xml before and after the marker paragraph."""
    marker = document_xml.index(_TURNS_MARKER.encode())
    start = max(document_xml.rfind(b"<w:p>", 0, marker), document_xml.rfind(b"<w:p ", 0, marker))
    end = document_xml.index(b"</w:p>", marker) + len(b"</w:p>")
    return document_xml[:start], document_xml[end:]


def transcribed_by_text(job: Job) -> str:
    """The engine and model that wrote the transcript, for people: "GigaAM-Multilingual (gigaam-multilingual-ctc)"."""
    title = ENGINE_TITLES.get(job.engine or "", job.engine or "")
    return f"{title} ({job.engine_model})" if job.engine_model else title


def _docx_template(job: Job, speakers: list[Any], names: dict[str, str]) -> bytes:
    import docx  # python-docx: imported here, the other formats do not need it

    title = job.filename.translate(_XML_ILLEGAL)
    document = docx.Document()
    document.core_properties.title = title
    document.add_heading(title, level=1)
    facts = document.add_paragraph()
    facts.add_run(f"Date: {job.created_at:%Y-%m-%d %H:%M} UTC\n" if job.created_at else "")
    facts.add_run(f"Duration: {clock(job.duration_seconds or 0.0)}")
    if job.engine:
        transcribed_by = transcribed_by_text(job)
        facts.add_run(f"\nTranscribed by: {transcribed_by}")
        # Also in the document's properties, where a reader's "File > Info" and document indexers look.
        document.core_properties.comments = f"Transcribed by {transcribed_by}"
    if speakers:
        document.add_heading("Speakers", level=2)
        for speaker in speakers:
            document.add_paragraph(
                f"{names[speaker.label]} — {clock(speaker.speaking_seconds)}, {speaker.segment_count} segments",
                style="List Bullet",
            )
    document.add_heading("Transcript", level=2)
    document.add_paragraph(_TURNS_MARKER)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()
