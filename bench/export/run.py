"""Exports of a three-hour transcript through the gateway over HTTP.

A synthetic 3-hour conversation (30 000 words, 6 speakers, word timings; the
tests' generator) is written into PostgreSQL as the transcriber leaves it; the
exporter and the gateway run as processes (kazru.dev.devstack, as `make run` starts
them). For each format: time to the first body byte and total time of
`GET /api/v1/jobs/{id}/export/{format}` (median and max of RUNS after a warm-up).
As the peer figure, the `srt` library composes the same captions (the Subtitle
objects parsed from our SRT) in the same run. Prints JSON.

    .venv/bin/python bench/export/run.py
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import sys
import time

import httpx
import srt

from kazru.db.session import create_engine, create_sessionmaker
from kazru.settings import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))  # the tests' transcript generator and writer, and bench.stack
from bench.stack import running_stack  # noqa: E402
from tests.transcripts import insert_transcript, synthetic  # noqa: E402

FORMATS = ("txt", "srt", "vtt", "json", "docx")
RUNS = 15
GOAL_TOTAL_MS = 1000
GOAL_FIRST_BYTE_MS = 100


async def store_transcript(settings) -> tuple[str, int]:
    engine = create_engine(settings)
    segments = synthetic()
    job_id = await insert_transcript(
        create_sessionmaker(engine), segments, owner_id="local", filename="үш сағаттық сұхбат.flac",
        names={"S1": "Айгерім", "S2": "Дәурен"},
    )  # fmt: skip
    await engine.dispose()
    return str(job_id), sum(len(s.words) for s in segments)


def timed_download(client: httpx.Client, url: str) -> tuple[float, float, int]:
    """(ms to the first body byte, ms to the last, bytes), from sending the request."""
    started = time.perf_counter()
    first = None
    size = 0
    with client.stream("GET", url) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            if first is None and chunk:
                first = time.perf_counter()
            size += len(chunk)
    done = time.perf_counter()
    return ((first or done) - started) * 1000, (done - started) * 1000, size


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 1), "max": round(max(values), 1)}


def main() -> None:
    with running_stack(("exporter", "gateway"), required={"postgres", "nats", "s3", "exporter"}) as stack:
        settings = stack.settings
        job_id, words = asyncio.run(store_transcript(settings))
        results = {}
        with httpx.Client(base_url=f"http://127.0.0.1:{settings.http_port}", timeout=60) as client:
            for fmt in FORMATS:
                url = f"/api/v1/jobs/{job_id}/export/{fmt}"
                timed_download(client, url)  # warm-up
                runs = [timed_download(client, url) for _ in range(RUNS)]
                results[fmt] = {
                    "first_byte_ms": summary([r[0] for r in runs]),
                    "total_ms": summary([r[1] for r in runs]),
                    "bytes": runs[0][2],
                }
            srt_text = client.get(f"/api/v1/jobs/{job_id}/export/srt").text

    subtitles = list(srt.parse(srt_text))
    compose_ms = []
    for _ in range(RUNS):
        started = time.perf_counter()
        srt.compose(subtitles, reindex=False)
        compose_ms.append((time.perf_counter() - started) * 1000)
    srt_compose = summary(compose_ms)
    print(json.dumps({
        "benchmark": "export",
        "transcript": {"hours": 3, "words": words, "speakers": 6, "captions": len(subtitles)},
        "runs_per_format": RUNS,
        "formats": results,
        "srt_library_compose_ms": srt_compose,
        "srt_total_vs_srt_compose": round(results["srt"]["total_ms"]["median"] / srt_compose["median"], 2),
        "goals": {"total_ms": GOAL_TOTAL_MS, "first_byte_ms": GOAL_FIRST_BYTE_MS},
        "goals_met": {
            fmt: r["total_ms"]["median"] <= GOAL_TOTAL_MS and r["first_byte_ms"]["median"] <= GOAL_FIRST_BYTE_MS
            for fmt, r in results.items()
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
