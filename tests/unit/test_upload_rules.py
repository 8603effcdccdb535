import pytest

from kazru.domain import errors
from kazru.settings import Settings
from services.ingest.uploads import UploadOptions, clean_filename, validate_options


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("speech.flac", "speech.flac"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\a.wav", "a.wav"),
        ("/abs/path/запись.mp3", "запись.mp3"),
        ("Сәлем әлем ғ қ ң ө ұ ү һ і.wav", "Сәлем әлем ғ қ ң ө ұ ү һ і.wav"),
        ("bad\x00name\r\n.wav", "badname.wav"),
        ("", "audio"),
        ("...", "audio"),
        (".hidden.wav", "hidden.wav"),
        ("🎙️ interview 😀.m4a", "🎙️ interview 😀.m4a"),
    ],
)
def test_clean_filename(raw, clean):
    assert clean_filename(raw) == clean


def test_long_filename_is_cut_to_255_bytes_keeping_the_extension():
    name = clean_filename("ж" * 1000 + ".flac")
    assert len(name.encode()) <= 255
    assert name.endswith(".flac")
    assert name.startswith("жжж")


def test_options_default_languages_and_normalisation():
    settings = Settings()
    assert validate_options(UploadOptions(), settings).languages == ("kk", "ru")
    assert validate_options(UploadOptions(languages=(" RU ", "kk", "ru")), settings).languages == ("ru", "kk")


@pytest.mark.parametrize(
    "options",
    [UploadOptions(languages=("de",)), UploadOptions(max_speakers=11), UploadOptions(max_speakers=-1)],
)
def test_options_rejected(options):
    with pytest.raises(errors.InvalidArgument):
        validate_options(options, Settings())
