"""Range header parsing for the audio endpoint (RFC 9110 §14): one range, or none."""

from __future__ import annotations

import pytest

from kazru.adapters.byte_ranges import ByteRange, Unsatisfiable, parse_range

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", ByteRange(0, 99)),
        ("bytes=0-0", ByteRange(0, 0)),
        ("bytes=-100", ByteRange(900, 999)),
        ("bytes=-5000", ByteRange(0, 999)),
        ("bytes=500-", ByteRange(500, 999)),
        ("bytes=999-", ByteRange(999, 999)),
        ("bytes=10-99999", ByteRange(10, 999)),
        ("Bytes = 1 - 2", ByteRange(1, 2)),
    ],
)
def test_one_range(header, expected):
    assert parse_range(header, SIZE) == expected


@pytest.mark.parametrize("header", [None, "", "bytes=0-1,5-6", "items=0-5", "bytes=9-3", "bytes=abc", "bytes=-", "0-5"])
def test_what_is_not_one_byte_range_asks_for_everything(header):
    assert parse_range(header, SIZE) is None


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=1000-2000", "bytes=-0"])
def test_ranges_outside_the_object_are_unsatisfiable(header):
    with pytest.raises(Unsatisfiable) as raised:
        parse_range(header, SIZE)
    assert raised.value.size == SIZE


def test_content_range_and_length():
    part = ByteRange(900, 999)
    assert (part.length, part.content_range(SIZE)) == (100, "bytes 900-999/1000")
