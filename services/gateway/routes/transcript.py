"""A finished job's transcript: read it, name or merge speakers, change a segment."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field

from kazru.domain import errors
from services.gateway import openapi_docs as docs
from services.gateway.api_models import Segment, Transcript
from services.gateway.core import SegmentChange
from services.gateway.routes.dependencies import Caller, GatewayDep, json_body

router = APIRouter(prefix="/api/v1/jobs/{job_id}")


class SpeakerNames(BaseModel):
    speakers: dict[str, str] = Field(
        min_length=1, max_length=20, description="Speaker id → name to show, e.g. {\"S1\": \"Aigerim\"}",
        examples=[{"S1": "Айгерім", "S2": "Dauren"}],
    )  # fmt: skip


class SpeakerMerge(BaseModel):
    into: str = Field(
        max_length=32, description="The speaker id that absorbs the other one's segments", examples=["S1"]
    )


class SegmentEdit(BaseModel):
    """One change: `text` (new text), `"revert": true` (the machine's text back), `language` (correct the
    segment's language) or `speaker` (give the segment to another speaker, or a new one: splits a merge back)."""

    text: str | None = Field(default=None, description="New text, at most 10 000 characters; timing is kept")
    revert: bool = Field(default=False, description="Restore the machine's original text")
    language: str | None = Field(default=None, max_length=8, description="The segment's language (kk, ru, en)")
    speaker: str | None = Field(
        default=None, max_length=32, description="A speaker id of the job, or a new one (S1-S99)"
    )

    def change(self) -> SegmentChange:
        given = [name for name in ("text", "language", "speaker") if getattr(self, name) is not None]
        given += ["revert"] if self.revert else []
        if len(given) != 1:
            raise errors.InvalidArgument(
                "send one of 'text', '\"revert\": true', 'language' or 'speaker'", code="SEGMENT_CHANGE_MISSING"
            )
        return SegmentChange(given[0], "" if given[0] == "revert" else getattr(self, given[0]))


# Read after the caller is known and within KAZRU_MAX_JSON_BODY_BYTES (dependencies.json_body).
SpeakerNamesBody = Annotated[SpeakerNames, json_body(SpeakerNames)]
SpeakerMergeBody = Annotated[SpeakerMerge, json_body(SpeakerMerge)]
SegmentEditBody = Annotated[SegmentEdit, json_body(SegmentEdit)]
JSON_BODY_TOO_LARGE = {413: ("BODY_TOO_LARGE",)}


@router.get(
    "/transcript", summary="The transcript of a finished job", response_model=Transcript,
    responses=docs.error_responses({
        **docs.NOT_FOUND, 409: ("TRANSCRIPT_NOT_READY",), **docs.REMOVED, **docs.COMMON_ERRORS
    }),
)  # fmt: skip
async def get_transcript(job_id: str, caller: Caller, gateway: GatewayDep) -> Transcript:
    return Transcript.from_proto(*await gateway.get_transcript(caller.owner_id, job_id))


@router.put(
    "/speakers", summary="Name speakers; answers the updated transcript", response_model=Transcript,
    openapi_extra={"requestBody": docs.json_request_body(SpeakerNames)},
    responses=docs.error_responses({
        **docs.EDIT_ERRORS, **JSON_BODY_TOO_LARGE,
        400: ("INVALID_REQUEST", "SPEAKERS_EMPTY", "SPEAKER_NAME_EMPTY", "SPEAKER_NAME_INVALID",
              "SPEAKER_NAME_TOO_LONG"),
    }),
)  # fmt: skip
async def rename_speakers(job_id: str, body: SpeakerNamesBody, caller: Caller, gateway: GatewayDep) -> Transcript:
    return Transcript.from_proto(*await gateway.rename_speakers(caller.owner_id, job_id, body.speakers))


@router.post(
    "/speakers/{speaker}/merge",
    summary="Merge a speaker into another; answers the updated transcript",
    description="The speaker's segments and words are relabelled as `into`, and the speaker is removed.",
    response_model=Transcript,
    openapi_extra={"requestBody": docs.json_request_body(SpeakerMerge)},
    responses=docs.error_responses({
        **docs.EDIT_ERRORS, **JSON_BODY_TOO_LARGE, 400: ("INVALID_REQUEST", "MERGE_INTO_SELF")
    }),
)
async def merge_speaker(
    job_id: str, speaker: str, body: SpeakerMergeBody, caller: Caller, gateway: GatewayDep
) -> Transcript:
    return Transcript.from_proto(*await gateway.merge_speaker(caller.owner_id, job_id, speaker, body.into))


@router.patch(
    "/segments/{segment}",
    summary="Change a segment's text, language or speaker, or restore the machine's text; answers the segment",
    description="One change per request. The machine's text stays in `original_text` until the segment is "
    "reverted. A corrected `language` updates the job's language shares. `speaker` moves the segment and its "
    "words to another speaker, or to a new one (`S1`-`S99`), which splits a merge back turn by turn.",
    response_model=Segment,
    openapi_extra={"requestBody": docs.json_request_body(SegmentEdit)},
    responses=docs.error_responses({
        **docs.EDIT_ERRORS, **JSON_BODY_TOO_LARGE, 404: ("JOB_NOT_FOUND", "SEGMENT_NOT_FOUND"),
        400: ("INVALID_REQUEST", "SEGMENT_CHANGE_MISSING", "SEGMENT_TEXT_INVALID", "SEGMENT_TEXT_TOO_LONG",
              "INVALID_LANGUAGE", "SPEAKER_LABEL_INVALID"),
    }),
)  # fmt: skip
async def edit_segment(job_id: str, segment: int, body: SegmentEditBody, caller: Caller, gateway: GatewayDep) -> Segment:
    return Segment.from_proto(await gateway.edit_segment(caller.owner_id, job_id, segment, body.change()))
