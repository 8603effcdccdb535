"""Subtitle captions from speaker segments: a pure function, shared by SRT and VTT.

Practice followed (Netflix/BBC-style timed-text guidelines): at most 2 lines of at
most 42 characters, 1-7 s on screen, at most 20 characters per second where the
timing allows, no overlaps, breaks only between words, a new caption at every
segment (speaker turn), and the speaker's name at the start of a caption whenever
the speaker changes.

Word timings place the breaks. A segment without words, or one whose text a person
edited (the recognised words no longer match the text), is timed by spreading its
text over the segment's span in proportion to the characters.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

MAX_LINE_CHARS = 42
MAX_LINES = 2
MIN_MS = 1000
MAX_MS = 7000
MAX_CHARS_PER_SECOND = 20
# Prefer to end a caption at a sentence end once it holds at least this much text.
SENTENCE_BREAK_MIN_CHARS = MAX_LINE_CHARS
SENTENCE_ENDS = (".", "!", "?", "…")


class TimedWord(NamedTuple):
    # A tuple, not a dataclass: a long transcript makes tens of thousands of them.
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class CaptionSource:
    """One segment as the splitter needs it."""

    start: float
    end: float
    text: str
    # Speaker label ("S1") and the name to show; None when diarization gave none.
    speaker: str | None = None
    speaker_name: str | None = None
    # The recognised words, or empty when they cannot be used (none, or the text was edited):
    # TimedWord, or any sequence that starts with start, end, text.
    words: Sequence[Sequence[Any]] = ()
    # The segment's language, where captions should say it (a transcript in more than one); else None.
    language: str | None = None


@dataclass(frozen=True)
class Caption:
    start_ms: int
    end_ms: int
    lines: tuple[str, ...]
    # The speaker's name (None without diarization), and whether this caption is the
    # first of a new speaker, which shows the name before the text.
    speaker_name: str | None = None
    announce: bool = False
    language: str | None = None

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def name_prefix(name: str | None, language: str | None = None) -> str:
    """`Aigerim: `, or with the language where captions say it, `Aigerim (kk): ` (`(kk): ` without a name).

    The name is always whole (a cut name is a different person's): when no text fits beside it, the
    text starts on the caption's second line, and only a name longer than a line makes its line longer."""
    label = name or ""
    if language:
        label = f"{label} ({language})".strip()
    return f"{label}: " if label else ""


class _Token(NamedTuple):
    start_ms: int
    end_ms: int
    text: str


def _split_long(text: str) -> list[str]:
    """A 'word' longer than a line (a URL, a run of letters) is cut into line-sized pieces."""
    return [text[i : i + MAX_LINE_CHARS] for i in range(0, len(text), MAX_LINE_CHARS)] or [text]


def _tokens(source: CaptionSource) -> list[_Token]:
    start_ms, end_ms = round(source.start * 1000), round(source.end * 1000)
    tokens: list[_Token] = []
    for start, end, raw_text, *_ in source.words:
        text = raw_text.strip()
        if not text:
            continue
        w_start = round(start * 1000)
        w_end = max(round(end * 1000), w_start)
        if len(text) <= MAX_LINE_CHARS:
            tokens.append(_Token(w_start, w_end, text))
            continue
        pieces = _split_long(text)
        step = (w_end - w_start) / len(pieces)
        for index, piece in enumerate(pieces):
            tokens.append(_Token(round(w_start + index * step), round(w_start + (index + 1) * step), piece))
    if tokens:
        return tokens
    # No usable word timings: spread the text over the segment by characters (a space counts as one).
    pieces = [piece for part in source.text.split() for piece in _split_long(part)]
    total_chars = sum(len(p) + 1 for p in pieces)
    span = max(end_ms - start_ms, 0)
    tokens, offset = [], 0
    for piece in pieces:
        t_start = start_ms + span * offset // total_chars
        offset += len(piece) + 1
        tokens.append(_Token(t_start, start_ms + span * offset // total_chars, piece))
    return tokens


def _best_split(lengths: Sequence[int], first_line_chars: int) -> int | None:
    """Where to break words of these lengths into lines: len(lengths) for one line; k for two
    balanced lines words[:k] / words[k:] (0: all on the second, beside a name on the first);
    None when they do not fit."""
    total = sum(lengths) + len(lengths) - 1
    if total <= first_line_chars:
        return len(lengths)
    best, best_longest = None, MAX_LINE_CHARS + 1
    first = -1
    # With a name on the first line, the text may start on the second one.
    if first_line_chars < MAX_LINE_CHARS and total <= MAX_LINE_CHARS:
        best, best_longest = 0, total
    for split in range(1, len(lengths)):
        first += lengths[split - 1] + 1
        second = total - first - 1
        if first > first_line_chars:
            break
        longest = max(first, second)
        if second <= MAX_LINE_CHARS and longest < best_longest:
            best, best_longest = split, longest
    return best


def break_lines(words: Sequence[str], first_line_chars: int = MAX_LINE_CHARS) -> tuple[str, ...] | None:
    """The words on at most 2 balanced lines within the limits, or None when they do not fit."""
    split = _best_split([len(word) for word in words], first_line_chars)
    if split is None:
        return None
    if split == len(words):
        return (" ".join(words),)
    return " ".join(words[:split]), " ".join(words[split:])


def _fits(lengths: Iterable[int], first_line_chars: int) -> bool:
    """Whether words of these lengths fit in 2 lines. Filling the first line greedily leaves the
    least for the second, so if this fails no break does."""
    line, limit, second = -1, first_line_chars, False
    for length in lengths:
        if line + 1 + length <= limit:
            line += 1 + length
        elif second or length > MAX_LINE_CHARS:
            return False
        else:
            line, limit, second = length, MAX_LINE_CHARS, True
    return True


def _groups(tokens: list[_Token], first_line_chars: int) -> list[tuple[list[_Token], tuple[str, ...]]]:
    """Greedy: add words while they fit in 2 lines and 7 s; prefer to stop at a sentence end.
    Then a short last caption (a word or two left over) shares the previous caption's words."""
    groups: list[list[_Token]] = []
    group: list[_Token] = []
    reserve = first_line_chars
    # The greedy fill of the group's lines, kept as words are added (see _fits).
    line, limit, second, chars = -1, reserve, False, 0
    for token in tokens:
        length = len(token.text)
        if group:
            if line + 1 + length <= limit:
                fits, next_line, next_limit, next_second = True, line + 1 + length, limit, second
            else:
                fits, next_line, next_limit, next_second = not second, length, MAX_LINE_CHARS, True
            too_long = token.end_ms - group[0].start_ms > MAX_MS
            sentence_done = chars >= SENTENCE_BREAK_MIN_CHARS and group[-1].text.endswith(SENTENCE_ENDS)
            if fits and not too_long and not sentence_done:
                group.append(token)
                line, limit, second, chars = next_line, next_limit, next_second, chars + length
                continue
            groups.append(group)
            reserve = MAX_LINE_CHARS
        group = [token]
        chars = length
        if length <= reserve:
            line, limit, second = length, reserve, False
        else:  # beside a long name: the text starts on the second line
            line, limit, second = length, MAX_LINE_CHARS, True
    if group:
        groups.append(group)
    if len(groups) >= 2 and _too_short(groups[-1]):
        groups[-2:] = _rebalance(groups[-2], groups[-1], first_line_chars if len(groups) == 2 else MAX_LINE_CHARS)
    return [
        (group, _lines(group, first_line_chars if index == 0 else MAX_LINE_CHARS)) for index, group in enumerate(groups)
    ]


def _too_short(group: list[_Token]) -> bool:
    return group[-1].end_ms - group[0].start_ms < MIN_MS or sum(len(t.text) + 1 for t in group) < MAX_LINE_CHARS // 2


def _rebalance(before: list[_Token], last: list[_Token], first_line_chars: int) -> list[list[_Token]]:
    """Split the words of two captions where the two are most even in length, if that fits."""
    pool = before + last
    lengths = [len(t.text) for t in pool]
    total = sum(lengths)
    head_chars = list(itertools.accumulate(lengths))
    for split in sorted(range(1, len(pool)), key=lambda split: abs(2 * head_chars[split - 1] - total)):
        head, tail = pool[:split], pool[split:]
        if (
            _fits(lengths[:split], first_line_chars)
            and _fits(lengths[split:], MAX_LINE_CHARS)
            and head[-1].end_ms - head[0].start_ms <= MAX_MS
            and tail[-1].end_ms - tail[0].start_ms <= MAX_MS
        ):
            return [head, tail]
    return [before, last]


def _lines(group: list[_Token], first_line_chars: int) -> tuple[str, ...]:
    words = [token.text for token in group]
    return break_lines(words, first_line_chars) or (" ".join(words),)


class CaptionBuilder:
    """Incremental: `add` each segment in order, then `finish`. Each returns the captions that
    are final by then (a caption's end waits for the next caption's start)."""

    def __init__(self) -> None:
        self._pending: Caption | None = None
        self._previous_end = 0
        self._speaker: str | None = None
        self._language: str | None = None

    def add(self, source: CaptionSource) -> list[Caption]:
        tokens = _tokens(source)
        if not tokens:
            return []
        announce = (source.speaker is not None and source.speaker != self._speaker) or (
            source.language is not None and source.language != self._language
        )
        if source.speaker is not None:
            self._speaker = source.speaker
        self._language = source.language
        name = source.speaker_name or source.speaker
        first_line_chars = MAX_LINE_CHARS - len(name_prefix(name, source.language) if announce else "")
        done = []
        for number, (group, lines) in enumerate(_groups(tokens, first_line_chars)):
            draft = Caption(group[0].start_ms, group[-1].end_ms, lines, name, announce and number == 0, source.language)
            if self._pending is not None:
                done.append(self._time(self._pending, draft.start_ms))
            self._pending = draft
        return done

    def finish(self) -> list[Caption]:
        if self._pending is None:
            return []
        last, self._pending = self._time(self._pending, None), None
        return [last]

    def _time(self, draft: Caption, next_start: int | None) -> Caption:
        """No overlaps; at least 1 s and slow enough to read where the next caption allows; at most 7 s."""
        start = max(draft.start_ms, self._previous_end)
        shown = name_prefix(draft.speaker_name, draft.language) if draft.announce else ""
        chars = sum(len(line) for line in draft.lines) + len(shown)
        wanted = max(draft.end_ms - start, MIN_MS, -(-chars * 1000 // MAX_CHARS_PER_SECOND))
        end = start + min(wanted, MAX_MS)
        if next_start is not None:
            end = min(end, max(next_start, start + 1))
        end = max(end, start + 1)
        self._previous_end = end
        return Caption(start, end, draft.lines, draft.speaker_name, draft.announce, draft.language)


def build_captions(sources: Iterable[CaptionSource]) -> list[Caption]:
    builder = CaptionBuilder()
    captions = [caption for source in sources for caption in builder.add(source)]
    return captions + builder.finish()
