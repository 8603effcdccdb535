"""Streaming multipart/form-data: the uploaded file passes through in chunks, never whole.

`read_form` turns the raw request body into events, in body order:
`Field(name, value)` for small text fields, `FileStart(filename, content_type)`,
`bytes` for each piece of the file, `FileEnd()`. Text fields are capped so a
hostile body cannot make the gateway buffer much.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import unquote

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from kazru.domain import errors

FILE_FIELD = "file"
MAX_FIELD_BYTES = 1024
MAX_FIELDS = 16


@dataclass(frozen=True)
class Field:
    name: str
    value: str


@dataclass(frozen=True)
class FileStart:
    filename: str
    content_type: str


@dataclass(frozen=True)
class FileEnd:
    pass


def boundary_of(content_type: str | None) -> bytes:
    media_type, params = parse_options_header(content_type or "")
    if media_type != b"multipart/form-data" or not params.get(b"boundary"):
        raise errors.InvalidArgument("the upload must be multipart/form-data with a 'file' field", code="NOT_MULTIPART")
    return params[b"boundary"]


def _filename(disposition_params: dict[bytes, bytes], raw_disposition: bytes) -> str:
    name = disposition_params.get(b"filename", b"").decode("utf-8", "replace")
    # Some clients send only the RFC 5987 form: filename*=UTF-8''%D0%90...
    for part in raw_disposition.decode("latin-1").split(";"):
        key, _, value = part.strip().partition("=")
        if key.lower() == "filename*" and "''" in value:
            charset, _, encoded = value.partition("''")
            return unquote(encoded, encoding=charset or "utf-8", errors="replace")
    return name


class _PartCollector:
    """Callbacks for python-multipart's push parser; events pile up until drained."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._field_name: str | None = None
        self._field_value = bytearray()
        self._in_file = False
        self._fields = 0

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._header_name.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers = {}
        self._field_name = None
        self._field_value.clear()
        self._in_file = False

    def _header_end(self) -> None:
        self._headers[bytes(self._header_name).lower()] = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        disposition = self._headers.get(b"content-disposition", b"")
        _, params = parse_options_header(disposition)
        name = params.get(b"name", b"").decode("utf-8", "replace")
        self._fields += 1
        if self._fields > MAX_FIELDS:
            raise errors.InvalidArgument("too many form fields", code="TOO_MANY_FIELDS")
        if name == FILE_FIELD:
            self._in_file = True
            content_type = self._headers.get(b"content-type", b"application/octet-stream").decode("latin-1")
            self.events.append(FileStart(_filename(params, disposition), content_type))
        else:
            self._field_name = name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.events.append(bytes(data[start:end]))
            return
        self._field_value.extend(data[start:end])
        if len(self._field_value) > MAX_FIELD_BYTES:
            raise errors.InvalidArgument(f"form field '{self._field_name}' is too long", code="FIELD_TOO_LONG")

    def _part_end(self) -> None:
        if self._in_file:
            self.events.append(FileEnd())
        elif self._field_name is not None:
            self.events.append(Field(self._field_name, self._field_value.decode("utf-8", "replace")))


async def read_form(body: AsyncIterator[bytes], content_type: str | None) -> AsyncIterator[object]:
    collector = _PartCollector()
    parser = MultipartParser(boundary_of(content_type), collector.callbacks())
    async for chunk in body:
        try:
            parser.write(chunk)
        except MultipartParseError as error:
            raise errors.InvalidArgument("the multipart body is malformed", code="MALFORMED_MULTIPART") from error
        events, collector.events = collector.events, []
        for event in events:
            yield event
    try:
        parser.finalize()
    except MultipartParseError as error:
        raise errors.InvalidArgument("the multipart body is malformed", code="MALFORMED_MULTIPART") from error
    if parser.state != MultipartState.END:
        # A body cut off mid-file must not pass for a whole file: only the closing boundary says it is.
        raise errors.InvalidArgument("the multipart body ended before its closing boundary", code="MALFORMED_MULTIPART")
    for event in collector.events:
        yield event
