"""The rule that ends every client-streamed upload (public and internal).

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
