"""Words + speaker turns → segments: pure logic, no model."""

from kazru.domain.recognition import Recognition, RecognizedSpan, RecognizedWord
from services.transcriber.assembly import assemble
from services.transcriber.diarization import Diarization, SpeakerTurn, _runs_to_turns, _smooth_short_runs


def span(language: str, *words: tuple[str, float, float]) -> RecognizedSpan:
    timed = tuple(RecognizedWord(start, end, text, 0.8) for text, start, end in words)
    return RecognizedSpan(timed[0].start, timed[-1].end, language, timed)


def test_each_turn_keeps_its_own_language_and_speaker():
    diarization = Diarization(
        turns=[SpeakerTurn(0.0, 2.0, "S7"), SpeakerTurn(2.5, 4.0, "S3"), SpeakerTurn(4.2, 6.0, "S7")], speech=[]
    )
    recognition = Recognition(
        engine="test",
        spans=[
            span("ru", ("Погода", 0.1, 0.5), ("хорошая.", 0.6, 1.2)),
            span("kk", ("Сәлеметсіз", 2.6, 3.2), ("бе?", 3.3, 3.6)),
            span("ru", ("Да.", 4.3, 4.6)),
        ],
    )
    transcript = assemble(recognition, diarization)
    assert [(s.speaker, s.language, s.text) for s in transcript.segments] == [
        ("S1", "ru", "Погода хорошая."),
        ("S2", "kk", "Сәлеметсіз бе?"),
        ("S1", "ru", "Да."),
    ]
    assert [(s.label, s.segment_count) for s in transcript.speakers] == [("S1", 2), ("S2", 1)]
    # Each segment spans its speaker's turn, wider than its words' alignment: 2.0 s + 1.8 s.
    assert [(s.start, s.end) for s in transcript.segments] == [(0.0, 2.0), (2.5, 4.0), (4.2, 6.0)]
    assert transcript.speakers[0].speaking_seconds == 3.8
    assert list(transcript.language_shares) == ["ru", "kk"]
    assert abs(sum(transcript.language_shares.values()) - 1) < 1e-3
    assert transcript.main_language == "ru"
    assert all(w.speaker == s.speaker for s in transcript.segments for w in s.words)


def test_a_long_pause_splits_a_turn_and_a_speaker_change_inside_a_span_splits_it():
    diarization = Diarization(turns=[SpeakerTurn(0.0, 5.0, "A"), SpeakerTurn(5.0, 8.0, "B")], speech=[])
    recognition = Recognition(
        engine="test",
        spans=[span("ru", ("раз", 0.0, 0.4), ("два", 2.0, 2.4), ("три", 2.5, 2.9), ("четыре", 5.2, 5.8))],
    )
    segments = assemble(recognition, diarization).segments
    # The two segments sharing turn A keep their word edges where they meet, so they never
    # overlap; the outer edges are the turns' (0.0, 5.0 and 8.0).
    assert [(s.speaker, s.text, s.start, s.end) for s in segments] == [
        ("S1", "раз", 0.0, 0.4),
        ("S1", "два три", 2.0, 5.0),
        ("S2", "четыре", 5.0, 8.0),
    ]
    assert segments[1].confidence == 0.8


def test_a_language_change_inside_a_turn_splits_at_the_words():
    diarization = Diarization(turns=[SpeakerTurn(1.0, 6.0, "A")], speech=[])
    recognition = Recognition(
        engine="test", spans=[span("ru", ("Привет,", 1.3, 1.9)), span("kk", ("сәлем", 2.1, 2.6), ("бәрі", 2.7, 5.5))]
    )
    segments = assemble(recognition, diarization).segments
    assert [(s.language, s.start, s.end) for s in segments] == [("ru", 1.0, 1.9), ("kk", 2.1, 6.0)]
    assert segments[0].end <= segments[1].start


def test_nothing_heard_is_an_empty_transcript():
    transcript = assemble(Recognition(engine="test", spans=[]), Diarization(turns=[], speech=[]))
    assert transcript.segments == [] and transcript.speakers == [] and transcript.language_shares == {}
    assert transcript.main_language is None


def test_words_without_diarized_speech_go_to_one_speaker():
    transcript = assemble(Recognition(engine="t", spans=[span("kk", ("иә", 1.0, 1.2))]), Diarization([], []))
    assert [s.speaker for s in transcript.segments] == ["S1"]


def test_short_flips_are_smoothed_and_long_stretches_cut():
    import numpy as np

    frames = np.array([0] * 200 + [1] * 30 + [0] * 200 + [-1] * 50 + [1] * 300)  # 10 ms frames
    _smooth_short_runs(frames, min_frames=60)
    assert set(frames[:430]) == {0}  # the 0.3 s flip inside speaker 0 is gone
    turns = _runs_to_turns(frames)
    assert [(t.speaker, round(t.start, 2), round(t.end, 2)) for t in turns] == [("0", 0.0, 4.3), ("1", 4.8, 7.8)]
    long = np.zeros(6000, dtype=int)  # 60 s of one voice with no pause
    assert [round(t.end - t.start, 1) for t in _runs_to_turns(long)] == [28.0, 28.0, 4.0]


def test_speaker_at_finds_the_most_overlapping_or_nearest_turn():
    import random

    rng = random.Random(5)
    turns, at = [], 0.0
    for index in range(300):
        at += rng.uniform(0.0, 1.5)
        length = rng.uniform(0.2, 6.0)
        turns.append(SpeakerTurn(at, at + length, f"S{index % 4 + 1}"))
        at += length
    diarization = Diarization(turns=turns, speech=[])

    def by_scanning_every_turn(start, end):
        overlaps = [(min(end, t.end) - max(start, t.start), t.speaker) for t in turns]
        best = max(overlaps, key=lambda item: item[0])
        if best[0] > 0:
            return best[1]
        middle = (start + end) / 2
        return min(turns, key=lambda t: max(t.start - middle, middle - t.end, 0.0)).speaker

    for _ in range(2000):
        start = rng.uniform(-2.0, at + 2.0)
        end = start + rng.uniform(0.0, 2.0)
        assert diarization.speaker_at(start, end) == by_scanning_every_turn(start, end), (start, end)
