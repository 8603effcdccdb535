"""Throughput: jobs per minute with one and with two transcriber processes, in the same run.

Each transcriber's engine is limited to one CPU thread (KAZRU_WHISPER_CPU_THREADS=1), so
two processes can use two cores; if nothing in the system serialises the workers (a lock,
a single-message consumer setting, a shared connection), two give close to twice the jobs
per minute of one (goal: >= 1.7x). For each worker count: JOBS uploads of a short clip at
once, timed from the first upload to the last JobFinished event on NATS. The stack and the
first transcriber stay up between the two rounds; the second transcriber joins for round
two. Prints JSON. Run: `.venv/bin/python -m bench.throughput`.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sys
import time

import grpc
import httpx

from kazru.adapters.bus import Bus
from kazru.dev.devservers import free_port
from kazru.dev.devstack import service_environment, start_services
from kazru.grpc import server as grpc_server
from kazru.settings import REPO_ROOT, Settings, WhisperSettings
from kazru.v1 import events_pb2

sys.path.insert(0, str(REPO_ROOT))  # run as a script: bench.stack
from bench.stack import CLIP, running_stack  # noqa: E402

JOBS = int(os.environ.get("BENCH_JOBS", "16"))


async def run_round(settings: Settings, jobs: int) -> dict:
    """Upload `jobs` clips at once; seconds from the first upload to the last job finished."""
    bus = await Bus.connect(settings, "bench-throughput")
    finished: dict[str, str] = {}
    all_done = asyncio.Event()
    wanted: set[str] = set()

    async def on_finished(msg) -> None:
        event = events_pb2.JobFinished.FromString(msg.data)
        finished[event.job_id] = event.state
        if wanted and wanted <= finished.keys():
            all_done.set()

    await bus.on_finished(on_finished)
    data = CLIP.read_bytes()
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}", timeout=120) as client:
        responses = await asyncio.gather(
            *(client.post("/api/v1/upload", files={"file": (f"t{n}.flac", data)}) for n in range(jobs))
        )
    for response in responses:
        response.raise_for_status()
    wanted.update(response.json()["job_id"] for response in responses)
    if wanted <= finished.keys():
        all_done.set()
    await asyncio.wait_for(all_done.wait(), timeout=1800)
    elapsed = time.perf_counter() - started
    await bus.close()
    states = [finished[job_id] for job_id in wanted]
    assert states == ["SUCCEEDED"] * jobs, states
    return {"jobs": jobs, "seconds": round(elapsed, 2), "jobs_per_minute": round(jobs / elapsed * 60, 2)}


async def wait_serving(address: str, timeout: float = 180) -> None:
    channel = grpc_server.channel(address)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                if await grpc_server.check_health(channel):
                    return
            except grpc.RpcError:  # not listening yet: it loads the model first
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the second transcriber at {address} did not become healthy")
            await asyncio.sleep(0.5)
    finally:
        await channel.close()


def main() -> None:
    # Every process started here inherits these: no library may take more than the one core per
    # worker that the engine is limited to (BLAS in the speaker encoder, OpenMP in onnxruntime).
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    with running_stack(whisper=WhisperSettings(cpu_threads=1), upload_rate_limit_per_minute=0) as stack:
        settings = stack.settings
        asyncio.run(run_round(settings, 2))  # warm-up: first decode, first engine call, connections
        one = asyncio.run(run_round(settings, JOBS))

        second = settings.model_copy(update={"transcriber_address": f"127.0.0.1:{free_port()}"})
        extra = start_services(service_environment(second), stack.root / "logs-second", ("transcriber",))
        stack.processes["transcriber-2"] = extra["transcriber"]
        asyncio.run(wait_serving(second.transcriber_address))
        asyncio.run(run_round(settings, 2))  # warm-up of the second worker
        two = asyncio.run(run_round(settings, JOBS))

    print(json.dumps({
        "benchmark": "throughput",
        "clip": CLIP.name,
        "whisper_cpu_threads_per_worker": 1,
        "one_worker": one,
        "two_workers": two,
        "ratio_two_to_one": round(two["jobs_per_minute"] / one["jobs_per_minute"], 3),
        "goal_ratio": 1.7,
        "machine": {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg(),
                    "python": platform.python_version(), "platform": platform.platform()},
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
