"""Our exports read by other people's parsers (srt, webvtt-py, ffmpeg, jsonschema, python-docx),
and the subtitle rules checked on what they parsed."""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from datetime import timedelta
from functools import cache
from pathlib import Path

import docx
import jsonschema
import srt
import webvtt

from kazru.adapters.audio import _default_ffmpeg

SCHEMA_PATH = Path(__file__).parents[1] / "services" / "exporter" / "schemas" / "transcript.schema.json"
MAX_LINE_CHARS = 42
KAZAKH_LETTERS = "әғқңөұүһі"


@cache
def json_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def ffmpeg_reads(data: bytes, fmt: str) -> str:
    """Convert our subtitles to ASS with ffmpeg (told the format, as a player knows the extension);
    fail on any error. Returns the ASS text."""
    done = subprocess.run(
        [_default_ffmpeg(), "-nostdin", "-v", "error", "-f", fmt, "-i", "pipe:0", "-f", "ass", "pipe:1"],
        input=data, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr.decode(errors="replace")[-2000:]
    return done.stdout.decode("utf-8")


def parse_srt(data: bytes) -> list[srt.Subtitle]:
    text = data.decode("utf-8")
    subtitles = list(srt.parse(text, ignore_errors=False))
    assert [s.index for s in subtitles] == list(range(1, len(subtitles) + 1)), "sequential numbering"
    # what srt composes from what it parsed is what we wrote
    assert srt.compose(subtitles, reindex=False) == text or not subtitles
    dialogue_lines = ffmpeg_reads(data, "srt").count("\nDialogue:")
    assert dialogue_lines == len(subtitles), (dialogue_lines, len(subtitles))
    return subtitles


def parse_vtt(data: bytes) -> list[webvtt.Caption]:
    text = data.decode("utf-8")
    assert text.startswith("WEBVTT\n\n")
    captions = webvtt.from_buffer(io.StringIO(text)).captions
    assert [c.identifier for c in captions] == [str(n) for n in range(1, len(captions) + 1)]
    dialogue_lines = ffmpeg_reads(data, "webvtt").count("\nDialogue:")
    assert dialogue_lines == len(captions), (dialogue_lines, len(captions))
    return captions


def parse_json(data: bytes) -> dict:
    document = json.loads(data.decode("utf-8"))
    json_validator().validate(document)
    return document


def open_docx(data: bytes) -> list[str]:
    """The document's paragraphs as text (after every zip entry's checksum is checked)."""
    with zipfile.ZipFile(io.BytesIO(data)) as package:
        assert package.testzip() is None
        assert package.namelist()[0] == "[Content_Types].xml"
    return [paragraph.text for paragraph in docx.Document(io.BytesIO(data)).paragraphs]


def check_caption_rules(subtitles: list[srt.Subtitle]) -> dict[str, int]:
    """2 lines of ≤ 42 characters, ≤ 7 s, no overlaps; ≥ 1 s and ≤ 20 characters/s unless the
    next caption starts right where this one ends (the timing does not allow more).
    Returns how often the timing did not allow it, for the caller to bound."""
    squeezed = {"under_one_second": 0, "over_20_cps": 0}
    for index, subtitle in enumerate(subtitles):
        lines = subtitle.content.split("\n")
        assert 1 <= len(lines) <= 2 and all(len(line) <= MAX_LINE_CHARS for line in lines), subtitle
        duration = subtitle.end - subtitle.start
        assert timedelta(0) < duration <= timedelta(seconds=7), subtitle
        following = subtitles[index + 1] if index + 1 < len(subtitles) else None
        if following is not None:
            assert subtitle.end <= following.start, (subtitle, following)
        touches_next = following is not None and subtitle.end == following.start
        chars = sum(len(line) for line in lines)
        if duration < timedelta(seconds=1):
            assert touches_next, subtitle
            squeezed["under_one_second"] += 1
        if chars / duration.total_seconds() > 20:
            assert touches_next or duration == timedelta(seconds=7), subtitle
            squeezed["over_20_cps"] += 1
    return squeezed
