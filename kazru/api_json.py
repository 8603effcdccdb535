"""A job as JSON, the way the HTTP API answers it and `kazru show` prints it: one shape in one place, so
the two never name a field differently (`created_at`, `size_bytes` as a number)."""

from google.protobuf.timestamp_pb2 import Timestamp

from kazru.v1 import job_pb2


def _iso(stamp: Timestamp, present: bool) -> str | None:
    return stamp.ToDatetime().isoformat() + "Z" if present else None


def job_json(job: job_pb2.Job) -> dict:
    return {
        "job_id": job.job_id,
        "name": job.name,
        "state": job_pb2.Job.State.Name(job.state),
        "progress": job.progress,
        "filename": job.filename,
        "size_bytes": job.size_bytes,
        "audio": {
            "duration_seconds": job.audio.duration_seconds,
            "codec": job.audio.codec,
            "channels": job.audio.channels,
            "sample_rate": job.audio.sample_rate,
            "container": job.audio.container,
            "truncated": job.audio.truncated,
            "declared_duration_seconds": job.audio.declared_duration_seconds if job.audio.truncated else None,
        },
        "languages": list(job.options.languages),
        "max_speakers": job.options.max_speakers or None,
        "min_speakers": job.options.min_speakers or None,
        "detected_language": job.detected_language or None,
        "language_shares": dict(job.language_shares),
        "speaker_count": job.speaker_count or None,
        "engine": job.engine or None,
        "billed_seconds": job.billed_seconds,
        "reused_from": job.reused_from or None,
        "created_at": _iso(job.create_time, job.HasField("create_time")),
        "started_at": _iso(job.start_time, job.HasField("start_time")),
        "finished_at": _iso(job.end_time, job.HasField("end_time")),
        "expires_at": _iso(job.expire_time, job.HasField("expire_time")),
        "error": {"code": job.error.code, "message": job.error.message} if job.HasField("error") else None,
        "links": {
            "self": f"/api/v1/jobs/{job.job_id}",
            "transcript": f"/api/v1/jobs/{job.job_id}/transcript",
            "export": f"/api/v1/jobs/{job.job_id}/export/{{format}}",
        },
    }
