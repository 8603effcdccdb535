"""Typed settings, read once from the environment (KAZRU_*), validated at start-up.

Defaults describe a local run (`make run`): every server on 127.0.0.1 on ports
chosen not to clash with a system PostgreSQL/NATS/MinIO. KAZRU_DEPLOYMENT=production
(the Kubernetes manifests) refuses to start on what is only right for a local run:
the built-in S3 credentials, `make run`'s encryption key, anonymous access, CORS for
every origin.
"""

from __future__ import annotations

import base64
import re
import tempfile
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
# Addresses that mean "listen on every interface".
WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::", "[::]"})
# A master key of the audio encrypted at rest (KAZRU_ENCRYPTION_KEYS) is 256 bits, named by an id that
# each object's header carries (kazru.adapters.encryption, which does the cryptography).
ENCRYPTION_KEY_BYTES = 32
MAX_ENCRYPTION_KEY_ID_CHARS = 32
_ENCRYPTION_KEY_ID = re.compile(rf"[A-Za-z0-9._-]{{1,{MAX_ENCRYPTION_KEY_ID_CHARS}}}")
# The id of the key `make run` makes (kazru.dev.devstack), refused in production.
LOCAL_ENCRYPTION_KEY_ID = "local"
# The S3 credentials of a local run (the object store `make run` starts), refused in production.
LOCAL_S3_ACCESS_KEY = "kazru"
LOCAL_S3_SECRET_KEY = "kazru-local-secret"


class Deployment(StrEnum):
    # `make run`, the tests, one machine: the defaults are right as they are.
    LOCAL = "local"
    # A service other people reach: no built-in credential, API keys required (Settings._check_production).
    PRODUCTION = "production"


class AnonymousAccess(StrEnum):
    # Requests without credentials act as one shared local owner: a single-user
    # machine where curl, the CLI and the browser should see the same jobs.
    SHARED = "shared"
    # Each browser gets its own anonymous owner through an HttpOnly cookie.
    COOKIE = "cookie"
    # Credentials are required.
    DENY = "deny"


class WhisperSettings(BaseSettings):
    """The local engine, faster-whisper (engine="whisper"), `Settings.whisper`: the variables keep their
    names, KAZRU_WHISPER_<FIELD> (KAZRU_WHISPER_MODEL, KAZRU_WHISPER_CPU_THREADS, ...)."""

    model_config = SettingsConfigDict(env_prefix="KAZRU_WHISPER_", frozen=True, extra="ignore")

    model: str = ""  # path or model name; empty: the installed offline default
    compute_type: str = "int8"
    device: str = "cpu"
    cpu_threads: int = Field(default=0, ge=0)  # 0: let CTranslate2 decide
    # Each speaker turn is decoded once per allowed language, so the beam costs double:
    # greedy keeps the whole pipeline under 0.5x real time on 2 CPU cores (BENCHMARKS.md);
    # on a GPU, 5 is affordable and a little more accurate.
    beam_size: int = Field(default=1, ge=1)


class GigaamSettings(BaseSettings):
    """GigaAM-Multilingual CTC through onnx-asr on onnxruntime (engine="gigaam"), `Settings.gigaam`,
    read from KAZRU_GIGAAM_<FIELD>. The model's files are read from one local folder
    (`Settings.gigaam_model_dir`; which files: `kazru.adapters.model_files.gigaam_model_files`)."""

    model_config = SettingsConfigDict(env_prefix="KAZRU_GIGAAM_", frozen=True, extra="ignore")

    # 220 M parameters (int8 ~225 MB) or 600 M (int8 ~590 MB; a little more accurate, ~3x the CPU).
    model: Literal["gigaam-multilingual-ctc", "gigaam-multilingual-large-ctc"] = "gigaam-multilingual-ctc"
    # The folder holding the model's files; None: <data_dir>/models/<model>.
    model_dir: Path | None = None
    # The ONNX file's quantization as onnx-asr names it ("int8"); "": the full-precision file.
    quantization: str = "int8"
    # Speech is recognised in pieces at most this long, cut at pauses: GigaAM was trained on short
    # utterances (up to ~20-25 s), and attention's cost grows with the square of a piece's length.
    max_piece_seconds: float = Field(default=20.0, ge=2.0, le=60.0)
    # Pieces recognised together in one model call (padded to the longest of them). On 2 CPU cores one at a
    # time is the fastest and the leanest (real-size int8 model, random weights: real-time factor 0.106 and
    # 513 MB peak against 0.141 and 906 MB batched by 8; BENCHMARKS.md): batches pay for padding and the
    # threads are busy anyway. On more cores or a GPU, batch.
    batch_size: int = Field(default=1, ge=1)
    cpu_threads: int = Field(default=0, ge=0)  # 0: let onnxruntime decide


class SpeechKitSettings(BaseSettings):
    """Yandex SpeechKit v3 (engine="speechkit"), `Settings.speechkit`: the variables keep their names,
    KAZRU_SPEECHKIT_<FIELD> (KAZRU_SPEECHKIT_API_KEY, KAZRU_SPEECHKIT_ENDPOINT, ...).

    Exactly one of API key / IAM token; the folder id is sent as x-folder-id and is required with an
    IAM token (an API key already belongs to a folder). `Settings` checks that, since it depends on
    `Settings.engine`.
    """

    model_config = SettingsConfigDict(
        env_prefix="KAZRU_SPEECHKIT_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

    endpoint: str = "stt.api.cloud.yandex.net:443"
    # Recognition status is polled through the Operation service.
    operation_endpoint: str = "operation.api.cloud.yandex.net:443"
    api_key: SecretStr | None = None
    iam_token: SecretStr | None = None
    folder_id: str = ""
    model: str = "general"
    tls: bool = True
    text_normalization: bool = True
    # Inline `content` limit of RecognizeFile; larger PCM is re-encoded to mono Ogg Opus.
    max_inline_bytes: int = Field(default=60_000_000, gt=0)
    opus_bitrate: int = Field(default=24_000, ge=6_000, le=510_000)
    # Status checks: at most 5 per second (SpeechKit quota), the interval grows to the maximum.
    poll_initial_seconds: float = Field(default=0.5, ge=0.2)
    poll_max_seconds: float = Field(default=5.0, ge=0.2)
    # Whole recognition: fixed part plus a share of the audio's duration (Yandex: ~10 s per audio minute).
    timeout_seconds: float = Field(default=600.0, gt=0)
    timeout_per_audio_second: float = Field(default=0.5, ge=0)
    # One RPC's deadline (RecognizeFile uploads up to 60 MB).
    call_timeout_seconds: float = Field(default=300.0, gt=0)
    # Retries of UNAVAILABLE / RESOURCE_EXHAUSTED / DEADLINE_EXCEEDED: exponential backoff with jitter.
    max_attempts: int = Field(default=6, ge=1)
    retry_initial_seconds: float = Field(default=1.0, ge=0)
    retry_max_seconds: float = Field(default=30.0, ge=0)


class Settings(BaseSettings):
    # Errors never echo the input: it holds secrets (S3 and API keys, the encryption keyring).
    model_config = SettingsConfigDict(env_prefix="KAZRU_", frozen=True, extra="ignore", hide_input_in_errors=True)

    # "local" (the default: `make run`, tests) or "production": see Deployment.
    deployment: Deployment = Deployment.LOCAL

    # Where local data (servers' data, models) lives for `make run`.
    data_dir: Path = REPO_ROOT / ".kazru"
    # Local disk where the transcriber decodes a job's audio while it works (115 MB per hour of speech):
    # each process has a folder there, removed when it stops, or by the next transcriber to start if it
    # was killed. /tmp is an emptyDir in Kubernetes.
    scratch_dir: Path = Path(tempfile.gettempdir()) / "kazru-scratch"

    # PostgreSQL (SQLAlchemy URL, async psycopg driver).
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:55432/kazru"
    database_pool_size: int = 5
    # Connections opened beyond the pool under a burst, closed again when returned.
    database_max_overflow: int = 10

    # NATS JetStream.
    nats_url: str = "nats://127.0.0.1:54222"
    jobs_stream: str = "KAZRU_JOBS"
    # Copies of the jobs stream kept by a JetStream cluster (at most 5, JetStream's limit).
    # One server can hold only 1; a 3-server cluster should keep 3 so the queue survives a server.
    jobs_stream_replicas: int = Field(default=1, ge=1, le=5)
    # How long JetStream waits for an ack before redelivering; the worker sends
    # in-progress heartbeats well inside this.
    job_ack_wait_seconds: float = 60.0
    job_max_deliver: int = 5

    # S3-compatible object store.
    s3_endpoint: str = "127.0.0.1:58333"
    # The local object store's credentials; in production there are none built in (empty unless set), and
    # the services that use S3 do not start without them (kazru.adapters.storage.ObjectStore).
    s3_access_key: str = LOCAL_S3_ACCESS_KEY
    s3_secret_key: SecretStr = SecretStr(LOCAL_S3_SECRET_KEY)
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    s3_bucket: str = "kazru-audio"
    # Audio is stored encrypted (kazru.adapters.encryption) under master keys the object store never sees:
    # comma-separated `id:base64key` (32 random bytes each), and the id of the one that seals new objects
    # (may be empty with a single key). An object opens with the key id in its header, so after a rotation
    # keep the old key listed until its objects have expired. The services that read or write audio do
    # not start without keys; `make run` makes one under the data dir.
    encryption_keys: SecretStr | None = None
    encryption_key_id: str = ""

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
    # The longest recording accepted, refused at upload with 413 RECORDING_TOO_LONG when its header says
    # longer, and by the transcriber (the job FAILED, RECORDING_TOO_LONG) once more than this decodes; 0: no limit. The local engine holds the whole recording as PCM today (about 1 GB per hour of audio at
    # peak), so 3 h keeps a transcriber within the 4 GiB the Kubernetes manifests give it.
    max_duration_seconds: float = Field(default=3 * 3600, ge=0)
    # An upload of the same bytes with the same options, by the same owner, while an earlier job of theirs
    # still holds its transcript, takes a copy of that transcript at once instead of running the engine.
    reuse_identical_uploads: bool = True
    retention_hours: float = Field(default=24.0, gt=0)
    # Uploads accepted per minute from one caller: an API key counts on its own, whatever address it
    # calls from; an anonymous browser session likewise. 0: no limit. Counted in PostgreSQL, so shared
    # by every gateway replica.
    upload_rate_limit_per_minute: int = Field(default=10, ge=0)
    # Uploads accepted per minute from one client address, for anonymous callers only (a new cookie
    # is free to get, an address is not); callers with an API key never count here. 0: no limit.
    anonymous_address_upload_rate_limit_per_minute: int = Field(default=30, ge=0)

    # Auth.
    anonymous_access: AnonymousAccess = AnonymousAccess.COOKIE
    bootstrap_api_key: SecretStr | None = None
    # Other origins whose pages may call the HTTP API with an API key (CORS), comma-separated:
    # KAZRU_CORS_ORIGINS=https://app.example.org. Empty: none. Cookies are never allowed cross-origin.
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    # Host names (optionally with :port) the HTTP API answers to, comma-separated; `*`: any. A request
    # naming another Host is refused before routing (421), so a page on a domain re-pointed at 127.0.0.1
    # (DNS rebinding) cannot reach a local run. Empty: 127.0.0.1, localhost, [::1] and http_host, or any
    # host where http_host listens on every address (a server behind a proxy or Kubernetes probes).
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    # The largest JSON request body (renaming speakers, editing a segment), refused with 413 before it is
    # read whole; uploads have max_upload_bytes instead.
    max_json_body_bytes: int = Field(default=MIB, gt=0)

    # Live job updates (gRPC WatchJob, HTTP SSE). The row is re-read on every bus event and at least
    # this often (events can be missed, and a worker claiming a job announces nothing).
    watch_recheck_seconds: float = Field(default=5.0, gt=0)
    # An SSE comment line this often, so proxies and browsers keep an idle stream open.
    sse_heartbeat_seconds: float = Field(default=15.0, gt=0)

    # Speech engine: "whisper" (faster-whisper, local), "speechkit" (Yandex SpeechKit v3) or "gigaam"
    # (GigaAM-Multilingual on onnxruntime, local: the one that writes Kazakh).
    engine: Literal["whisper", "speechkit", "gigaam"] = "whisper"

    # Local engine (faster-whisper), read from KAZRU_WHISPER_*: see WhisperSettings.
    whisper: WhisperSettings = Field(default_factory=WhisperSettings)
    # Comma-separated in the environment: KAZRU_DEFAULT_LANGUAGES=kk,ru
    default_languages: Annotated[tuple[str, ...], NoDecode] = ("kk", "ru")
    supported_languages: Annotated[tuple[str, ...], NoDecode] = ("kk", "ru", "en")

    # GigaAM-Multilingual (engine="gigaam"), read from KAZRU_GIGAAM_*: see GigaamSettings.
    gigaam: GigaamSettings = Field(default_factory=GigaamSettings)
    # Yandex SpeechKit v3 (engine="speechkit"), read from KAZRU_SPEECHKIT_*: see SpeechKitSettings.
    speechkit: SpeechKitSettings = Field(default_factory=SpeechKitSettings)

    # Janitor.
    janitor_interval_seconds: float = Field(default=60.0, gt=0)
    janitor_batch_size: int = Field(default=100, gt=0)
    # Multipart uploads older than this are abandoned (a crashed ingest) and aborted.
    abandoned_upload_hours: float = Field(default=6.0, gt=0)
    # A PENDING job whose JobUploaded publish is unconfirmed this long after upload is republished.
    enqueue_retry_after_seconds: float = Field(default=10.0, gt=0)
    # For usage_stats' estimated cost: price of one billed minute at an external engine (0: local only).
    usage_cost_per_billed_minute: float = Field(default=0.0, ge=0)

    # ffmpeg: empty means a system ffmpeg if there is one, else imageio-ffmpeg's.
    ffmpeg_path: str = ""

    shutdown_grace_seconds: float = 10.0
    log_level: str = "INFO"
    # Set by `make run` (kazru.dev.supervisor): the file where it says which services it restarted, how
    # often and why they died; the gateway's /api/v1/health adds that to each service's check. None: no
    # supervisor of ours (Kubernetes counts restarts itself).
    supervisor_status_file: Path | None = None

    # Prometheus /metrics of ingest, exporter, transcriber and janitor (the gateway's is on its HTTP
    # port). 0: off, the default for a local run, where the four would share one port; k8s sets 9464.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"

    @field_validator("default_languages", "supported_languages", "allowed_hosts", mode="before")
    @classmethod
    def _split_languages(cls, value: object) -> object:
        return _comma_list(value)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        value = _comma_list(value)
        if isinstance(value, tuple):
            value = tuple(origin.rstrip("/") for origin in value)
        for origin in value if isinstance(value, tuple | list) else ():
            parts = urlsplit(origin)
            if origin != "*" and (parts.scheme not in ("http", "https") or not parts.netloc or parts.path):
                raise ValueError(f"a CORS origin is scheme://host[:port] (or *), not {origin!r}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _no_built_in_credentials_in_production(cls, data: object) -> object:
        """In production the local S3 credentials are no default: a service that never uses S3 (the exporter,
        migrations) needs none, and one that does fails at start without its own."""
        if isinstance(data, dict) and str(data.get("deployment", "")) == Deployment.PRODUCTION:
            return {"s3_access_key": "", "s3_secret_key": "", **data}
        return data

    @model_validator(mode="after")
    def _check_encryption_keys(self) -> Settings:
        if self.encryption_keys:
            parse_encryption_keys(self.encryption_keys.get_secret_value(), self.encryption_key_id)
        return self

    @model_validator(mode="after")
    def _check_production(self) -> Settings:
        """What is right for one local user only, refused in production, each naming its setting and never
        its value when that is a secret."""
        if self.deployment is not Deployment.PRODUCTION:
            return self
        refused = []
        if self.s3_access_key == LOCAL_S3_ACCESS_KEY:
            refused.append("KAZRU_S3_ACCESS_KEY is the built-in local default; set an access key of your own")
        if self.s3_secret_key.get_secret_value() == LOCAL_S3_SECRET_KEY:
            refused.append("KAZRU_S3_SECRET_KEY is the built-in local default; set a secret of your own")
        if self.encryption_keys:
            keys, _ = parse_encryption_keys(self.encryption_keys.get_secret_value(), self.encryption_key_id)
            if LOCAL_ENCRYPTION_KEY_ID in keys:
                refused.append(
                    f"KAZRU_ENCRYPTION_KEYS holds the key {LOCAL_ENCRYPTION_KEY_ID!r} that `make run` makes; "
                    "make keys of your own (README, Encryption at rest)"
                )
        if self.anonymous_access is not AnonymousAccess.DENY:
            refused.append(
                f"KAZRU_ANONYMOUS_ACCESS is {self.anonymous_access.value!r}; production requires API keys: "
                f"set KAZRU_ANONYMOUS_ACCESS={AnonymousAccess.DENY.value}"
            )
        if "*" in self.cors_origins:
            refused.append("KAZRU_CORS_ORIGINS lets every origin (*) call the API; name the origins that may")
        if refused:
            raise ValueError("KAZRU_DEPLOYMENT=production refuses: " + "; ".join(refused))
        return self

    @model_validator(mode="after")
    def _check_speechkit_credentials(self) -> Settings:
        if self.engine != "speechkit":
            return self
        # An empty secret (KAZRU_SPEECHKIT_API_KEY=) counts as missing.
        speechkit = self.speechkit
        if bool(speechkit.api_key) == bool(speechkit.iam_token):
            raise ValueError(
                "engine=speechkit needs exactly one of KAZRU_SPEECHKIT_API_KEY or KAZRU_SPEECHKIT_IAM_TOKEN"
            )
        if speechkit.iam_token and not speechkit.folder_id:
            raise ValueError("engine=speechkit with an IAM token needs KAZRU_SPEECHKIT_FOLDER_ID")
        return self

    def as_environment(self) -> dict[str, str]:
        """These settings as KAZRU_* variables, for starting services with the same view."""
        environment = {}
        for name, value in self._flat_items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, tuple):
                value = ",".join(map(str, value))
            elif isinstance(value, StrEnum):
                value = value.value
            environment[f"KAZRU_{name.upper()}"] = str(value)
        return environment

    def _flat_items(self) -> Iterator[tuple[str, object]]:
        """(name, value) of every setting, a nested engine group's as `<group>_<field>` (its variables'
        names: `whisper_model` for KAZRU_WHISPER_MODEL)."""
        for name, value in self:
            if isinstance(value, BaseSettings):
                yield from ((f"{name}_{field}", inner) for field, inner in value)
            else:
                yield name, value

    @property
    def http_allowed_hosts(self) -> tuple[str, ...]:
        """KAZRU_ALLOWED_HOSTS, or the default it describes."""
        if self.allowed_hosts:
            return self.allowed_hosts
        if self.http_host in WILDCARD_ADDRESSES:
            return ("*",)
        own = f"[{self.http_host}]" if ":" in self.http_host else self.http_host
        return tuple(dict.fromkeys(("127.0.0.1", "localhost", "[::1]", own)))

    @property
    def model_dir(self) -> Path:
        return self.data_dir / "models" / "whisper-base"

    @property
    def speaker_model_dir(self) -> Path:
        return self.data_dir / "models" / "campplus"

    @property
    def engine_model(self) -> str:
        """The configured engine's model as jobs name it (Recognition.model): "whisper-base",
        "gigaam-multilingual-ctc", "speechkit/general"; a Whisper folder or name as given, prefixed "whisper-"."""
        if self.engine == "gigaam":
            return self.gigaam.model
        if self.engine == "speechkit":
            return f"speechkit/{self.speechkit.model}"
        name = Path(self.whisper.model).name if self.whisper.model else "base"
        return name if name.startswith("whisper") else f"whisper-{name}"

    @property
    def gigaam_model_dir(self) -> Path:
        return self.gigaam.model_dir or self.data_dir / "models" / self.gigaam.model

    @property
    def whisper_model_path(self) -> str:
        return self.whisper.model or str(self.model_dir)


def parse_encryption_keys(entries: str, active_id: str = "") -> tuple[dict[str, bytes], str]:
    """KAZRU_ENCRYPTION_KEYS and KAZRU_ENCRYPTION_KEY_ID as (the keys by id, the active id). `entries`:
    comma-separated `id:base64key`; `active_id` may be empty when there is one key. Raises ValueError
    naming what is wrong (never the key)."""
    keys: dict[str, bytes] = {}
    for entry in filter(None, (part.strip() for part in entries.split(","))):
        key_id, colon, encoded = entry.partition(":")
        if not colon or not _ENCRYPTION_KEY_ID.fullmatch(key_id):
            raise ValueError("each encryption key is `id:base64key`, the id 1-32 of A-Z a-z 0-9 . _ -")
        try:
            key = base64.b64decode(encoded, validate=True)
        except ValueError:
            key = b""
        if len(key) != ENCRYPTION_KEY_BYTES:
            raise ValueError(f"encryption key {key_id!r} must be {ENCRYPTION_KEY_BYTES} bytes in base64")
        if key_id in keys:
            raise ValueError(f"encryption key id {key_id!r} is listed twice")
        keys[key_id] = key
    if not keys:
        raise ValueError("no encryption keys given")
    if not active_id and len(keys) == 1:
        active_id = next(iter(keys))
    if active_id not in keys:
        raise ValueError(f"the active encryption key id {active_id!r} is not among the keys")
    return keys, active_id


def _comma_list(value: object) -> object:
    """A comma-separated value from the environment ("kk, ru") as a tuple; anything else is left to pydantic."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value
