"""`make run` uses a user's own servers when their addresses are set, and starts none."""

from kazru.dev.devstack import start_infrastructure


def test_servers_given_in_the_environment_are_used_not_started(infra, settings, monkeypatch, tmp_path):
    monkeypatch.setenv("KAZRU_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("KAZRU_NATS_URL", settings.nats_url)
    monkeypatch.setenv("KAZRU_S3_ENDPOINT", settings.s3_endpoint)
    overrides, started = start_infrastructure(settings, tmp_path)
    assert overrides == {} and started == []
    assert list(tmp_path.iterdir()) == []
