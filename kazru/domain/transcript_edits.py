"""What a person may write into a finished transcript, checked before anything is read or stored: speaker
names, a segment's text, its language, a new speaker label; and what a segment's text becomes after an edit
(the machine's text is kept, once, so that it can be restored). Plain rules: the stored rows are
`kazru/db/transcript_edits.py`'s."""

from __future__ import annotations

import re
import unicodedata

from kazru.domain import errors

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


def clean_speaker_names(names: dict[str, str]) -> dict[str, str]:
    """{"S1": "Aigerim"} with every name cleaned (`clean_speaker_name`); at least one."""
    if not names:
        raise errors.InvalidArgument("name at least one speaker", code="SPEAKERS_EMPTY")
    return {label: clean_speaker_name(name, label) for label, name in names.items()}


def clean_language(raw: str, supported: tuple[str, ...]) -> str:
    language = raw.strip().lower()
    if language not in supported:
        raise errors.InvalidArgument(
            f"unsupported language '{language[:8]}'; supported: {', '.join(supported)}", code="INVALID_LANGUAGE"
        )
    return language


def check_speaker_label(label: str, existing: set[str] | dict[str, object]) -> None:
    """A segment may go to a speaker of the job or to a new label of the diarizer's kind (S1-S99)."""
    if label not in existing and not NEW_SPEAKER_LABEL.fullmatch(label):
        raise errors.InvalidArgument(
            f"'{label[:32]}' is neither a speaker of the job nor a new label S1-S99", code="SPEAKER_LABEL_INVALID"
        )


def text_after_edit(text: str, original_text: str | None, new_text: str | None) -> tuple[str, str | None]:
    """A segment's (text, machine's text kept aside) after setting `new_text`, or, with None, restoring the
    machine's text. The machine's text is stored once, at the first edit; a later edit keeps it, and text equal
    to it clears the edited state."""
    machine_text = original_text if original_text is not None else text
    if new_text is None or new_text == machine_text:
        return machine_text, None
    return new_text, machine_text
