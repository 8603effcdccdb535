import stat

import pytest
from pydantic import ValidationError

from kazru.devstack import LOCAL_KEY_FILE, local_encryption_keys, local_run_environment
from kazru.encryption import Keyring, new_key_entry
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


def test_make_run_is_one_local_user_whose_tools_share_an_owner_and_no_upload_limit():
    environment = local_run_environment({"PATH": "/bin"})
    settings = Settings()  # the service defaults, for comparison
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        local = Settings()
    assert local.anonymous_access is AnonymousAccess.SHARED
    assert local.upload_rate_limit_per_minute == local.anonymous_address_upload_rate_limit_per_minute == 0
    assert settings.upload_rate_limit_per_minute > 0 and settings.anonymous_address_upload_rate_limit_per_minute > 0
    # Whatever the operator sets wins.
    chosen = local_run_environment({"KAZRU_UPLOAD_RATE_LIMIT_PER_MINUTE": "7", "KAZRU_ANONYMOUS_ACCESS": "cookie"})
    assert chosen["KAZRU_UPLOAD_RATE_LIMIT_PER_MINUTE"] == "7" and chosen["KAZRU_ANONYMOUS_ACCESS"] == "cookie"


def test_make_run_makes_a_local_key_once_and_keeps_it(tmp_path):
    first = local_encryption_keys({}, tmp_path)
    again = local_encryption_keys({}, tmp_path)
    assert first == again and Keyring.parse(first["KAZRU_ENCRYPTION_KEYS"]).active_id == "local"
    assert stat.S_IMODE((tmp_path / LOCAL_KEY_FILE).stat().st_mode) == 0o600
    # The user's own keys win, and nothing is written then.
    assert local_encryption_keys({"KAZRU_ENCRYPTION_KEYS": new_key_entry("mine")}, tmp_path / "other") == {}
    assert not (tmp_path / "other").exists()
