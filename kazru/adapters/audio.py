"""Audio: recognise containers from their first bytes, probe and decode with ffmpeg.

ffmpeg reads a stored object through the store's plaintext URL (decrypted on
127.0.0.1 from ranged S3 reads): ingest probes the stored object, the
transcriber decodes it once to 16 kHz mono PCM in a local file
(`decode_to_file`) and reads it back piece by piece (`Recording`), so a long
recording costs disk, not memory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from kazru.domain import errors, upload_protocol
from kazru.domain.recognition import RecordedAudio

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
# Decoded PCM: 16-bit signed little-endian, one channel.
PCM_SAMPLE_BYTES = 2
# Enough bytes to recognise every container we accept: an MPEG transport stream shows itself by
# a sync byte at the start of three packets (192-byte M2TS packets: the third at 4 + 2 × 192).
SNIFF_BYTES = 4 + 2 * 192 + 1
# The header object GUID that starts every ASF file (WMA, WMV).
ASF_HEADER = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
TS_SYNC = 0x47


@lru_cache(maxsize=1)
def _default_ffmpeg() -> str:
    system = shutil.which("ffmpeg")
    if system:
        return system
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_exe(configured: str = "") -> str:
    return configured or _default_ffmpeg()


def sniff_container(head: bytes) -> str | None:
    """Name of the audio container the first bytes announce, or None. Video containers count when
    they can carry sound (a film, a TV recording): whether there really is an audio stream is for
    ffmpeg's probe to say."""
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if len(head) >= 12 and head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[:5] == b"#!AMR":  # AMR-NB ("#!AMR\n") and AMR-WB ("#!AMR-WB\n"): phone recorders
        return "amr"
    if head[:16] == ASF_HEADER:
        return "asf"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:3] == b"ID3":
        return "mp3"
    # MPEG audio frame sync: 11 set bits, then a valid version and layer.
    if (
        len(head) >= 2
        and head[0] == 0xFF
        and (head[1] & 0xE0) == 0xE0
        and (head[1] & 0x18) != 0x08
        and (head[1] & 0x06) != 0
    ):
        return "mp3"
    # ADTS (raw AAC, .aac): 12 set sync bits, then layer 00.
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xF6) == 0xF0:
        return "aac"
    # ISO media (MP4, M4A, MOV, 3GP) opens with its ftyp box; QuickTime files older than ftyp with moov,
    # mdat or a wide box.
    if len(head) >= 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide"):
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    for first, packet in ((0, 188), (4, 192)):  # MPEG-TS (.ts, DVB and IPTV recordings); M2TS (.mts, .m2ts)
        if (
            len(head) > first + 2 * packet
            and head[first] == head[first + packet] == head[first + 2 * packet] == TS_SYNC
        ):
            return "mpegts"
    return None


@dataclass(frozen=True)
class AudioInfo:
    duration_seconds: float | None
    codec: str
    channels: int
    sample_rate: int


_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_AUDIO_STREAM = re.compile(r"Stream #\d+:\d+(?:\[\w+\])?(?:\(\w+\))?: Audio: (\w+)[^,\n]*, (\d+) Hz, ([^,\n]+)")
_CHANNEL_LAYOUTS = {"mono": 1, "stereo": 2, "2.1": 3, "quad": 4, "5.0": 5, "5.1": 6, "6.1": 7, "7.1": 8}


def _channel_count(layout: str) -> int:
    layout = layout.strip().split("(")[0]
    if layout in _CHANNEL_LAYOUTS:
        return _CHANNEL_LAYOUTS[layout]
    match = re.match(r"(\d+) channels", layout)
    return int(match.group(1)) if match else 0


def parse_ffmpeg_probe(stderr: str) -> AudioInfo:
    """Read duration and the first audio stream from `ffmpeg -i` output."""
    stream = _AUDIO_STREAM.search(stderr)
    if stream is None:
        raise errors.UnsupportedMedia(NO_AUDIO_TRACK_MESSAGE, code="NO_AUDIO_TRACK")
    duration = _DURATION.search(stderr)
    seconds = None
    if duration:
        hours, minutes, secs = duration.groups()
        seconds = int(hours) * 3600 + int(minutes) * 60 + float(secs)
    return AudioInfo(
        duration_seconds=seconds,
        codec=stream.group(1),
        channels=_channel_count(stream.group(3)),
        sample_rate=int(stream.group(2)),
    )


# ffmpeg's summary after decoding the first second: nothing came out (e.g. a WAV header with no data).
_DECODED_NOTHING = re.compile(r"\baudio:0KiB\b|Output file is empty")
_FFMPEG_SUMMARY_LINES = ("Conversion failed!", "Error opening output files", "Error while decoding")


def _ffmpeg_reason(stderr: str) -> str:
    """The most specific line of ffmpeg's complaint (its last lines are generic summaries)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    specific = [line for line in lines if not line.startswith(_FFMPEG_SUMMARY_LINES)]
    return (specific or lines or ["ffmpeg failed"])[-1][:300]


# What ffmpeg's complaints mean, in words the person who uploaded the file understands. ffmpeg's own words
# never reach a client: they name the internal URL it read (with its token) and mean nothing to a person;
# they go to the log (`_log_ffmpeg_output`). First match wins.
NO_AUDIO_TRACK_MESSAGE = "the file has no sound track (a video without sound?): there is nothing to transcribe"
UNDECODABLE_MESSAGE = "the recording is damaged or cut short: its sound could not be decoded"
_FFMPEG_COMPLAINTS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"matches no streams|does not contain any stream"), "NO_AUDIO_TRACK", NO_AUDIO_TRACK_MESSAGE),
    (re.compile(r"no decoder found|Decoder \(codec [^)]*\) not found|[Uu]nsupported codec|[Uu]nknown codec"
                r"|codec not currently supported"), "AUDIO_CODEC_UNSUPPORTED",
     "the sound in the file is encoded in a way this service cannot decode; save it as MP3, FLAC, WAV or Opus "
     "and upload it again"),
    (re.compile(r"Invalid data found when processing input|moov atom not found|EBML header parsing failed"
                r"|Failed to find two consecutive MPEG audio frames|no 'fmt ' tag"), "AUDIO_UNDECODABLE",
     "the file could not be read as a recording: it is damaged, cut short, or not audio at all"),
)  # fmt: skip
# ffmpeg's listing of the input (indented: streams, metadata such as titles) and its progress lines say
# nothing about what went wrong and may hold the person's own words: the log gets the complaints only.
_FFMPEG_CHATTER = ("Input #", "Output #", "Stream mapping", "Press [q]", "size=", "video:", "[out#")


def _log_ffmpeg_output(what: str, source: str, stderr: str) -> None:
    complaints = [line.strip() for line in stderr.splitlines()
                  if line.strip() and not line[0].isspace() and not line.startswith(_FFMPEG_CHATTER)]  # fmt: skip
    # The plaintext URL's path is a secret while it is served; a log keeps no secrets.
    text = "\n".join(complaints[-12:]).replace(source, "<input>")[:2000]
    log.warning(what, extra={"ffmpeg_output": text})


def _undecodable(source: str, stderr: str) -> errors.UnsupportedMedia:
    """The error a client sees when ffmpeg could not decode `source`, in plain words."""
    _log_ffmpeg_output("ffmpeg could not decode the input", source, stderr)
    for pattern, code, message in _FFMPEG_COMPLAINTS:
        if pattern.search(stderr):
            return errors.UnsupportedMedia(message, code=code)
    return errors.UnsupportedMedia(UNDECODABLE_MESSAGE, code="AUDIO_UNDECODABLE")


async def _run_ffmpeg(
    ffmpeg: str, args: list[str], capture_stdout: bool, stdin: bytes | None = None
) -> tuple[int, bytes, str]:
    """Run ffmpeg (feeding it `stdin` if given); a cancelled caller kills it rather than leaving it running."""
    process = await asyncio.create_subprocess_exec(
        ffmpeg_exe(ffmpeg), "-hide_banner", *(["-nostdin"] if stdin is None else []), *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else None,
        stdout=asyncio.subprocess.PIPE if capture_stdout else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        stdout, stderr = await process.communicate(stdin)
    except BaseException:
        if process.returncode is None:
            process.kill()
            await asyncio.shield(process.wait())
        raise
    return process.returncode, stdout or b"", stderr.decode("utf-8", "replace")


# What ffmpeg says when reading a URL failed, rather than the bytes it read: the object store is
# down, restarting or refusing. Retrying can help; calling the audio undecodable would be wrong.
_SOURCE_UNREACHABLE = re.compile(
    r"Connection refused|Connection reset|Connection timed out|timed out|Server returned (?:5XX|5\d\d|4\d\d)"
    r"|HTTP error|Input/output error|Network is unreachable|Broken pipe",
    re.IGNORECASE,
)


def _check_source_reachable(source: str, stderr: str) -> None:
    if "://" in source and _SOURCE_UNREACHABLE.search(stderr):
        _log_ffmpeg_output("ffmpeg could not read the stored object", source, stderr)
        raise errors.Unavailable("object storage is unavailable; try again", code="STORAGE_UNAVAILABLE")


async def probe(source: str, ffmpeg: str = "") -> AudioInfo:
    """Probe `source` (path or URL) and check that its first second really decodes."""
    code, _, stderr = await _run_ffmpeg(
        ffmpeg, ["-i", source, "-map", "0:a:0", "-t", "1", "-f", "null", "-"], capture_stdout=False
    )
    _check_source_reachable(source, stderr)
    if code != 0:
        raise _undecodable(source, stderr)
    if _DECODED_NOTHING.search(stderr):
        raise errors.UnsupportedMedia("the file holds no audio samples", code="AUDIO_EMPTY")
    return parse_ffmpeg_probe(stderr)


_DECODE_ARGS = ["-map", "0:a:0", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "s16le"]


def _check_decoded(source: str, code: int, stderr: str) -> None:
    # Also when ffmpeg exits 0: a read cut off mid-stream must not pass for a shorter recording.
    _check_source_reachable(source, stderr)
    if code != 0:
        raise _undecodable(source, stderr)


async def decode_pcm16k(source: str, ffmpeg: str = "") -> np.ndarray:
    """Decode `source` once to 16 kHz mono float32 in [-1, 1], in memory (short clips: tests, benchmarks)."""
    code, pcm, stderr = await _run_ffmpeg(
        ffmpeg, ["-v", "error", "-i", source, *_DECODE_ARGS, "-"], capture_stdout=True
    )
    _check_decoded(source, code, stderr)
    return np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0


# Decoding under a duration limit goes on this far past it, and a recording counts as over the limit when more
# than half of that decodes: what a header claims and what decodes differ by a frame or two of padding, which
# must not refuse a recording that ends at the limit.
PAST_LIMIT_SECONDS = 1.0


async def decode_to_file(source: str, path: Path, ffmpeg: str = "", max_seconds: float = 0.0) -> Recording:
    """Decode `source` once to 16 kHz mono PCM in the file `path`, read back piece by piece.
    Memory stays the same for a minute or ten hours; the file takes 115 MB per hour of audio.

    With `max_seconds` (KAZRU_MAX_DURATION_SECONDS), decoding stops as soon as the audio passes the limit and
    a longer recording is refused (RECORDING_TOO_LONG), whatever its header said or did not say: a stream
    whose container never learned its length, or a VBR MP3 without a Xing header that undersells it."""
    stop = ["-t", f"{max_seconds + PAST_LIMIT_SECONDS:g}"] if max_seconds else []
    code, _, stderr = await _run_ffmpeg(
        ffmpeg, ["-v", "error", "-i", source, *_DECODE_ARGS, *stop, "-y", str(path)], capture_stdout=False
    )
    _check_decoded(source, code, stderr)
    recording = Recording.from_pcm_file(path)
    if max_seconds and recording.duration > max_seconds + PAST_LIMIT_SECONDS / 2:
        raise upload_protocol.recording_too_long(max_seconds)
    return recording


class Recording:
    """16 kHz mono audio that is read piece by piece: in memory for a short clip, or a PCM file on
    disk for a recording of any length (the transcriber's case), of which only the piece being
    worked on is ever in memory. What the engines receive (`kazru.domain.recognition.RecordedAudio`)."""

    def __init__(self, sample_count: int, samples: np.ndarray | None = None, path: Path | None = None):
        self.sample_count = sample_count
        self._samples = samples
        self._path = path

    @classmethod
    def from_samples(cls, samples: np.ndarray) -> Recording:
        """Float samples in [-1, 1] already in memory."""
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError("samples must be one channel: a 1-D array")
        return cls(len(samples), samples=samples)

    @classmethod
    def from_pcm_file(cls, path: Path) -> Recording:
        """A file of 16-bit signed little-endian samples, as `decode_to_file` writes it."""
        return cls(os.path.getsize(path) // PCM_SAMPLE_BYTES, path=Path(path))

    @property
    def duration(self) -> float:
        return self.sample_count / SAMPLE_RATE

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) as float32 in [-1, 1], cut to the recording."""
        start, stop = max(0, start), min(stop, self.sample_count)
        if stop <= start:
            return np.zeros(0, dtype=np.float32)
        if self._samples is not None:
            return self._samples[start:stop]
        with open(self._path, "rb") as file:
            pcm = np.fromfile(file, dtype="<i2", count=stop - start, offset=start * PCM_SAMPLE_BYTES)
        return pcm.astype(np.float32) / 32768.0

    def seconds(self, start: float, end: float) -> np.ndarray:
        """The samples from `start` to `end` seconds."""
        return self.read(int(start * SAMPLE_RATE), int(end * SAMPLE_RATE))

    @property
    def pcm_path(self) -> Path | None:
        """The PCM file behind the recording, for tools that read it themselves (ffmpeg)."""
        return self._path


def as_recording(audio: np.ndarray | RecordedAudio) -> RecordedAudio:
    """The pipeline's entry points take a recording or, for short clips, the samples themselves."""
    return Recording.from_samples(audio) if isinstance(audio, np.ndarray) else audio


def pcm16_bytes(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] as 16-bit signed little-endian PCM."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


async def encode_ogg_opus(recording: RecordedAudio, bitrate: int, ffmpeg: str = "") -> bytes:
    """The recording as mono Ogg Opus (speech-tuned), for engines with an upload size limit. ffmpeg
    reads a file-backed recording's PCM file itself, so the PCM is never in memory whole."""
    source = ["-i", str(recording.pcm_path)] if recording.pcm_path is not None else ["-i", "pipe:0"]
    code, ogg, stderr = await _run_ffmpeg(
        ffmpeg,
        [
            "-v", "error", "-f", "s16le", "-ar", str(SAMPLE_RATE), "-ac", "1", *source,
            # Complexity 5 encodes twice as fast as the default 10 at a barely audible cost for speech.
            "-c:a", "libopus", "-b:a", str(bitrate), "-application", "voip", "-compression_level", "5",
            "-f", "ogg", "pipe:1",
        ],
        capture_stdout=True,
        stdin=pcm16_bytes(recording.read(0, recording.sample_count)) if recording.pcm_path is None else None,
    )  # fmt: skip
    if code != 0:
        raise RuntimeError(f"ffmpeg could not encode Ogg Opus: {_ffmpeg_reason(stderr)}")
    return ogg
