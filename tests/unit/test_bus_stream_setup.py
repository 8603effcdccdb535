"""The jobs stream's set-up waits out a JetStream that answers late (a busy server at start-up) instead of
ending the service, and still gives up when it never answers."""

from __future__ import annotations

import nats.errors
import pytest

from kazru.adapters import bus as bus_module
from kazru.adapters.bus import Bus
from kazru.settings import Settings


class LateJetStream:
    def __init__(self, late_answers: int):
        self.late_answers = late_answers
        self.calls: list[str] = []

    async def stream_info(self, name):
        self.calls.append("info")
        if self.late_answers:
            self.late_answers -= 1
            raise nats.errors.TimeoutError
        return object()

    async def update_stream(self, config):
        self.calls.append("update")


class Connection:
    def __init__(self, js):
        self._js = js

    def jetstream(self):
        return self._js


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch):
    monkeypatch.setattr(bus_module, "STREAM_SETUP_RETRY_SECONDS", (0.0, 0.0, 0.0))


async def test_a_late_answer_is_waited_for():
    js = LateJetStream(late_answers=2)
    await Bus(Connection(js), Settings()).ensure_jobs_stream()
    assert js.calls == ["info", "info", "info", "update"]


async def test_a_jetstream_that_never_answers_still_fails_the_start_up():
    js = LateJetStream(late_answers=100)
    with pytest.raises(nats.errors.TimeoutError):
        await Bus(Connection(js), Settings()).ensure_jobs_stream()
    assert js.calls == ["info"] * 4
