import pytest
from pydantic import ValidationError

from kazru.settings import AnonymousAccess, Settings


def test_languages_from_a_comma_separated_environment_variable(monkeypatch):
    monkeypatch.setenv("KAZRU_DEFAULT_LANGUAGES", "ru, kk")
    monkeypatch.setenv("KAZRU_ANONYMOUS_ACCESS", "shared")
    settings = Settings()
    assert settings.default_languages == ("ru", "kk")
    assert settings.anonymous_access is AnonymousAccess.SHARED


@pytest.mark.parametrize(("name", "value"), [("KAZRU_MAX_UPLOAD_BYTES", "-1"), ("KAZRU_ANONYMOUS_ACCESS", "everyone")])
def test_bad_values_fail_at_start(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_defaults_avoid_the_standard_ports():
    settings = Settings()
    for standard in (":5432/", ":4222", ":9000", ":8333"):
        assert standard not in settings.database_url + settings.nats_url + settings.s3_endpoint + "/"


def test_settings_survive_a_round_trip_through_the_environment(monkeypatch):
    original = Settings(default_languages=("ru",), s3_secret_key="s3cret", bootstrap_api_key="key", http_port=1234)
    for name, value in original.as_environment().items():
        monkeypatch.setenv(name, value)
    assert Settings() == original
