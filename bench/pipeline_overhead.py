"""Pipeline overhead: what the system adds on top of the speech engine.

For 20 uploads of a short clip, one after another: time from "upload accepted"
(the 202 answer) to "job completed" (the JobFinished event on NATS), minus the
engine's own transcription time for that job, which the transcriber measures
around the engine call and logs. As a cross-check, the same clip is also
transcribed in this process with the same model and settings (before and after
the uploads, stack idle), and the overhead against that median is reported too.
Prints JSON. Run with `make bench`.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import httpx

from kazru.adapters import audio
from kazru.adapters.bus import Bus
from kazru.settings import REPO_ROOT, Settings
from kazru.v1 import events_pb2
from services.transcriber.pipeline import create_pipeline

sys.path.insert(0, str(REPO_ROOT))  # run as a script: bench.stack
from bench.stack import CLIP, running_stack  # noqa: E402

UPLOADS = 20
ENGINE_RUNS = 5


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = (len(ordered) - 1) * q
    low, high = int(index), min(int(index) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (index - low)


async def engine_seconds(settings: Settings) -> list[float]:
    """The whole speech pipeline (diarization + engine) on the clip, in this process."""
    pipeline = create_pipeline(settings)
    samples = await audio.decode_pcm16k(str(CLIP))
    await pipeline.run(samples, settings.default_languages)  # warm-up
    runs = []
    for _ in range(ENGINE_RUNS):
        started = time.perf_counter()
        await pipeline.run(samples, settings.default_languages)
        runs.append(time.perf_counter() - started)
    return runs


async def measure(settings: Settings) -> dict[str, float]:
    bus = await Bus.connect(settings, "bench")
    finished: dict[str, float] = {}
    arrived = asyncio.Event()

    async def on_finished(msg) -> None:
        event = events_pb2.JobFinished.FromString(msg.data)
        finished[event.job_id] = time.perf_counter()
        assert event.state == "SUCCEEDED", event
        arrived.set()

    await bus.on_finished(on_finished)
    data = CLIP.read_bytes()
    latencies: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}") as client:
        for _ in range(UPLOADS):
            response = await client.post("/api/v1/upload", files={"file": ("clip.flac", data)})
            accepted = time.perf_counter()
            response.raise_for_status()
            job_id = response.json()["job_id"]
            while job_id not in finished:  # wait without spinning: the engine needs both cores
                arrived.clear()
                await arrived.wait()
            latencies[job_id] = finished[job_id] - accepted
    await bus.close()
    return latencies


def job_stages(log_path: Path) -> dict[str, dict[str, float]]:
    """The stage timings the transcriber logs for each job it finished, by job id."""
    stages = {}
    for line in log_path.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("message") == "job succeeded":
            stages[entry["job_id"]] = {
                key.removesuffix("_seconds"): value
                for key, value in entry.items()
                if key.endswith("_seconds") and key != "audio_seconds"
            }
    return stages


def main() -> None:
    # 20 uploads in a row: past the default upload rate limit.
    with running_stack(upload_rate_limit_per_minute=0) as stack:
        engine_runs = asyncio.run(engine_seconds(stack.settings))
        latencies = asyncio.run(measure(stack.settings))
        engine_runs += asyncio.run(engine_seconds(stack.settings))
        stages = job_stages(stack.root / "logs" / "transcriber.log")

    standalone_engine = statistics.median(engine_runs)
    # "pipeline" is the speech work (diarization + engine) the transcriber timed for the job.
    overheads_ms = [(latency - stages[job]["pipeline"]) * 1000 for job, latency in latencies.items()]
    versus_standalone_ms = [(latency - standalone_engine) * 1000 for latency in latencies.values()]
    print(json.dumps({
        "benchmark": "pipeline_overhead",
        "uploads": UPLOADS,
        "clip_seconds": 2.92,
        "accepted_to_completed_seconds_p50": round(percentile(list(latencies.values()), 0.5), 3),
        "overhead_ms_p50": round(percentile(overheads_ms, 0.5), 1),
        "overhead_ms_p95": round(percentile(overheads_ms, 0.95), 1),
        "goal_overhead_ms_p50": 300,
        "transcriber_stage_medians_ms": {
            name: round(statistics.median(job[name] for job in stages.values()) * 1000, 1)
            for name in next(iter(stages.values()))
        },
        "standalone_engine_seconds_median": round(standalone_engine, 3),
        "standalone_engine_seconds_runs": [round(r, 3) for r in engine_runs],
        "overhead_vs_standalone_engine_ms_p50": round(percentile(versus_standalone_ms, 0.5), 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
