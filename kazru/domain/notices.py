"""Notices: what a job that succeeded wants its reader to know about its transcript (no speech in it,
speech in a language not chosen for it). Each has a stable machine code, a sentence for people (English;
the page words it in the reader's language from the code and `language`) and, where it is about one, the
language (ISO 639-1). Made by the transcriber with the transcript and stored on the job."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

NO_SPEECH = "NO_SPEECH"
UNSUPPORTED_LANGUAGE = "UNSUPPORTED_LANGUAGE"

# English names of the languages a message may name (Whisper's whole set is larger: others go by their code).
LANGUAGE_NAMES = {
    "kk": "Kazakh", "ru": "Russian", "en": "English", "de": "German", "fr": "French", "es": "Spanish",
    "it": "Italian", "pt": "Portuguese", "tr": "Turkish", "uz": "Uzbek", "ky": "Kyrgyz", "uk": "Ukrainian",
    "be": "Belarusian", "pl": "Polish", "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "ar": "Arabic",
    "fa": "Persian", "hi": "Hindi", "tt": "Tatar", "mn": "Mongolian", "az": "Azerbaijani", "tg": "Tajik", "cy": "Welsh",
}  # fmt: skip


@dataclass(frozen=True)
class JobNotice:
    code: str
    message: str
    # The language the notice is about (UNSUPPORTED_LANGUAGE: the one heard), else "".
    language: str = ""

    def as_json(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> JobNotice:
        return cls(str(data["code"]), str(data["message"]), str(data.get("language") or ""))


def language_name(code: str) -> str:
    return LANGUAGE_NAMES.get(code, code)


def no_speech() -> JobNotice:
    return JobNotice(NO_SPEECH, "No speech was found in this recording.")


def unsupported_language(heard: str, allowed: Sequence[str], supported: Sequence[str]) -> JobNotice:
    """Most of the speech is in `heard`, which is not among the job's `allowed` languages."""
    chosen = ", ".join(language_name(code) for code in allowed)
    if heard in supported:
        advice = f"Choose {language_name(heard)} or the right language and upload again."
    else:
        advice = f"This service transcribes {', '.join(language_name(code) for code in supported)} only."
    return JobNotice(
        UNSUPPORTED_LANGUAGE,
        f"Most of this recording sounds like {language_name(heard)}, which is not among the languages chosen "
        f"for it ({chosen}). {advice}",
        heard,
    )
