"""`make run`'s supervisor (issue 22, "One crash stops everything"): a dead service is started again after
a delay that doubles up to a cap and starts afresh once it stayed up, and one that keeps dying at start-up
stops the run with a message naming it and its log. The policy as arithmetic, the supervisor on real
(tiny) processes."""

import json
import subprocess
import sys
import time

import pytest

from kazru.dev.supervisor import RestartBackoff, RestartPolicy, ServiceKeepsDying, Supervisor, describe_exit

POLICY = RestartPolicy()  # the local run's: 0.5 s doubling to 30 s, reset after a minute, 5 failed starts


def test_the_delay_doubles_up_to_its_cap_for_a_service_that_dies_after_starting():
    backoff = RestartBackoff(POLICY)
    delays = [backoff.delay_after(lived=20) for _ in range(10)]  # up past start-up, down before a minute
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]


def test_a_service_that_stayed_up_a_minute_is_restarted_at_the_first_delay_again():
    backoff = RestartBackoff(POLICY)
    assert [backoff.delay_after(lived=20) for _ in range(4)] == [0.5, 1, 2, 4]
    assert backoff.delay_after(lived=POLICY.stable_after) == 0.5
    assert backoff.delay_after(lived=20) == 1


def test_five_deaths_in_a_row_at_start_up_give_up_but_a_run_past_start_up_forgives_them():
    backoff = RestartBackoff(POLICY)
    assert [backoff.delay_after(lived=1) for _ in range(4)] == [0.5, 1, 2, 4]
    assert backoff.delay_after(lived=POLICY.startup_seconds) == 8  # lived past start-up: the count restarts
    assert [backoff.delay_after(lived=0.1) for _ in range(4)] == [16, 30, 30, 30]
    assert backoff.delay_after(lived=0.1) is None


def test_exits_are_described_by_signal_name_or_code():
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(1) == "exited with code 1"


def python(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code])


def supervise_until(supervisor: Supervisor, done, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "took too long"
        supervisor.check()
        time.sleep(0.01)


def test_a_killed_service_is_restarted_said_on_the_console_and_in_the_status_file(tmp_path):
    said: list[str] = []
    status_file = tmp_path / "services.json"
    supervisor = Supervisor(status_file, RestartPolicy(first_delay=0.05), say=lambda line, **_: said.append(line))
    sleeper = "import time; time.sleep(60)"
    first = python(sleeper)
    supervisor.watch("transcriber", first, lambda: python(sleeper), tmp_path / "transcriber.log")
    try:
        assert json.loads(status_file.read_text())["services"]["transcriber"] == {
            "pid": first.pid, "state": "running", "restarts": 0, "last_exit": None,
        }  # fmt: skip
        first.kill()
        supervise_until(supervisor, lambda: supervisor.processes["transcriber"].pid != first.pid)
        second = supervisor.processes["transcriber"]
        assert second.poll() is None
        assert said[0] == (
            f"transcriber killed by SIGKILL (pid {first.pid}); restart 1 in 0.05 s. Its log: {tmp_path}/transcriber.log"
        )
        assert said[1] == f"transcriber restarted (pid {second.pid})."
        assert json.loads(status_file.read_text())["services"]["transcriber"] == {
            "pid": second.pid, "state": "running", "restarts": 1, "last_exit": "killed by SIGKILL",
        }  # fmt: skip
    finally:
        for process in supervisor.processes.values():
            process.kill()
            process.wait()


def test_a_service_that_keeps_dying_at_start_up_stops_the_run_naming_it_and_its_log(tmp_path):
    status_file = tmp_path / "services.json"
    supervisor = Supervisor(status_file, RestartPolicy(first_delay=0.01, max_delay=0.02), say=lambda *_, **__: None)
    starts = []

    def failing_start() -> subprocess.Popen:
        starts.append(python("raise SystemExit(3)"))
        return starts[-1]

    supervisor.watch("ingest", failing_start(), failing_start, tmp_path / "ingest.log")
    with pytest.raises(ServiceKeepsDying) as stopped:
        supervise_until(supervisor, lambda: False)
    assert len(starts) == POLICY.startup_failures_allowed  # the first start and four restarts
    message = str(stopped.value)
    assert message.startswith("ingest keeps dying at start-up (5 times in a row within 10 s of starting")
    assert "last: exited with code 3" in message and str(tmp_path / "ingest.log") in message
    assert json.loads(status_file.read_text())["services"]["ingest"]["restarts"] == 4
