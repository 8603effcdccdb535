import re
import stat

import pytest
from pydantic import ValidationError

from kazru.adapters.encryption import Keyring, new_key_entry
from kazru.adapters.storage import ObjectStore
from kazru.dev.devstack import LOCAL_JOB_ACK_WAIT_SECONDS, LOCAL_KEY_FILE, local_encryption_keys, local_run_environment
from kazru.settings import (
    LOCAL_ENCRYPTION_KEY_ID,
    LOCAL_S3_ACCESS_KEY,
    LOCAL_S3_SECRET_KEY,
    AnonymousAccess,
    Deployment,
    Settings,
    SpeechKitSettings,
    WhisperSettings,
)


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
    # A job whose worker died is handed on within seconds, not the minute Kubernetes keeps.
    assert local.job_ack_wait_seconds == LOCAL_JOB_ACK_WAIT_SECONDS < settings.job_ack_wait_seconds
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


def test_speechkit_settings_are_one_group_read_from_the_same_variables(monkeypatch):
    """`settings.speechkit` reads KAZRU_SPEECHKIT_*, the names the manifests and operators already use."""
    monkeypatch.setenv("KAZRU_ENGINE", "speechkit")
    monkeypatch.setenv("KAZRU_SPEECHKIT_API_KEY", "AQVN-from-env")
    monkeypatch.setenv("KAZRU_SPEECHKIT_ENDPOINT", "stt.example:443")
    monkeypatch.setenv("KAZRU_SPEECHKIT_OPERATION_ENDPOINT", "operation.example:443")
    monkeypatch.setenv("KAZRU_SPEECHKIT_FOLDER_ID", "b1gfolder")
    monkeypatch.setenv("KAZRU_SPEECHKIT_MODEL", "deferred-general")
    monkeypatch.setenv("KAZRU_SPEECHKIT_TLS", "false")
    monkeypatch.setenv("KAZRU_SPEECHKIT_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("KAZRU_SPEECHKIT_POLL_INITIAL_SECONDS", "0.7")
    settings = Settings()
    speechkit = settings.speechkit
    assert isinstance(speechkit, SpeechKitSettings)
    assert speechkit.api_key.get_secret_value() == "AQVN-from-env" and speechkit.iam_token is None
    assert (speechkit.endpoint, speechkit.operation_endpoint) == ("stt.example:443", "operation.example:443")
    assert (speechkit.folder_id, speechkit.model, speechkit.tls) == ("b1gfolder", "deferred-general", False)
    assert (speechkit.max_attempts, speechkit.poll_initial_seconds) == (3, 0.7)
    assert speechkit.opus_bitrate == 24_000  # unset: the default
    # Passed on to the services under the same names, and read back the same.
    environment = settings.as_environment()
    assert environment["KAZRU_SPEECHKIT_API_KEY"] == "AQVN-from-env"
    assert environment["KAZRU_SPEECHKIT_TLS"] == "False" and "KAZRU_SPEECHKIT" not in environment
    assert not any(name.startswith("KAZRU_SPEECHKIT_SPEECHKIT") for name in environment)
    with pytest.MonkeyPatch.context() as patch:
        for name in list(environment):
            if name.startswith("KAZRU_"):
                patch.delenv(name, raising=False)
        for name, value in environment.items():
            patch.setenv(name, value)
        assert Settings() == settings


def test_whisper_settings_are_one_group_read_from_the_same_variables(monkeypatch):
    """`settings.whisper` reads KAZRU_WHISPER_*, the names the manifests and operators already use."""
    monkeypatch.setenv("KAZRU_WHISPER_MODEL", "/models/whisper-large-v3")
    monkeypatch.setenv("KAZRU_WHISPER_DEVICE", "cuda")
    monkeypatch.setenv("KAZRU_WHISPER_COMPUTE_TYPE", "float16")
    monkeypatch.setenv("KAZRU_WHISPER_CPU_THREADS", "3")
    monkeypatch.setenv("KAZRU_WHISPER_BEAM_SIZE", "5")
    settings = Settings()
    whisper = settings.whisper
    assert isinstance(whisper, WhisperSettings)
    assert (whisper.model, whisper.device, whisper.compute_type) == ("/models/whisper-large-v3", "cuda", "float16")
    assert (whisper.cpu_threads, whisper.beam_size) == (3, 5)
    assert settings.whisper_model_path == "/models/whisper-large-v3"
    assert Settings(whisper=WhisperSettings(model="")).whisper_model_path == str(settings.model_dir)
    environment = settings.as_environment()
    every = {f"KAZRU_WHISPER_{field.upper()}" for field in WhisperSettings.model_fields}
    assert {name for name in environment if name.startswith("KAZRU_WHISPER")} == every
    assert environment["KAZRU_WHISPER_BEAM_SIZE"] == "5"


def test_every_speechkit_setting_is_passed_on_under_its_variable_name():
    environment = Settings(speechkit=SpeechKitSettings(api_key="a")).as_environment()
    every = {f"KAZRU_SPEECHKIT_{field.upper()}" for field in SpeechKitSettings.model_fields}
    assert {name for name in environment if name.startswith("KAZRU_SPEECHKIT")} == every - {"KAZRU_SPEECHKIT_IAM_TOKEN"}


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({}, "engine=speechkit needs exactly one of KAZRU_SPEECHKIT_API_KEY or KAZRU_SPEECHKIT_IAM_TOKEN"),
        ({"KAZRU_SPEECHKIT_API_KEY": ""}, "exactly one of KAZRU_SPEECHKIT_API_KEY or KAZRU_SPEECHKIT_IAM_TOKEN"),
        (
            {"KAZRU_SPEECHKIT_API_KEY": "a", "KAZRU_SPEECHKIT_IAM_TOKEN": "b"},
            "exactly one of KAZRU_SPEECHKIT_API_KEY or KAZRU_SPEECHKIT_IAM_TOKEN",
        ),
        ({"KAZRU_SPEECHKIT_IAM_TOKEN": "b"}, "engine=speechkit with an IAM token needs KAZRU_SPEECHKIT_FOLDER_ID"),
    ],
)
def test_speechkit_credentials_are_checked_at_start_from_the_environment(monkeypatch, variables, message):
    monkeypatch.setenv("KAZRU_ENGINE", "speechkit")
    for name in ("KAZRU_SPEECHKIT_API_KEY", "KAZRU_SPEECHKIT_IAM_TOKEN", "KAZRU_SPEECHKIT_FOLDER_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=re.escape(message)):
        Settings()


def test_speechkit_credentials_pass_when_right_and_are_not_checked_for_whisper(monkeypatch):
    monkeypatch.setenv("KAZRU_ENGINE", "speechkit")
    monkeypatch.setenv("KAZRU_SPEECHKIT_IAM_TOKEN", "t")
    monkeypatch.setenv("KAZRU_SPEECHKIT_FOLDER_ID", "f")
    assert Settings().speechkit.iam_token.get_secret_value() == "t"
    monkeypatch.setenv("KAZRU_ENGINE", "whisper")
    monkeypatch.setenv("KAZRU_SPEECHKIT_API_KEY", "a")  # both set: fine while SpeechKit is not the engine
    assert Settings().engine == "whisper"


@pytest.mark.parametrize(
    ("environment", "engine_model"),
    [
        ({}, "whisper-base"),
        ({"KAZRU_WHISPER_MODEL": "/models/whisper-large-v3"}, "whisper-large-v3"),
        ({"KAZRU_WHISPER_MODEL": "large-v3"}, "whisper-large-v3"),
        ({"KAZRU_ENGINE": "gigaam"}, "gigaam-multilingual-ctc"),
        ({"KAZRU_ENGINE": "gigaam", "KAZRU_GIGAAM_MODEL": "gigaam-multilingual-large-ctc"},
         "gigaam-multilingual-large-ctc"),
        ({"KAZRU_ENGINE": "speechkit", "KAZRU_SPEECHKIT_API_KEY": "k"}, "speechkit/general"),
    ],
)
def test_the_configured_engine_model_is_named_as_jobs_name_it(monkeypatch, environment, engine_model):
    """What /api/v1/health and /api/v1/status show as the configured model (ConfiguredEngine.model)."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert Settings().engine_model == engine_model


# --- KAZRU_DEPLOYMENT=production ------------------------------------------------------------------------------------

PRODUCTION = {
    "KAZRU_DEPLOYMENT": "production",
    "KAZRU_S3_ACCESS_KEY": "operator-access",
    "KAZRU_S3_SECRET_KEY": "operator-s3-secret",
    "KAZRU_ENCRYPTION_KEYS": new_key_entry("2026-01"),
    "KAZRU_ANONYMOUS_ACCESS": "deny",
    "KAZRU_CORS_ORIGINS": "https://app.example.org",
}


def production_settings(monkeypatch, **changes: str | None) -> Settings:
    for name, value in {**PRODUCTION, **changes}.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    return Settings()


def test_production_starts_on_settings_of_the_operators_own(monkeypatch):
    settings = production_settings(monkeypatch)
    assert settings.deployment is Deployment.PRODUCTION and settings.anonymous_access is AnonymousAccess.DENY


REFUSED_IN_PRODUCTION = ("KAZRU_S3_ACCESS_KEY", "KAZRU_S3_SECRET_KEY", "KAZRU_ENCRYPTION_KEYS", "KAZRU_ANONYMOUS_ACCESS",
                         "KAZRU_CORS_ORIGINS")  # fmt: skip


@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("KAZRU_S3_ACCESS_KEY", {"KAZRU_S3_ACCESS_KEY": LOCAL_S3_ACCESS_KEY}),
        ("KAZRU_S3_SECRET_KEY", {"KAZRU_S3_SECRET_KEY": LOCAL_S3_SECRET_KEY}),
        ("KAZRU_ENCRYPTION_KEYS", {"KAZRU_ENCRYPTION_KEYS": new_key_entry(LOCAL_ENCRYPTION_KEY_ID)}),  # make run's
        ("KAZRU_ENCRYPTION_KEYS", {"KAZRU_ENCRYPTION_KEYS": f"{PRODUCTION['KAZRU_ENCRYPTION_KEYS']},"
                                   f"{new_key_entry(LOCAL_ENCRYPTION_KEY_ID)}", "KAZRU_ENCRYPTION_KEY_ID": "2026-01"}),
        ("KAZRU_ANONYMOUS_ACCESS", {"KAZRU_ANONYMOUS_ACCESS": "cookie"}),
        ("KAZRU_ANONYMOUS_ACCESS", {"KAZRU_ANONYMOUS_ACCESS": "shared"}),
        ("KAZRU_CORS_ORIGINS", {"KAZRU_CORS_ORIGINS": "*"}),
        ("KAZRU_CORS_ORIGINS", {"KAZRU_CORS_ORIGINS": "https://app.example.org,*"}),
    ],
)  # fmt: skip
def test_production_refuses_what_is_only_right_for_a_local_run_naming_the_setting(monkeypatch, name, changes):
    with pytest.raises(ValidationError) as caught:
        production_settings(monkeypatch, **changes)
    message = str(caught.value)
    assert f"KAZRU_DEPLOYMENT=production refuses: {name} " in message
    assert [other for other in REFUSED_IN_PRODUCTION if other in message] == [name], "only the setting at fault"
    keys = changes.get("KAZRU_ENCRYPTION_KEYS", "")
    for secret in (LOCAL_S3_SECRET_KEY, *(entry.partition(":")[2] for entry in keys.split(",") if entry)):
        assert secret not in message


def test_production_names_every_setting_it_refuses_at_once(monkeypatch):
    with pytest.raises(ValidationError) as caught:
        production_settings(monkeypatch, KAZRU_ANONYMOUS_ACCESS="cookie", KAZRU_CORS_ORIGINS="*")
    assert "KAZRU_ANONYMOUS_ACCESS" in str(caught.value) and "KAZRU_CORS_ORIGINS" in str(caught.value)


def test_production_has_no_built_in_s3_credentials_and_the_object_store_needs_them(monkeypatch):
    """A service that never opens S3 (the exporter, migrations) starts without S3 credentials; one that does,
    does not start on the local ones by omission."""
    settings = production_settings(monkeypatch, KAZRU_S3_ACCESS_KEY=None, KAZRU_S3_SECRET_KEY=None)
    assert (settings.s3_access_key, settings.s3_secret_key.get_secret_value()) == ("", "")
    with pytest.raises(ValueError, match="^KAZRU_S3_ACCESS_KEY and KAZRU_S3_SECRET_KEY not set"):
        ObjectStore(settings, with_keys=False)
    with pytest.raises(ValueError, match="^KAZRU_S3_SECRET_KEY not set"):
        ObjectStore(production_settings(monkeypatch, KAZRU_S3_SECRET_KEY=""))


def test_without_encryption_keys_only_the_services_that_touch_audio_refuse_to_start(monkeypatch):
    """The janitor (deleting objects) and the exporter get no keys in Kubernetes; a store that seals or opens
    audio does not start without them, in any deployment."""
    settings = production_settings(monkeypatch, KAZRU_ENCRYPTION_KEYS=None)
    ObjectStore(settings, with_keys=False)
    with pytest.raises(ValueError, match="^KAZRU_ENCRYPTION_KEYS is not set"):
        ObjectStore(settings)


def test_a_local_run_keeps_its_defaults(monkeypatch, tmp_path):
    """`make run` and the tests are unchanged: local is the default deployment, and everything production
    refuses is accepted there."""
    for name in PRODUCTION:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAZRU_ENCRYPTION_KEYS", local_encryption_keys({}, tmp_path)["KAZRU_ENCRYPTION_KEYS"])
    settings = Settings(cors_origins="*")
    assert settings.deployment is Deployment.LOCAL
    assert (settings.s3_access_key, settings.s3_secret_key.get_secret_value()) == (
        LOCAL_S3_ACCESS_KEY,
        LOCAL_S3_SECRET_KEY,
    )
    assert settings.anonymous_access is AnonymousAccess.COOKIE and settings.cors_origins == ("*",)
    ObjectStore(settings)
