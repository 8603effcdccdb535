"""OpenAI-compatible transcription: `POST /v1/audio/transcriptions`, `GET /v1/models`; `POST
/v1/audio/translations` answers that translation is not offered.

The audio API that whisper-asr-webservice, speaches, faster-whisper-server, LocalAI and whisper.cpp's
server offer, so the SDKs and tools that speak OpenAI's work unchanged:
`openai.OpenAI(base_url="http://HOST:8080/v1", api_key=KEY).audio.transcriptions.create(...)`.

A request is a normal job (listed, exportable, deleted after 24 h or on request; `X-Job-Id` and
`Location` name it); the answer comes when the job ends. Callers authenticate with the API's own keys
(`Authorization: Bearer`); where anonymous callers share the local owner (`make run`), any key that is
not registered acts as that owner too, since the SDK insists on sending one; such writes follow the
page's rule against other sites (services/gateway/csrf.py), so no web page can drive the local owner.
Errors come in OpenAI's shape, {"error": {"message", "type", "param", "code"}}, with our status mapping
and error codes, except that a bad file is 400 (param "file"), as OpenAI answers it, which its SDKs
raise as BadRequestError.
"""

import math
import string
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from kazru.domain import errors, export_formats
from kazru.domain.errors import KazruError, Kind
from kazru.settings import AnonymousAccess
from kazru.v1 import export_pb2, job_pb2, transcript_pb2
from services.gateway import csrf, upload_form
from services.gateway.auth import LOCAL_OWNER, Principal
from services.gateway.http_errors import PARAM_DETAIL, error_response, unexpected_error
from services.gateway.openapi_docs import multipart_form
from services.gateway.routes.dependencies import AuthenticatorDep, GatewayDep, SettingsDep

MODEL_ID = "kazru-stt"
# OpenAI's own names, accepted so that a tool with a fixed model name works; all are served by our pipeline
# (speakers included, whichever is named).
OPENAI_MODEL_NAMES = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-4o-transcribe-diarize")
MODELS = (MODEL_ID, *OPENAI_MODEL_NAMES)
RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json", "diarized_json")
GRANULARITIES = ("word", "segment")
# verbose_json names the language in words, as OpenAI's does ("russian"); segments carry the ISO code.
LANGUAGE_NAMES = {"kk": "kazakh", "ru": "russian", "en": "english"}
# A job that ended without a transcript: what the file was is at fault, so a 4xx, not a 5xx.
JOB_FAILED_STATUS = 422
# Refusals of the file itself (not audio, empty, undecodable, too large or too long, at upload or when the
# job failed on it): OpenAI answers them 400 invalid_request_error with param "file", not our 413/415/422.
FILE_ERROR_KINDS = frozenset({Kind.TOO_LARGE, Kind.UNSUPPORTED_MEDIA})
FILE_ERROR_CODES = frozenset({
    "EMPTY_FILE", "FILE_FIELD_MISSING", "MULTIPLE_FILES", "NOT_AUDIO", "AUDIO_UNDECODABLE", "AUDIO_EMPTY",
    "RECORDING_TOO_LONG", "RECORDING_TOO_LONG_FOR_SPEECHKIT",
})  # fmt: skip
State = job_pb2.Job.State


class OpenAIRoute(APIRoute):
    """Every error of these routes in OpenAI's shape, whatever raised it: authentication, a field, the job."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except KazruError as error:
                if _about_the_file(error):
                    error.details.setdefault(PARAM_DETAIL, "file")
                    return error_response(error, 400, openai=True)
                return error_response(error, _status_of(error), openai=True)
            except RequestValidationError as error:
                first = error.errors()[0] if error.errors() else {}
                invalid = errors.InvalidArgument(str(first.get("msg", "invalid request")), code="INVALID_REQUEST")
                return error_response(invalid, openai=True)
            except Exception as error:
                return error_response(unexpected_error(error, request.url.path), openai=True)

        return route


class JobEnded(errors.InvalidArgument):
    """The job ended without a transcript; `status` is the HTTP status of the answer."""

    def __init__(self, job: job_pb2.Job):
        state = State.Name(job.state)
        failed = job.state == State.FAILED
        code = job.error.code if job.HasField("error") and job.error.code else f"JOB_{state}"
        reason = job.error.message if job.HasField("error") and job.error.message else f"the job ended {state}"
        super().__init__(f"job {job.job_id}: {reason}", code=code, details={"job_id": job.job_id})
        self.status = JOB_FAILED_STATUS if failed else 410


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(examples=["invalid_request_error"])
    param: str | None = Field(description="The request field at fault, if one is", examples=["model"])
    code: str = Field(description="Our stable error code, as in /api/v1", examples=["MODEL_NOT_FOUND"])


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail


class ModelInfo(BaseModel):
    id: str = Field(examples=[MODEL_ID])
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelInfo]


def openai_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": OpenAIError, "description": "An error, in OpenAI's shape"} for status in statuses}


def _status_of(error: KazruError) -> int | None:
    return error.status if isinstance(error, JobEnded) else None


def _about_the_file(error: KazruError) -> bool:
    return error.kind in FILE_ERROR_KINDS or error.code in FILE_ERROR_CODES


def _invalid(param: str, message: str, code: str) -> errors.InvalidArgument:
    return errors.InvalidArgument(message, code=code, details={PARAM_DETAIL: param})


def check_field(name: str, value: str) -> None:
    """Refuse a bad field as it arrives: before the file's bytes reach ingest, where the form sends it first."""
    value = value.strip()
    if name == "model" and value not in MODELS:
        raise _invalid("model", f"unknown model '{value[:40]}'; served: {', '.join(MODELS)}", "MODEL_NOT_FOUND")
    if name == "response_format" and value not in RESPONSE_FORMATS:
        message = f"response_format must be one of {', '.join(RESPONSE_FORMATS)}"
        raise _invalid("response_format", message, "UNSUPPORTED_RESPONSE_FORMAT")
    if name in ("timestamp_granularities[]", "timestamp_granularities") and value not in GRANULARITIES:
        message = f"timestamp_granularities[] takes {' and '.join(GRANULARITIES)}"
        raise _invalid("timestamp_granularities", message, "UNSUPPORTED_TIMESTAMP_GRANULARITY")
    if name == "temperature":
        try:
            temperature = float(value)
        except ValueError:
            temperature = math.nan
        if not 0.0 <= temperature <= 1.0:
            raise _invalid("temperature", "temperature must be a number from 0 to 1", "INVALID_TEMPERATURE")
    if name == "stream" and value.lower() == "true":
        message = "streamed transcription is not offered; follow the job's progress at /api/v1/jobs/{id}/status"
        raise _invalid("stream", message, "STREAMING_NOT_SUPPORTED")


TRANSCRIPTION_REQUEST_BODY = multipart_form({
    "file": {"type": "string", "format": "binary", "description": "The recording"},
    "model": {"type": "string", "enum": list(MODELS), "default": MODEL_ID},
    "language": {"type": "string", "description": "ISO 639-1 (kk, ru, en); absent: detected among them"},
    "prompt": {"type": "string", "description": "Accepted; not used by our engine"},
    "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS), "default": "json"},
    "timestamp_granularities[]": {"type": "array", "items": {"enum": list(GRANULARITIES)}},
    "temperature": {"type": "number", "minimum": 0, "maximum": 1, "description": "Accepted; our decoding is fixed"},
    "min_speakers": {"type": "integer", "minimum": 1, "description": "Ours: at least this many"},
    "max_speakers": {"type": "integer", "minimum": 1, "description": "Ours: at most this many"},
})  # fmt: skip


router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"], route_class=OpenAIRoute)
SERVED_SINCE = int(time.time())


async def _caller(request: Request, settings: SettingsDep, auth: AuthenticatorDep) -> Principal:
    """An API key only (the SDKs send one); where anonymous callers share the local owner, any key will do,
    but not from another site's page: a form it posts would otherwise act as the local owner."""
    try:
        found = await auth.authenticate(request.headers.get("authorization"), None, browser=False)
    except errors.Unauthenticated:
        if settings.anonymous_access is not AnonymousAccess.SHARED:
            raise
        found = Principal(LOCAL_OWNER)
    if found.anonymous and request.method not in csrf.SAFE_METHODS:
        csrf.check_browser_write(request.headers, None, request.headers.get("host", ""))
    return found


Caller = Annotated[Principal, Depends(_caller)]


def model_json(model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": SERVED_SINCE, "owned_by": "kazru"}


@router.get(
    "/models", summary="The models served (OpenAI's names are served by the same pipeline)",
    response_model=ModelList, responses=openai_errors(401, 503),
)  # fmt: skip
async def list_models(who: Caller) -> dict:
    return {"object": "list", "data": [model_json(model_id) for model_id in MODELS]}


@router.get(
    "/models/{model}", summary="One served model", response_model=ModelInfo, responses=openai_errors(401, 404, 503)
)
async def get_model(model: str, who: Caller) -> dict:
    if model not in MODELS:
        raise errors.NotFound(f"no model '{model[:40]}'; served: {', '.join(MODELS)}", code="MODEL_NOT_FOUND")
    return model_json(model)


@router.post(
    "/audio/transcriptions",
    summary="Transcribe a file, answering when done (OpenAI's audio API)",
    description="A normal job (listed under /api/v1/jobs, exportable, deleted after 24 h), answered when it "
    "ends: `json` {text, usage}; `text`, `srt`, `vtt` as text; `verbose_json` {task, language, duration, text, "
    "segments, words (with `timestamp_granularities[]=word`)}, segments and words carrying our `speaker`; "
    "`diarized_json` {task, duration, text, segments [{type, id, start, end, text, speaker}]} with speakers "
    "A, B, … or the names given to them. `X-Job-Id` names the job. A job that failed is `422` with its "
    "error code; one deleted meanwhile `410`.",
    openapi_extra={"requestBody": TRANSCRIPTION_REQUEST_BODY},
    response_class=Response,
    responses={
        200: {"content": {"application/json": {}, "text/plain": {}, "application/x-subrip": {}, "text/vtt": {}}},
        **openai_errors(400, 401, 403, 410, 413, 422, 429, 503),
    },
)
async def transcribe(request: Request, who: Caller, gateway: GatewayDep, settings: SettingsDep) -> Response:
    fields: dict[str, str] = {}
    # Without `language` OpenAI's API detects it: ours chooses among every language it supports, not the
    # kk,ru default of our own API (English must come back as English, not as Russian words).
    job = await upload_form.upload_from_request(
        request, gateway, who, settings, fields, check_field, languages_when_absent=settings.supported_languages
    )
    async for update in gateway.watch_job(who.owner_id, job.job_id):  # ends after the job's last state
        job = update
    if job.state != State.SUCCEEDED:
        raise JobEnded(job)
    job, transcript = await gateway.get_transcript(who.owner_id, job.job_id)
    headers = {"X-Job-Id": job.job_id, "Location": f"/api/v1/jobs/{job.job_id}"}
    response_format = fields.get("response_format", "json").split(",")[-1].strip()
    if response_format in ("srt", "vtt"):
        first, rest = await gateway.export(
            who.owner_id, job.job_id, export_formats.BY_NAME[response_format], export_pb2.ExportOptions()
        )
        data = first.data + b"".join([chunk.data async for chunk in rest])
        return Response(data, media_type=first.content_type, headers=headers)
    if response_format == "text":
        return PlainTextResponse(full_text(transcript) + "\n", headers=headers)
    granularities = [part.strip() for part in fields.get("timestamp_granularities[]", "").split(",")]
    body = render(response_format, job, transcript, granularities)
    return JSONResponse(body, headers=headers)


@router.post(
    "/audio/translations",
    summary="Not offered: translation to English (OpenAI's audio API)",
    description="Answers `400` `invalid_request_error` with code `TRANSLATION_NOT_SUPPORTED`: this service "
    "transcribes in the language spoken and its configured engine does not translate to English. Use "
    "`/v1/audio/transcriptions`.",
    openapi_extra={"requestBody": TRANSCRIPTION_REQUEST_BODY},
    responses=openai_errors(400, 401, 403),
)
async def translate(who: Caller, settings: SettingsDep) -> Response:
    # The caller first (a bad key is still 401); the form is not read: the answer does not depend on it.
    raise errors.InvalidArgument(
        f"translation to English is not offered by this service's configured engine ({settings.engine}); "
        "transcribe in the spoken language with /v1/audio/transcriptions",
        code="TRANSLATION_NOT_SUPPORTED",
    )


def full_text(transcript: transcript_pb2.Transcript) -> str:
    return " ".join(segment.text.strip() for segment in transcript.segments if segment.text.strip())


def usage(transcript: transcript_pb2.Transcript) -> dict:
    return {"type": "duration", "seconds": math.ceil(transcript.duration_seconds)}


def render(response_format: str, job: job_pb2.Job, transcript: transcript_pb2.Transcript, granularities) -> dict:
    text = full_text(transcript)
    if response_format == "json":
        return {"text": text, "usage": usage(transcript)}
    if response_format == "diarized_json":
        names = speaker_names(transcript)
        segments = [
            {"type": "transcript.text.segment", "id": f"seg_{s.index:03d}", "start": s.start_seconds,
             "end": s.end_seconds, "text": s.text, "speaker": names.get(s.speaker, s.speaker)}
            for s in transcript.segments
        ]  # fmt: skip
        return {"task": "transcribe", "duration": transcript.duration_seconds, "text": text, "segments": segments,
                "usage": usage(transcript)}  # fmt: skip
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": LANGUAGE_NAMES.get(job.detected_language, job.detected_language),
        "duration": transcript.duration_seconds,
        "text": text,
        "usage": usage(transcript),
    }
    names = speaker_names(transcript)
    if "segment" in granularities or "word" not in granularities:  # segments unless only words were asked for
        body["segments"] = [verbose_segment(s, names) for s in transcript.segments]
    if "word" in granularities:
        body["words"] = [
            {"word": w.text, "start": w.start_seconds, "end": w.end_seconds, "probability": w.probability,
             "speaker": names.get(w.speaker or s.speaker, w.speaker or s.speaker)}
            for s in transcript.segments for w in s.words
        ]  # fmt: skip
    return body


def verbose_segment(segment: transcript_pb2.Segment, names: dict[str, str]) -> dict:
    """OpenAI's segment fields, from what our engine knows: the mean log-probability of the words, Whisper's
    compression ratio of the text; no speech probability and tokens are not kept (0 and none). Ours added:
    the speaker and the segment's language."""
    encoded = segment.text.encode()
    logprobs = [math.log(max(word.probability, 1e-6)) for word in segment.words]
    return {
        "id": segment.index,
        "seek": 0,
        "start": segment.start_seconds,
        "end": segment.end_seconds,
        "text": segment.text,
        "tokens": [],
        "temperature": 0.0,
        "avg_logprob": sum(logprobs) / len(logprobs) if logprobs else 0.0,
        "compression_ratio": len(encoded) / len(zlib.compress(encoded)) if encoded else 0.0,
        "no_speech_prob": 0.0,
        "speaker": names.get(segment.speaker, segment.speaker),
        "language": segment.language,
    }


def speaker_names(transcript: transcript_pb2.Transcript) -> dict[str, str]:
    """Speaker id → the name given to it, else a capital letter in order of appearance (OpenAI's A, B, …)."""
    letters = iter(string.ascii_uppercase)
    names = {}
    for speaker in transcript.speakers:
        renamed = speaker.label and speaker.label != speaker.id
        names[speaker.id] = speaker.label if renamed else next(letters, speaker.id)
    return names
