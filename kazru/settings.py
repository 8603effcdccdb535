"""Typed settings, read once from the environment (KAZRU_*), validated at start-up.

Defaults describe a local run (`make run`): every server on 127.0.0.1 on ports
chosen not to clash with a system PostgreSQL/NATS/MinIO.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


class AnonymousAccess(StrEnum):
    # Requests without credentials act as one shared local owner: a single-user
    # machine where curl, the CLI and the browser should see the same jobs.
    SHARED = "shared"
    # Each browser gets its own anonymous owner through an HttpOnly cookie.
    COOKIE = "cookie"
    # Credentials are required.
    DENY = "deny"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KAZRU_", frozen=True, extra="ignore")

    # Where local data (servers' data, models) lives for `make run`.
    data_dir: Path = REPO_ROOT / ".kazru"

    # PostgreSQL (SQLAlchemy URL, async psycopg driver).
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:55432/kazru"
    database_pool_size: int = 5

    # NATS JetStream.
    nats_url: str = "nats://127.0.0.1:54222"
    jobs_stream: str = "KAZRU_JOBS"
    # How long JetStream waits for an ack before redelivering; the worker sends
    # in-progress heartbeats well inside this.
    job_ack_wait_seconds: float = 60.0
    job_max_deliver: int = 5

    # S3-compatible object store.
    s3_endpoint: str = "127.0.0.1:58333"
    s3_access_key: str = "kazru"
    s3_secret_key: SecretStr = SecretStr("kazru-local-secret")
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    s3_bucket: str = "kazru-audio"

    # Addresses. Public: HTTP and gRPC of the gateway. Internal: the others.
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    public_grpc_address: str = "127.0.0.1:50051"
    ingest_address: str = "127.0.0.1:50061"
    exporter_address: str = "127.0.0.1:50062"
    transcriber_address: str = "127.0.0.1:50063"
    janitor_address: str = "127.0.0.1:50064"

    # Uploads.
    max_upload_bytes: int = Field(default=500 * MIB, gt=0)
    retention_hours: float = Field(default=24.0, gt=0)

    # Auth.
    anonymous_access: AnonymousAccess = AnonymousAccess.COOKIE
    bootstrap_api_key: SecretStr | None = None

    # Speech engine: "whisper" (local, offline) or "speechkit" (Yandex SpeechKit v3).
    engine: Literal["whisper", "speechkit"] = "whisper"

    # Local engine (faster-whisper).
    whisper_model: str = ""  # path or model name; empty: the installed offline default
    whisper_compute_type: str = "int8"
    whisper_device: str = "cpu"
    whisper_cpu_threads: int = Field(default=0, ge=0)  # 0: let CTranslate2 decide
    whisper_beam_size: int = Field(default=5, ge=1)
    # Comma-separated in the environment: KAZRU_DEFAULT_LANGUAGES=kk,ru
    default_languages: Annotated[tuple[str, ...], NoDecode] = ("kk", "ru")
    supported_languages: Annotated[tuple[str, ...], NoDecode] = ("kk", "ru", "en")

    # Janitor.
    janitor_interval_seconds: float = Field(default=60.0, gt=0)
    janitor_batch_size: int = Field(default=100, gt=0)

    # ffmpeg: empty means a system ffmpeg if there is one, else imageio-ffmpeg's.
    ffmpeg_path: str = ""

    shutdown_grace_seconds: float = 10.0
    log_level: str = "INFO"

    @field_validator("default_languages", "supported_languages", mode="before")
    @classmethod
    def _split_languages(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    def as_environment(self) -> dict[str, str]:
        """These settings as KAZRU_* variables, for starting services with the same view."""
        environment = {}
        for name, value in self:
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, tuple):
                value = ",".join(value)
            elif isinstance(value, StrEnum):
                value = value.value
            environment[f"KAZRU_{name.upper()}"] = str(value)
        return environment

    @property
    def model_dir(self) -> Path:
        return self.data_dir / "models" / "whisper-base"

    @property
    def whisper_model_path(self) -> str:
        return self.whisper_model or str(self.model_dir)
