"""The real-speech benchmark's reference loading (bench/accuracy/sets.py), its added scores
(bench/accuracy/metrics.py) and its choice of engine (bench/accuracy/real.py), on hand-checked cases;
no model, no servers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench.accuracy.metrics import (
    Segment,
    counted_speakers,
    cut_word_completions,
    cut_words,
    der_figures,
    language_seconds,
    speech_seconds_by_speaker,
    time_ordered_text,
)
from bench.accuracy.real import allowed_languages, engine_model_dir, engine_settings, parse_args
from bench.accuracy.sets import (
    evenly_spaced,
    language_from_name,
    language_from_text,
    load_folder,
    parse_rttm,
    parse_txt_done_data,
    reference_language,
    rttm_turns_for,
)

RTTM = """\
;; a comment line in the NIST style
# and one in the common style
SPEAKER meeting_a 1 0.000 1.500 <NA> <NA> alice <NA> <NA>
SPEAKER meeting_a 1 1.200 2.300 <NA> <NA> bob <NA> <NA>

SPEAKER meeting_b 1 5.25 0.75 <NA> <NA> carol <NA> <NA>
SPKR-INFO meeting_b 1 <NA> <NA> <NA> unknown carol <NA> <NA>
"""


def turn(start, end, speaker="A", language="", text=""):
    return Segment(start, end, speaker, language, text)


# --- RTTM ---


def test_rttm_lines_are_grouped_by_file_and_comments_skipped():
    turns = parse_rttm(RTTM)
    assert sorted(turns) == ["meeting_a", "meeting_b"]
    assert turns["meeting_a"] == [turn(0.0, 1.5, "alice"), turn(1.2, 3.5, "bob")]
    assert turns["meeting_b"] == [turn(5.25, 6.0, "carol")]


def test_a_file_takes_its_own_turns_from_a_shared_rttm():
    assert [t.speaker for t in rttm_turns_for("meeting_b", RTTM, source=None)] == ["carol"]


def test_an_rttm_of_one_file_belongs_to_the_recording_whatever_its_uri():
    # The shared corpus's en_pyannote_debug_trn03.rttm names its file `trn03`.
    one_file = "SPEAKER trn03 1 0.000 1.184 <NA> <NA> MEE067 <NA> <NA>\n"
    assert rttm_turns_for("en_pyannote_debug_trn03", one_file, source=None) == (turn(0.0, 1.184, "MEE067"),)


def test_a_shared_rttm_without_the_file_is_an_error():
    with pytest.raises(SystemExit, match="meeting_c"):
        rttm_turns_for("meeting_c", RTTM, source=None)


# --- reference language ---


def test_language_from_the_file_name_prefix():
    assert language_from_name("kk_is2ai_example_1") == "kk"
    assert language_from_name("ru_0001") == "ru"
    assert language_from_name("en_pyannote_sample") == "en"
    assert language_from_name("de_something") is None
    assert language_from_name("kk") is None  # a prefix needs its underscore


def test_language_from_the_script_of_the_text():
    assert language_from_text("Жарықты қос жазбаны оқы") == "kk"
    # One Kazakh-only letter is enough, even in otherwise Russian-looking text.
    assert language_from_text("Сәлем, как дела?") == "kk"
    assert language_from_text("Погода в Алматы сегодня тёплая.") == "ru"
    assert language_from_text("Hello? Oh, hello.") == "en"
    assert language_from_text("123 ...") is None


def test_the_lang_file_wins_over_the_name_and_the_name_over_the_text(tmp_path):
    lang_file = tmp_path / "ru_mixed.lang"
    assert reference_language("ru_mixed", "Hello", lang_file) == "ru"  # name, no .lang yet
    lang_file.write_text("kk\n", encoding="utf-8")
    assert reference_language("ru_mixed", "Hello", lang_file) == "kk"
    assert reference_language("interview", "Hello there", None) == "en"


def test_a_folder_is_loaded_with_its_references(tmp_path):
    (tmp_path / "kk_call.flac").write_bytes(b"fLaC" + bytes(40))
    (tmp_path / "kk_call.txt").write_text("Сәлеметсіз бе\n", encoding="utf-8")
    (tmp_path / "meeting.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40))
    (tmp_path / "meeting.rttm").write_text("SPEAKER x 1 0.5 2.0 <NA> <NA> s1 <NA> <NA>\n", encoding="utf-8")
    (tmp_path / "meeting.lang").write_text("ru", encoding="utf-8")
    (tmp_path / "unreferenced.mp3").write_bytes(b"")
    files = {reference.file_id: reference for reference in load_folder("mine", tmp_path)}
    assert sorted(files) == ["kk_call", "meeting"]
    assert (files["kk_call"].language, files["kk_call"].text, files["kk_call"].turns) == ("kk", "Сәлеметсіз бе", None)
    assert (files["meeting"].language, files["meeting"].text) == ("ru", None)
    assert files["meeting"].turns == (turn(0.5, 2.5, "s1"),)


def test_film_tv_and_phone_recordings_are_scored_and_a_reference_without_one_is_named(tmp_path, capsys):
    heads = {
        "kk_scene.mkv": b"\x1a\x45\xdf\xa3" + bytes(40),
        "kk_news.ts": (b"\x47\x40\x11\x10" + bytes(184)) * 3,
        "ru_call.amr": b"#!AMR\n" + bytes(40),
        "kk_clip.mp4": b"\x00\x00\x00\x20ftypisom" + bytes(40),
        "kk_voice_note.ra": b".ra\xfd" + bytes(40),  # RealAudio: not a kind we take
    }
    for name, head in heads.items():
        (tmp_path / name).write_bytes(head)
        (tmp_path / name).with_suffix(".txt").write_text("Сәлем", encoding="utf-8")
    files = load_folder("mine", tmp_path)
    assert sorted(file.file_id for file in files) == ["kk_clip", "kk_news", "kk_scene", "ru_call"]
    assert "kk_voice_note.txt" in capsys.readouterr().err


def test_a_language_outside_the_allowed_set_is_allowed_alone():
    assert allowed_languages(("kk", "ru"), "ru") == ("kk", "ru")
    assert allowed_languages(("kk", "ru"), "en") == ("en",)


# --- the engine `ours` runs on ---

ROOT = Path(__file__).resolve().parents[2]
ENGINE_VARIABLES = ("KAZRU_ENGINE", "KAZRU_GIGAAM_MODEL_DIR", "KAZRU_GIGAAM_MODEL", "KAZRU_WHISPER_MODEL")


@pytest.fixture
def environment(monkeypatch):
    """No engine variables but the ones a test sets."""
    for name in ENGINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_without_a_choice_ours_is_the_default_whisper_engine(environment):
    settings = engine_settings(parse_args([]))
    assert (settings.engine, settings.engine_model) == ("whisper", "whisper-base")


def test_the_engine_and_its_model_folder_from_the_command_line(environment, tmp_path):
    settings = engine_settings(parse_args(["--engine", "gigaam", "--model-dir", str(tmp_path)]))
    assert (settings.engine, settings.engine_model) == ("gigaam", "gigaam-multilingual-ctc")
    assert settings.gigaam_model_dir == tmp_path and engine_model_dir(settings) == str(tmp_path)

    whisper = engine_settings(parse_args(["--engine", "whisper", "--model-dir", str(tmp_path / "whisper-small")]))
    assert whisper.whisper_model_path == str(tmp_path / "whisper-small") and whisper.engine_model == "whisper-small"


def test_the_engine_and_its_model_folder_from_the_environment(environment, tmp_path):
    environment.setenv("KAZRU_ENGINE", "gigaam")
    environment.setenv("KAZRU_GIGAAM_MODEL", "gigaam-multilingual-large-ctc")
    environment.setenv("KAZRU_GIGAAM_MODEL_DIR", str(tmp_path))
    settings = engine_settings(parse_args([]))
    assert (settings.engine, settings.engine_model) == ("gigaam", "gigaam-multilingual-large-ctc")
    assert settings.gigaam_model_dir == tmp_path
    # The command line wins; the environment's other GigaAM settings stay.
    other = tmp_path / "other"
    settings = engine_settings(parse_args(["--model-dir", str(other)]))
    assert settings.gigaam_model_dir == other and settings.engine_model == "gigaam-multilingual-large-ctc"
    assert engine_settings(parse_args(["--engine", "whisper"])).engine == "whisper"


def test_a_remote_engine_has_no_model_folder_and_an_unknown_engine_is_refused(environment, tmp_path):
    with pytest.raises(SystemExit, match="speechkit engine runs at its provider"):
        engine_settings(parse_args(["--engine", "speechkit", "--model-dir", str(tmp_path)]))
    with pytest.raises(SystemExit):
        parse_args(["--engine", "vosk"])


def test_make_bench_real_passes_bench_args_to_the_benchmark():
    dry_run = subprocess.run(
        ["make", "-n", "bench-real", "BENCH_ARGS=--engine gigaam --model-dir /models/g"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    (command,) = [line for line in dry_run.stdout.splitlines() if "bench/accuracy/real.py" in line]
    assert "real.py --engine gigaam --model-dir /models/g --json-out" in command


# --- speaker count ---


def test_speakers_count_only_with_two_seconds_of_speech():
    segments = [turn(0, 1.5, "A"), turn(3, 3.6, "A"), turn(1.5, 2.5, "B"), turn(4, 5.9, "C"), turn(6, 6.2, "C")]
    # A: 2.1 s, B: 1.0 s, C: 2.1 s.
    assert counted_speakers(segments) == 2
    assert counted_speakers(segments, min_seconds=2.2) == 0


def test_a_speakers_own_overlapping_turns_are_not_counted_twice():
    # 1.5 s of overlapping lines of one speaker are 1.5 s of speech, not 2.5 s.
    segments = [turn(0, 1.0, "A"), turn(0.5, 1.5, "A"), turn(0.6, 0.9, "A")]
    assert speech_seconds_by_speaker(segments) == {"A": pytest.approx(1.5)}
    assert counted_speakers(segments) == 0


# --- cut words ---


def test_a_last_word_that_is_a_strict_prefix_of_a_reference_word_is_cut():
    assert cut_word_completions("газет", {"американской", "газеты"}) == ["газеты"]
    reference = "Корреспондент американской газеты Арчибальд"
    found = cut_words([turn(0, 2, text="Корреспондент американской газ")], reference)
    assert found == [{"end": 2, "word": "газ", "completions": ["газеты"]}]


def test_whole_words_and_unrelated_words_are_not_cut():
    vocabulary = {"она", "завела", "прядь"}
    assert cut_word_completions("прядь", vocabulary) == []  # a reference word itself
    assert cut_word_completions("завелась", vocabulary) == []  # longer, not a prefix
    assert cut_word_completions("волосы", vocabulary) == []  # no reference word starts with it
    assert cut_word_completions("", vocabulary) == []
    # Only the segment's LAST word matters, after normalisation (case, punctuation).
    segments = [turn(0, 1, text="Она зав завела."), turn(1, 2, text="ПРЯДЬ!"), turn(2, 3, text="  ")]
    assert cut_words(segments, "Она завела прядь") == []


def test_the_festvox_case_a_hypothesis_ending_inside_the_last_reference_word():
    found = cut_words(
        [turn(0.0, 4.0, text="Со спокойным мужеством Скайлс ожидал всего в этом безумном гор")],
        ("Со спокойным мужеством, Скайлс, ожидал всего, в этом безумном городе."),
    )
    assert [(cut["word"], cut["completions"]) for cut in found] == [("гор", ["городе"])]


# --- language share, text order, DER figures ---


def test_language_share_is_weighted_by_segment_duration():
    segments = [turn(0, 6, language="kk"), turn(6, 8, language="ru"), turn(8, 10, language="kk")]
    tally = language_seconds(segments, "kk")
    assert (tally.matched, tally.total) == (8.0, 10.0)
    assert tally.share == pytest.approx(0.8)
    # Counting segments instead would give 2/3; duration gives 0.2 for ru.
    assert language_seconds(segments, "ru").share == pytest.approx(0.2)
    assert language_seconds([], "kk").share is None


def test_the_whole_file_hypothesis_is_read_in_time_order():
    segments = [turn(5, 6, text="world"), turn(0, 1, text="hello"), turn(2, 3, text="big")]
    assert time_ordered_text(segments) == "hello big world"


def test_der_figures_include_confusion_within_detected_speech():
    figures = der_figures({"total": 10.0, "missed detection": 2.0, "false alarm": 1.0, "confusion": 2.0})
    assert figures["der"] == pytest.approx(0.5)
    assert (figures["der_missed"], figures["der_false_alarm"], figures["der_confusion"]) == (0.2, 0.1, 0.2)
    assert figures["der_confusion_within_detected"] == pytest.approx(2.0 / 8.0)
    assert der_figures({"total": 0.0})["der"] is None


# --- festvox-ru ---


def test_festvox_prompts_are_read_without_stress_marks():
    data = (
        '( ru_0001 "Корреспондент, американской газеты." )\n'
        '( ru_0002 "Она завела, прядь волнистых вол+ос за ухо." )\n'
        "\n"
        "not a prompt line\n"
    )
    assert parse_txt_done_data(data) == {
        "ru_0001": "Корреспондент, американской газеты.",
        "ru_0002": "Она завела, прядь волнистых волос за ухо.",
    }


def test_a_subset_is_spread_over_all_utterances_not_the_first_ones():
    utterances = [f"ru_{number:04d}" for number in range(1, 621)]
    chosen = evenly_spaced(utterances, 120)
    assert len(chosen) == len(set(chosen)) == 120
    assert chosen[0] == "ru_0003" and chosen[-1] == "ru_0618"
    assert chosen == evenly_spaced(utterances, 120)  # deterministic
    assert evenly_spaced(utterances[:5], 10) == utterances[:5]


def test_speaker_turns_without_a_language_are_scored_for_speakers_in_the_sets_languages(tmp_path):
    """The shared corpus's AMI and falcon_test excerpts: an RTTM, no transcript, no language in the name."""
    (tmp_path / "ami_meeting.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40))
    (tmp_path / "ami_meeting.rttm").write_text("SPEAKER x 1 0.5 2.0 <NA> <NA> s1 <NA> <NA>\n", encoding="utf-8")
    (reference,) = load_folder("mine", tmp_path)
    assert (reference.language, reference.text, reference.turns) == (None, None, (turn(0.5, 2.5, "s1"),))
    assert allowed_languages(("kk", "ru"), reference.language) == ("kk", "ru")
    # A transcript still needs its language.
    (tmp_path / "ami_meeting.txt").write_text("good morning", encoding="utf-8")
    (tmp_path / "ami_meeting.rttm").unlink()
    (tmp_path / "mystery.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40))
    (tmp_path / "mystery.txt").write_text("12 34", encoding="utf-8")
    with pytest.raises(SystemExit, match="no reference language"):
        load_folder("mine", tmp_path)
