"""A transcript's language shares: each language's part of the speech time, largest first. Computed by the
transcriber when it writes a transcript, and again when a person corrects a segment's language."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable


def language_shares(spans: Iterable[tuple[str, float]]) -> dict[str, float]:
    """(language, seconds) of each segment → language → share of the total, 0..1, largest first."""
    seconds: dict[str, float] = defaultdict(float)
    for language, length in spans:
        seconds[language] += max(length, 0.0)
    total = math.fsum(seconds.values())
    if total <= 0:
        return {}
    ranked = sorted(seconds.items(), key=lambda item: item[1], reverse=True)
    return {language: round(value / total, 4) for language, value in ranked}
