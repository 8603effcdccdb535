"""HTTP Range requests (RFC 9110 §14) for one byte range: enough for a browser's <audio> to seek
(the gateway's audio route) and for ffmpeg (kazru.adapters.storage's plaintext URL).

A request for several ranges is answered with the whole object (200), which RFC 9110 allows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ONE_RANGE = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class ByteRange:
    start: int
    # Inclusive, as in Content-Range.
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


class Unsatisfiable(Exception):
    """A well-formed range outside the object: HTTP 416 (HTTP only, so not a domain error)."""

    def __init__(self, size: int):
        super().__init__(f"the requested range is outside the {size} bytes of the audio")
        self.size = size


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one range `header` asks for within `size` bytes; None: send everything.

    Raises Unsatisfiable (416) for a well-formed range that lies outside the object.
    A header that is not a byte range we understand is ignored, as RFC 9110 says.
    """
    if not header:
        return None
    matched = _ONE_RANGE.fullmatch(header)
    if matched is None or not any(matched.groups()):
        return None
    first, last = matched.groups()
    if not first:  # a suffix: the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable(size)
        return ByteRange(max(size - suffix, 0), size - 1)
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise Unsatisfiable(size)
    return ByteRange(start, min(int(last), size - 1) if last else size - 1)
