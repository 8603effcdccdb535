import numpy as np
import pytest

from kazru.adapters import audio
from kazru.domain import errors
from kazru.domain.recognition import RecordedAudio


@pytest.mark.parametrize(
    ("head", "container"),
    [
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "wav"),
        (b"fLaC\x00\x00\x00\x22\x10\x00\x10\x00", "flac"),
        (b"OggS\x00\x02\x00\x00\x00\x00\x00\x00", "ogg"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00\x00\x00", "mp3"),
        (b"\xff\xfb\x90\x64\x00\x00\x00\x00\x00\x00\x00\x00", "mp3"),
        (b"\x00\x00\x00\x20ftypM4A \x00\x00", "mp4"),
        (b"\x00\x00\x00\x08wide\x00\x2f\x1e\x6dmdat", "mp4"),  # a QuickTime .mov from before ftyp
        (b"\x1a\x45\xdf\xa3\x01\x00\x00\x00\x00\x00\x00\x1f", "webm"),
        (b"\xff\xf1\x60\x40\x46\x7f\xfc\xdc", "aac"),  # ADTS, MPEG-4
        (b"\xff\xf9\x50\x80\x02\x1f\xfc\x21", "aac"),  # ADTS, MPEG-2
        (b"#!AMR\n<\x91\x17\x16\xbe", "amr"),
        (b"#!AMR-WB\n\x24\x00", "amr"),
        (b"FORM\x00\x04\xe2\x46AIFFCOMM", "aiff"),
        (b"FORM\x00\x04\xe2\x46AIFCFVER", "aiff"),
        (bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c") + b"\x00" * 8, "asf"),
        (b"RIFF\x24\x00\x00\x00AVI LIST", "avi"),
        ((b"\x47\x40\x11\x10" + b"\xff" * 184) * 3, "mpegts"),
        ((b"\x00\x00\x00\x00\x47\x40\x11\x10" + b"\xff" * 184) * 3, "mpegts"),  # M2TS: a timecode first
    ],
)
def test_sniff_recognises_audio_containers(head, container):
    assert audio.sniff_container(head) == container


@pytest.mark.parametrize(
    "head",
    [
        b"hello world, this is text",
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\r",
        b"RIFF\x24\x00\x00\x00ACONLIST",  # RIFF, but an animated cursor
        b"G" + b"ood morning, " * 40,  # starts with MPEG-TS's sync byte, but only once
        b"\x47\x40\x11\x10" + b"\x00" * 400,  # MPEG-TS's sync byte at 0, but not 188 bytes on
        b"FORM\x00\x00\x00\x10ILBMBMHD",  # IFF, but a picture
        b"\xff\xe0\x00\x10JFIF\x00\x01",  # JPEG: sync-like bits with reserved layer
        b"",
        b"RIF",
    ],
)
def test_sniff_rejects_other_content(head):
    assert audio.sniff_container(head) is None


FLAC_PROBE = """Input #0, flac, from 'x.flac':
  Duration: 00:00:02.92, start: 0.000000, bitrate: 142 kb/s
  Stream #0:0: Audio: flac, 16000 Hz, mono, s16
"""
M4A_PROBE = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'x.m4a':
  Duration: 01:02:03.50, start: 0.000000, bitrate: 129 kb/s
  Stream #0:0[0x1](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, stereo, fltp, 128 kb/s (default)
"""
WAV_PROBE = """Input #0, wav, from 'x.wav':
  Duration: 00:00:01.00, bitrate: 256 kb/s
  Stream #0:0: Audio: pcm_s16le ([1][0][0][0] / 0x0001), 16000 Hz, 1 channels, s16, 256 kb/s
"""


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        (FLAC_PROBE, audio.AudioInfo(2.92, "flac", 1, 16000)),
        (M4A_PROBE, audio.AudioInfo(3723.5, "aac", 2, 44100)),
        (WAV_PROBE, audio.AudioInfo(1.0, "pcm_s16le", 1, 16000)),
    ],
)
def test_parse_ffmpeg_probe(stderr, expected):
    assert audio.parse_ffmpeg_probe(stderr) == expected


def test_parse_ffmpeg_probe_without_audio_stream():
    video_only = "Input #0, matroska,webm, from 'x.webm':\n  Stream #0:0: Video: vp9, yuv420p, 640x480\n"
    with pytest.raises(errors.UnsupportedMedia) as caught:
        audio.parse_ffmpeg_probe(video_only)
    assert caught.value.code == "NO_AUDIO_TRACK"


@pytest.mark.parametrize(
    ("stderr", "unavailable"),
    [("Error opening input files: Connection refused", True), ("Server returned 5XX Server Error reply", True),
     ("Server returned 503 Service Unavailable", True), ("http://x: Input/output error", True),
     ("Invalid data found when processing input", False), ("Header missing", False)],
)  # fmt: skip
def test_a_failed_read_of_a_url_is_an_outage_not_bad_audio(stderr, unavailable):
    if unavailable:
        with pytest.raises(errors.Unavailable):
            audio._check_source_reachable("http://127.0.0.1:1/jobs/x/original", stderr)
    else:
        audio._check_source_reachable("http://127.0.0.1:1/jobs/x/original", stderr)
    audio._check_source_reachable("/local/file.flac", stderr)  # a local file has no outage


URL = "http://127.0.0.1:42179/KaRy3xQ0d9Lm2pZt7vWcAb"
NO_SOUND = f"""Input #0, mov,mp4,m4a,3gp,3g2,mj2, from '{URL}':
  Stream #0:0[0x1](und): Video: mpeg4 (Simple Profile), yuv420p, 160x120
Stream map '' matches no streams.
To ignore this, add a trailing '?' to the map.
Error opening output files: Invalid argument
"""
UNKNOWN_CODEC = """  Stream #0:0: Audio: none ([153][153][0][0] / 0x9999), 16000 Hz, mono, 256 kb/s
[aist#0:0/none @ 0x55c4a8325540] Decoding requested, but no decoder found for: none
Error opening output files: Invalid argument
"""
NOT_READABLE = f"""[in#0 @ 0x561e55e71080] no 'fmt ' or 'XMA2' tag found
[in#0 @ 0x561e55e70d00] Error opening input: Invalid data found when processing input
Error opening input file {URL}.
Error opening input files: Invalid data found when processing input
"""
CUT_SHORT = """[out#0/null @ 0x5616e442e000] Output file is empty, nothing was encoded
Conversion failed!
"""


@pytest.mark.parametrize(
    ("stderr", "code", "words"),
    [(NO_SOUND, "NO_AUDIO_TRACK", "no sound track"), (UNKNOWN_CODEC, "AUDIO_CODEC_UNSUPPORTED", "cannot decode"),
     (NOT_READABLE, "AUDIO_UNDECODABLE", "could not be read as a recording"),
     (CUT_SHORT, "AUDIO_UNDECODABLE", "damaged or cut short")],
    ids=["video-without-sound", "unknown-codec", "not-a-recording", "cut-short"],
)  # fmt: skip
def test_ffmpeg_failures_are_said_in_plain_words_and_its_output_goes_to_the_log_only(stderr, code, words, caplog):
    with caplog.at_level("WARNING", logger="kazru.adapters.audio"):
        error = audio._undecodable(URL, stderr)
    assert (error.code, error.details) == (code, {})
    assert words in error.message and "ffmpeg" not in error.message
    logged = caplog.records[-1].ffmpeg_output
    assert URL not in logged, "the plaintext URL's secret path is not logged"
    assert "Stream #" not in logged, "the input's listing (titles, metadata) is not logged"
    if stderr is not CUT_SHORT:
        assert ("matches no streams" in logged) or ("no decoder found" in logged) or ("Invalid data" in logged)


def test_a_recording_offers_all_that_the_engines_read_of_recorded_audio(tmp_path):
    """The engines are typed against the domain's protocol; the adapter's class must keep satisfying it."""
    members = {name for name in vars(RecordedAudio) if not name.startswith("_")}
    assert {"sample_count", "duration", "read", "seconds", "pcm_path"} <= members
    samples = np.linspace(-0.5, 0.5, 32_000, dtype=np.float32)
    (tmp_path / "a.pcm").write_bytes(audio.pcm16_bytes(samples))
    for recording in (audio.Recording.from_samples(samples), audio.Recording.from_pcm_file(tmp_path / "a.pcm")):
        assert all(hasattr(recording, name) for name in members)
        assert (recording.sample_count, recording.duration, len(recording.seconds(0.5, 1.0))) == (32_000, 2.0, 8_000)


def test_as_recording_wraps_samples_and_passes_any_recorded_audio_through():
    samples = np.zeros(1_600, dtype=np.float32)
    assert audio.as_recording(samples).duration == 0.1
    recording = audio.Recording.from_samples(samples)
    assert audio.as_recording(recording) is recording
