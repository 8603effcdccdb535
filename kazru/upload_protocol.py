"""Rules every upload follows, wherever it is checked (gateway or ingest).

gRPC ends a cancelled client stream on the server just like a finished one,
so an upload counts as whole only when its last message is `complete` with
the number of bytes sent, and that number matches what arrived.
"""

from __future__ import annotations

from kazru import errors


def check_complete(declared: int | None, received: int) -> None:
    if declared is None:
        raise errors.InvalidArgument("the upload ended without 'complete'", code="UPLOAD_INCOMPLETE")
    if declared != received:
        raise errors.InvalidArgument(
            f"'complete' declared {declared} bytes but {received} arrived", code="UPLOAD_SIZE_MISMATCH"
        )


def too_large(max_bytes: int) -> errors.UploadTooLarge:
    return errors.UploadTooLarge(
        f"the file is larger than the {max_bytes // (1024 * 1024)} MiB limit", details={"max_bytes": max_bytes}
    )
