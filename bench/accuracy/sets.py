"""Real recordings with references, for bench/accuracy/real.py.

A reference folder holds recordings `<id>.<ext>` (any kind the service takes, recognised as ingest does by
the first bytes, video files for their sound) with `<id>.rttm` (speaker turns, standard RTTM; the file is taken as
annotated throughout) and/or `<id>.txt` (the transcript of the whole file), as in ../shared/corpus/real.
A recording with neither is skipped (nothing to score); a reference with no recording beside it is
named on stderr, so that a set is never scored short without anyone knowing.

The reference language of a file is, in order: the content of `<id>.lang` (e.g. `kk`), the
file-name prefix (`kk_`, `ru_`, `en_`), the script of the reference text (a Kazakh-only letter
әғқңөұүһі → kk, other Cyrillic → ru, Latin → en).

festvox-ru (Debian main, 620 real Russian utterances of one speaker) is fetched by the benchmark
itself, without installing anything on the machine: `apt-get download` into a cache folder,
`dpkg-deb -x` there.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.accuracy.metrics import Segment
from kazru.adapters.audio import SNIFF_BYTES, sniff_container
from kazru.dev.debian_packages import PackageUnavailable, extracted_package

REPO_ROOT = Path(__file__).resolve().parents[2]
# The shared corpus lives beside the repository checkout (read-only).
DEFAULT_CORPUS_DIR = REPO_ROOT.parent / "shared" / "corpus" / "real"
# Gitignored: the festvox-ru package and its extracted files (~240 MB).
CACHE_DIR = REPO_ROOT / "bench" / ".cache"

# Beside a recording: its references and its language. Any other file with a reference beside it is taken
# when ingest would take it (the same first-bytes check), whatever its name ends in.
REFERENCE_SUFFIXES = (".txt", ".rttm", ".lang")
KNOWN_LANGUAGES = ("kk", "ru", "en")
# Letters of the Kazakh Cyrillic alphabet that Russian does not have.
KAZAKH_ONLY_LETTERS = set("әғқңөұүһі")

FESTVOX_PACKAGE = "festvox-ru"
FESTVOX_VOICE_DIR = Path("usr/share/festival/voices/russian/msu_ru_nsh_clunits")
FESTVOX_UTTERANCES = 620


@dataclass(frozen=True)
class ReferenceFile:
    file_id: str
    set_name: str
    audio: Path
    language: str | None  # None: not known (a recording with speaker turns only)
    text: str | None  # the transcript of the whole file
    turns: tuple[Segment, ...] | None  # RTTM speaker turns (no text, no language)


def parse_rttm(text: str) -> dict[str, list[Segment]]:
    """SPEAKER lines of an RTTM, grouped by file (uri): `SPEAKER uri channel start duration
    <NA> <NA> label <NA> <NA>`. Comment lines (`#`, `;;`), blank lines and other record types are skipped."""
    turns: dict[str, list[Segment]] = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0] != "SPEAKER":
            continue
        uri, start, duration, speaker = fields[1], float(fields[3]), float(fields[4]), fields[7]
        turns.setdefault(uri, []).append(Segment(start, start + duration, speaker, "", ""))
    return turns


def rttm_turns_for(file_id: str, rttm_text: str, source: Path) -> tuple[Segment, ...]:
    """The turns of `file_id`. Recordings are often renamed without editing their RTTM (the shared
    corpus's `en_pyannote_debug_trn03.rttm` says `trn03`), so an RTTM holding one file is that file's."""
    by_file = parse_rttm(rttm_text)
    if file_id in by_file:
        return tuple(by_file[file_id])
    if len(by_file) == 1:
        return tuple(next(iter(by_file.values())))
    if not by_file:
        return ()
    raise SystemExit(f"{source}: no SPEAKER lines for {file_id!r} among the files {sorted(by_file)}")


def language_from_name(file_id: str) -> str | None:
    prefix = file_id.split("_", 1)[0].lower()
    return prefix if "_" in file_id and prefix in KNOWN_LANGUAGES else None


def language_from_text(text: str) -> str | None:
    letters = [char for char in text.lower() if char.isalpha()]
    if any(char in KAZAKH_ONLY_LETTERS for char in letters):
        return "kk"
    cyrillic = sum("\u0400" <= char <= "\u04ff" for char in letters)
    latin = sum("a" <= char <= "z" for char in letters)
    if not cyrillic and not latin:
        return None
    return "ru" if cyrillic >= latin else "en"


def reference_language(file_id: str, text: str | None, lang_file: Path | None = None) -> str | None:
    if lang_file is not None and lang_file.is_file():
        return lang_file.read_text(encoding="utf-8").strip()
    return language_from_name(file_id) or (language_from_text(text) if text else None)


def load_folder(set_name: str, folder: Path) -> list[ReferenceFile]:
    if not folder.is_dir():
        raise SystemExit(f"set {set_name!r}: {folder} is not a folder")
    files = []
    for audio in sorted(path for path in folder.iterdir() if path.suffix.lower() not in REFERENCE_SUFFIXES):
        text_path, rttm_path = audio.with_suffix(".txt"), audio.with_suffix(".rttm")
        text = text_path.read_text(encoding="utf-8").strip() if text_path.is_file() else None
        turns = (
            rttm_turns_for(audio.stem, rttm_path.read_text(encoding="utf-8"), rttm_path)
            if rttm_path.is_file()
            else None
        )
        if (not text and not turns) or not is_recording(audio):
            continue
        language = reference_language(audio.stem, text, audio.with_suffix(".lang"))
        if language is None and text:
            raise SystemExit(f"{audio}: no reference language; write it (e.g. `kk`) into {audio.with_suffix('.lang')}")
        # Speaker turns alone and no language (the corpus's AMI and falcon_test excerpts): scored for speakers
        # only, transcribed in the set's languages.
        files.append(ReferenceFile(audio.stem, set_name, audio, language, text or None, turns or None))
    if not files:
        raise SystemExit(f"set {set_name!r}: no audio file with a .rttm or .txt reference in {folder}")
    scored = {file.file_id for file in files}
    unmatched = sorted(
        path.name for path in folder.iterdir() if path.suffix in (".rttm", ".txt") and path.stem not in scored
    )
    if unmatched:
        print(
            f"set {set_name!r}: not scored, no recording of a kind the service takes beside: {', '.join(unmatched)}",
            file=sys.stderr,
        )
    return files


def is_recording(path: Path) -> bool:
    """A file ingest would take, by the same check of its first bytes."""
    if not path.is_file():
        return False
    with path.open("rb") as file:
        return sniff_container(file.read(SNIFF_BYTES)) is not None


# `( ru_0001 "text" )`, one utterance per line.
_TXT_DONE_DATA_LINE = re.compile(r'^\(\s*(\S+)\s+"(.*)"\s*\)\s*$')


def parse_txt_done_data(text: str) -> dict[str, str]:
    """Festvox prompts: utterance id → text, with the `+` stress marks removed."""
    prompts = {}
    for line in text.splitlines():
        match = _TXT_DONE_DATA_LINE.match(line.strip())
        if match:
            prompts[match.group(1)] = match.group(2).replace("+", "")
    return prompts


def evenly_spaced(items: list, count: int) -> list:
    """`count` items spread evenly over `items` (the middle of each of `count` equal stretches),
    so a subset samples the whole recording session, not its first hour."""
    if count >= len(items):
        return list(items)
    return [items[(2 * index + 1) * len(items) // (2 * count)] for index in range(count)]


def fetch_festvox_ru(cache_dir: Path = CACHE_DIR) -> Path:
    """The extracted voice folder, downloading and unpacking the package on first use."""
    try:
        package = extracted_package(FESTVOX_PACKAGE, cache_dir, f"{FESTVOX_VOICE_DIR}/etc/txt.done.data")
    except PackageUnavailable as error:
        raise SystemExit(f"{error}\nOr pass --sets corpus to skip festvox-ru.") from None
    return package / FESTVOX_VOICE_DIR


def festvox_ru(count: int, cache_dir: Path = CACHE_DIR) -> list[ReferenceFile]:
    voice_dir = fetch_festvox_ru(cache_dir)
    prompts = parse_txt_done_data((voice_dir / "etc" / "txt.done.data").read_text(encoding="utf-8"))
    utterances = [
        (utterance, text)
        for utterance, text in sorted(prompts.items())
        if (voice_dir / "wav" / f"{utterance}.wav").is_file()
    ]
    return [
        ReferenceFile(utterance, FESTVOX_PACKAGE, voice_dir / "wav" / f"{utterance}.wav", "ru", text, None)
        for utterance, text in evenly_spaced(utterances, count)
    ]
