"""Rules every upload follows, wherever it is checked (gateway or ingest).

gRPC ends a cancelled client stream on the server just like a finished one,
so an upload counts as whole only when its last message is `complete` with
the number of bytes sent, and that number matches what arrived.
"""

from __future__ import annotations

from kazru.domain import errors


def check_complete(declared: int | None, received: int) -> None:
    if declared is None:
        raise errors.InvalidArgument("the upload ended without 'complete'", code="UPLOAD_INCOMPLETE")
    if declared != received:
        raise errors.InvalidArgument(
            f"'complete' declared {declared} bytes but {received} arrived", code="UPLOAD_SIZE_MISMATCH"
        )


# The most speakers an upload may ask for (min_speakers, max_speakers); the CLI checks it before uploading.
MAX_SPEAKERS = 10

# The containers ingest recognises (kazru.adapters.audio.sniff_container), as the NOT_AUDIO error lists
# them; video files count for their sound.
SUPPORTED_FORMATS = "WAV, FLAC, MP3, OGG/Opus, M4A/MP4/MOV/3GP, WebM/MKV, AAC, AMR, AIFF, WMA, AVI, MPEG-TS"


def not_audio() -> errors.UnsupportedMedia:
    return errors.UnsupportedMedia(f"the file is not a supported audio format ({SUPPORTED_FORMATS})", code="NOT_AUDIO")


def too_large(max_bytes: int) -> errors.UploadTooLarge:
    return errors.UploadTooLarge(
        f"the file is larger than the {max_bytes // (1024 * 1024)} MiB limit", details={"max_bytes": max_bytes}
    )


RECORDING_TOO_LONG = "RECORDING_TOO_LONG"


def recording_too_long(limit_seconds: float, duration_seconds: float | None = None) -> errors.UploadTooLarge:
    """A recording longer than the service takes (KAZRU_MAX_DURATION_SECONDS), naming the limit: refused at
    upload by its header's length, or while decoding (`duration_seconds` None) when the header told none or
    undersold it."""
    limit = f"at most {limit_seconds / 3600:g} h are accepted"
    if duration_seconds is None:
        message, details = f"the recording is longer than the service takes; {limit}", {}
    else:
        message = f"the recording is {duration_seconds / 3600:.1f} h long; {limit}"
        details = {"duration_seconds": f"{duration_seconds:.1f}"}
    return errors.UploadTooLarge(
        message, code=RECORDING_TOO_LONG, details={"max_duration_seconds": f"{limit_seconds:g}", **details}
    )


# After refusing a client-streamed upload, read (and drop) at most this much more of it.
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024
DRAIN_TIMEOUT_SECONDS = 10.0


async def refuse_after_draining(request_iterator, error: BaseException) -> None:
    """Read the rest of a refused upload stream (bounded), then raise `error`.

    A gRPC server that answers a client stream while the client is still writing makes the
    client's next write fail, and grpc.aio then reports "INTERNAL: Internal error from Core"
    instead of our status. Reading to the end first lets the client see the real reason.
    """
    import asyncio

    async def drain() -> None:
        drained = 0
        async for message in request_iterator:
            drained += message.ByteSize()
            if drained > DRAIN_LIMIT_BYTES:
                return

    try:
        await asyncio.wait_for(drain(), DRAIN_TIMEOUT_SECONDS)
    except Exception:  # noqa: BLE001 - the stream is broken or slow: answer now anyway
        pass
    raise error
