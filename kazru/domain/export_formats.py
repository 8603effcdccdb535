"""Export format names as clients write them ("srt") ↔ the kazru.v1.ExportFormat enum.

Derived from the enum itself, so a format added to export.proto is known to the
HTTP API, the CLI and the tests without another list to keep in step.
"""

from kazru.v1 import export_pb2

BY_NAME: dict[str, int] = {
    value.name.removeprefix("EXPORT_FORMAT_").lower(): value.number
    for value in export_pb2.ExportFormat.DESCRIPTOR.values
    if value.number != export_pb2.EXPORT_FORMAT_UNSPECIFIED
}
