"""The streaming form reader, fed the way a socket delivers a body: in arbitrary pieces."""

import pytest

from kazru.domain import errors
from services.gateway import multipart

BOUNDARY = "----kazruBoundary7MA4YWxkTrZu0gW"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def form(*parts: tuple[str, str | None, bytes]) -> bytes:
    body = b""
    for name, filename, value in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            body += b"Content-Type: audio/flac\r\n"
        body += b"\r\n" + value + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


async def events_of(body: bytes, piece: int) -> list:
    async def stream():
        for start in range(0, len(body), piece):
            yield body[start : start + piece]

    return [event async for event in multipart.read_form(stream(), CONTENT_TYPE)]


def file_bytes(events: list) -> bytes:
    return b"".join(event for event in events if isinstance(event, bytes))


@pytest.mark.parametrize("piece", [1, 7, 64, 100_000])
async def test_fields_and_file_in_order_whatever_the_chunking(piece):
    payload = bytes(range(256)) * 40 + b"\r\n--not-a-boundary\r\n"
    events = await events_of(
        form(("language", None, b"kk,ru"), ("file", "запись.flac", payload), ("max_speakers", None, b"3")), piece
    )
    assert events[0] == multipart.Field("language", "kk,ru")
    assert events[1] == multipart.FileStart("запись.flac", "audio/flac")
    assert file_bytes(events) == payload
    assert multipart.FileEnd() in events
    assert events[-1] == multipart.Field("max_speakers", "3")


async def test_rfc5987_filename_star_wins():
    body = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"; '
        f"filename*=UTF-8''%D2%9B%D0%B0%D0%B7.wav\r\n\r\nRIFF\r\n--{BOUNDARY}--\r\n"
    ).encode()
    events = await events_of(body, 1000)
    assert events[0] == multipart.FileStart("қаз.wav", "application/octet-stream")


async def test_oversized_text_field_is_refused():
    with pytest.raises(errors.InvalidArgument, match="too long"):
        await events_of(form(("language", None, b"x" * 5000)), 512)


async def test_too_many_fields_are_refused():
    with pytest.raises(errors.InvalidArgument, match="too many"):
        await events_of(form(*[(f"f{i}", None, b"1") for i in range(40)]), 512)


@pytest.mark.parametrize("content_type", [None, "application/json", "multipart/form-data", "text/plain; boundary=x"])
async def test_not_multipart(content_type):
    async def stream():
        yield b"{}"

    with pytest.raises(errors.InvalidArgument) as caught:
        [event async for event in multipart.read_form(stream(), content_type)]
    assert caught.value.code == "NOT_MULTIPART"


async def test_garbage_body_is_malformed():
    with pytest.raises(errors.InvalidArgument) as caught:
        await events_of(b"this is not a multipart body at all", 10)
    assert caught.value.code == "MALFORMED_MULTIPART"


CLOSING = len(f"--{BOUNDARY}--\r\n")


@pytest.mark.parametrize(
    "cut", [CLOSING, CLOSING - 3, CLOSING + 2, 100], ids=["no-closing", "half-closing", "no-crlf", "mid-file"]
)
async def test_a_body_cut_before_its_closing_boundary_is_malformed(cut):
    body = form(("file", "a.flac", b"fLaC" + bytes(5000)))
    with pytest.raises(errors.InvalidArgument) as caught:
        await events_of(body[:-cut], 64)
    assert caught.value.code == "MALFORMED_MULTIPART"


async def test_the_closing_boundary_without_its_last_crlf_is_whole():
    assert file_bytes(await events_of(form(("file", "a.flac", b"fLaC"))[:-2], 64)) == b"fLaC"
