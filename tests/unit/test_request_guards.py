"""Checks the gateway and the CLI make before anything is sent or routed: the Host allow-list
(services/gateway/allowed_hosts.py, over HTTP in tests/e2e/test_csrf_cors.py) and the CLI's speaker counts."""

from __future__ import annotations

import pytest

from kazru.cli import build_parser
from kazru.settings import Settings
from services.gateway.allowed_hosts import host_allowed

LOCAL = Settings().http_allowed_hosts


@pytest.mark.parametrize(
    ("host", "allowed"),
    [("127.0.0.1:8080", True), ("localhost", True), ("LOCALHOST:9", True), ("[::1]:8080", True),
     ("rebind.attacker.example:8080", False), ("127.0.0.1.attacker.example", False), ("", False),
     ("localhost.:8080", False), ("[::2]:8080", False)],
)  # fmt: skip
def test_a_local_run_answers_its_own_names_only(host, allowed):
    assert host_allowed(host, LOCAL) is allowed


def test_allowed_hosts_setting_ports_and_wildcards():
    assert set(LOCAL) == {"127.0.0.1", "localhost", "[::1]"}
    assert host_allowed("api.example.org:443", ("api.example.org:443",))
    assert not host_allowed("api.example.org:8443", ("api.example.org:443",))
    assert host_allowed("anything", Settings(allowed_hosts="*").http_allowed_hosts)
    assert Settings(allowed_hosts="a.example, b.example:8080").http_allowed_hosts == ("a.example", "b.example:8080")
    # Listening on every address (a container behind a proxy, Kubernetes probes by pod IP): any host.
    assert Settings(http_host="0.0.0.0").http_allowed_hosts == ("*",)
    assert "10.0.0.5" in Settings(http_host="10.0.0.5").http_allowed_hosts


@pytest.mark.parametrize("option", ["--speakers", "--min-speakers", "--max-speakers"])
def test_too_many_speakers_is_reported_for_the_option_typed(option, capsys):
    with pytest.raises(SystemExit) as usage_error:
        build_parser().parse_args(["transcribe", "talk.wav", option, "11"])
    assert usage_error.value.code == 2
    assert f"argument {option}: at most 10 speakers" in capsys.readouterr().err
