"""Exports and edits over real HTTP and gRPC: the gateway and exporter as processes, transcripts
written into PostgreSQL as the transcriber leaves them. Headers, routes, status codes, isolation."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import grpc
import httpx
import pytest

from kazru.db.models import JobState
from kazru.grpc import server as grpc_server
from kazru.v1 import export_pb2, job_service_pb2, job_service_pb2_grpc
from services.gateway.auth import BOOTSTRAP_OWNER
from tests import export_checks
from tests.e2e.conftest import API_KEY, register_api_key, stack_fixture
from tests.transcripts import WordSpec, insert_transcript, segment_of_words

AUTH = {"Authorization": f"Bearer {API_KEY}"}
INTRUDER_KEY = "intruder-key-" + uuid.uuid4().hex
INTRUDER = {"Authorization": f"Bearer {INTRUDER_KEY}"}
FILENAME = "Сұхбат «Әңгіме» 1.flac"


stack = stack_fixture("exports", services=("exporter", "gateway"))


@pytest.fixture(scope="module")
async def intruder(database):
    await register_api_key(database, "intruder", INTRUDER_KEY)


def dialogue() -> list:
    return [
        segment_of_words("S1", [WordSpec(0.5 + i * 0.5, 0.9 + i * 0.5, w) for i, w in enumerate("Сәлем қалың қалай".split())]),
        segment_of_words("S2", [WordSpec(3.0 + i * 0.5, 3.4 + i * 0.5, w) for i, w in enumerate("Жақсы, рахмет!".split())]),
    ]  # fmt: skip


async def new_job(database) -> str:
    return str(await insert_transcript(database, dialogue(), owner_id=BOOTSTRAP_OWNER, filename=FILENAME))


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [
        ("txt", "text/plain; charset=utf-8"),
        ("srt", "application/x-subrip; charset=utf-8"),
        ("vtt", "text/vtt; charset=utf-8"),
        ("json", "application/json"),
        ("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ],
)
async def test_download_every_format_with_its_type_and_the_original_name(stack, database, fmt, content_type):
    job_id = await new_job(database)
    async with httpx.AsyncClient(base_url=stack.http, headers=AUTH) as client:
        response = await client.get(f"/api/v1/jobs/{job_id}/export/{fmt}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == content_type
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="') and disposition.split(";")[1].isascii()
    assert f"filename*=UTF-8''{quote(f'Сұхбат «Әңгіме» 1.{fmt}', safe='')}" in disposition
    if fmt == "srt":
        assert export_checks.parse_srt(response.content)[0].content == "S1: Сәлем қалың қалай"
    elif fmt == "vtt":
        assert export_checks.parse_vtt(response.content)[1].voice == "S2"
    elif fmt == "json":
        assert export_checks.parse_json(response.content)["filename"] == FILENAME
    elif fmt == "docx":
        assert "[00:00:00] S1: Сәлем қалың қалай" in export_checks.open_docx(response.content)
    else:
        assert response.text == "[00:00:00] S1: Сәлем қалың қалай\n\n[00:00:03] S2: Жақсы, рахмет!\n"


async def test_edit_over_http_then_export(stack, database, intruder):
    job_id = await new_job(database)
    async with httpx.AsyncClient(base_url=stack.http, headers=AUTH) as client:
        renamed = await client.put(f"/api/v1/jobs/{job_id}/speakers", json={"speakers": {"S1": "Айгерім"}})
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["speakers"][0] == {"id": "S1", "label": "Айгерім", "speaking_seconds": pytest.approx(1.4),
                                                 "segment_count": 1}  # fmt: skip
        patched = await client.patch(f"/api/v1/jobs/{job_id}/segments/1", json={"text": "Жақсы, көп рақмет!"})
        assert patched.status_code == 200, patched.text
        assert patched.json()["edited"] and patched.json()["original_text"] == "Жақсы, рахмет!"
        merged = await client.post(f"/api/v1/jobs/{job_id}/speakers/S2/merge", json={"into": "S1"})
        assert merged.status_code == 200, merged.text
        assert [s["id"] for s in merged.json()["speakers"]] == ["S1"]

        txt = (await client.get(f"/api/v1/jobs/{job_id}/export/txt", params={"timestamps": "false"})).text
        assert txt == "Айгерім: Сәлем қалың қалай Жақсы, көп рақмет!\n"
        srt_text = (await client.get(f"/api/v1/jobs/{job_id}/export/srt")).content
        assert [s.content for s in export_checks.parse_srt(srt_text)] == [
            "Айгерім: Сәлем қалың қалай",
            "Жақсы, көп рақмет!",
        ]

        reverted = await client.patch(f"/api/v1/jobs/{job_id}/segments/1", json={"revert": True})
        assert reverted.json()["text"] == "Жақсы, рахмет!" and not reverted.json()["edited"]

        # The merge split back (segment 1 to a new S2), and a language corrected: the job and exports follow.
        given_back = await client.patch(f"/api/v1/jobs/{job_id}/segments/1", json={"speaker": "S2"})
        assert given_back.status_code == 200 and given_back.json()["speaker"] == "S2"
        relabelled = await client.patch(f"/api/v1/jobs/{job_id}/segments/1", json={"language": "ru"})
        assert relabelled.json()["language"] == "ru"
        job = (await client.get(f"/api/v1/jobs/{job_id}")).json()
        assert set(job["language_shares"]) == {"kk", "ru"} and job["speaker_count"] == 2
        txt = (await client.get(f"/api/v1/jobs/{job_id}/export/txt", params={"timestamps": "false"})).text
        assert txt == "Айгерім (kk): Сәлем қалың қалай\n\nS2 (ru): Жақсы, рахмет!\n"

        openapi = (await client.get("/api/v1/openapi.json")).json()
        assert "/api/v1/jobs/{job_id}/speakers/{speaker}/merge" in openapi["paths"]
        assert "SegmentEdit" in openapi["components"]["schemas"]


async def test_clear_errors_over_http(stack, database, intruder):
    job_id = await new_job(database)
    running = str(await insert_transcript(database, dialogue(), owner_id=BOOTSTRAP_OWNER, state=JobState.RUNNING))
    cases = [
        ("put", f"/api/v1/jobs/{job_id}/speakers", {"speakers": {"S1": ""}}, 400, "SPEAKER_NAME_EMPTY"),
        ("put", f"/api/v1/jobs/{job_id}/speakers", {"speakers": {"S1": "ә" * 10_000}}, 400, "SPEAKER_NAME_TOO_LONG"),
        ("put", f"/api/v1/jobs/{job_id}/speakers", {"speakers": {"S7": "Әлия"}}, 404, "SPEAKER_NOT_FOUND"),
        ("put", f"/api/v1/jobs/{job_id}/speakers", {"names": {}}, 400, "INVALID_REQUEST"),
        ("post", f"/api/v1/jobs/{job_id}/speakers/S7/merge", {"into": "S1"}, 404, "SPEAKER_NOT_FOUND"),
        ("post", f"/api/v1/jobs/{job_id}/speakers/S1/merge", {"into": "S1"}, 400, "MERGE_INTO_SELF"),
        ("patch", f"/api/v1/jobs/{job_id}/segments/9", {"text": "мәтін"}, 404, "SEGMENT_NOT_FOUND"),
        ("patch", f"/api/v1/jobs/{job_id}/segments/x", {"text": "мәтін"}, 400, "INVALID_REQUEST"),
        ("patch", f"/api/v1/jobs/{job_id}/segments/0", {}, 400, "SEGMENT_CHANGE_MISSING"),
        (
            "patch",
            f"/api/v1/jobs/{job_id}/segments/0",
            {"text": "мәтін", "language": "ru"},
            400,
            "SEGMENT_CHANGE_MISSING",
        ),
        ("patch", f"/api/v1/jobs/{job_id}/segments/0", {"language": "xx"}, 400, "INVALID_LANGUAGE"),
        ("patch", f"/api/v1/jobs/{job_id}/segments/0", {"speaker": "Guest"}, 400, "SPEAKER_LABEL_INVALID"),
        ("patch", f"/api/v1/jobs/{job_id}/segments/0", {"text": "ә" * 10_001}, 400, "SEGMENT_TEXT_TOO_LONG"),
        ("put", f"/api/v1/jobs/{running}/speakers", {"speakers": {"S1": "Әлия"}}, 409, "TRANSCRIPT_NOT_READY"),
        ("get", f"/api/v1/jobs/{job_id}/export/pdf", None, 400, "UNSUPPORTED_FORMAT"),
    ]
    async with httpx.AsyncClient(base_url=stack.http, headers=AUTH) as client:
        for method, path, body, status, code in cases:
            response = await client.request(method, path, json=body)
            assert (response.status_code, response.json()["error"]["code"]) == (status, code), (path, response.text)
            assert response.json()["error"]["message"]
        long_name = await client.put(f"/api/v1/jobs/{job_id}/speakers", json={"speakers": {"S1": "ә" * 10_000}})
        assert "at most 100" in long_name.json()["error"]["message"]


async def test_another_owner_gets_404_and_changes_nothing(stack, database, intruder):
    job_id = await new_job(database)
    async with httpx.AsyncClient(base_url=stack.http, headers=AUTH) as owner:
        before = (await owner.get(f"/api/v1/jobs/{job_id}/export/json")).content
    async with httpx.AsyncClient(base_url=stack.http, headers=INTRUDER) as client:
        for method, path, body in [
            ("put", f"/api/v1/jobs/{job_id}/speakers", {"speakers": {"S1": "Хакер"}}),
            ("post", f"/api/v1/jobs/{job_id}/speakers/S2/merge", {"into": "S1"}),
            ("patch", f"/api/v1/jobs/{job_id}/segments/0", {"text": "бұзылған"}),
            ("patch", f"/api/v1/jobs/{job_id}/segments/0", {"revert": True}),
            *(("get", f"/api/v1/jobs/{job_id}/export/{fmt}", None) for fmt in ("txt", "srt", "vtt", "json", "docx")),
        ]:
            response = await client.request(method, path, json=body)
            assert response.status_code == 404 and response.json()["error"]["code"] == "JOB_NOT_FOUND", path
            assert "Сәлем" not in response.text
    async with httpx.AsyncClient(base_url=stack.http, headers=AUTH) as owner:
        assert (await owner.get(f"/api/v1/jobs/{job_id}/export/json")).content == before

    channel = grpc_server.channel(stack.settings.public_grpc_address)
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    metadata = (("authorization", f"Bearer {INTRUDER_KEY}"),)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.UpdateSpeakers(
                job_service_pb2.UpdateSpeakersRequest(name=f"jobs/{job_id}", speaker_names={"S1": "Хакер"}),
                metadata=metadata,
            )
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await channel.close()


async def test_edit_and_export_over_grpc(stack, database):
    job_id = await new_job(database)
    channel = grpc_server.channel(stack.settings.public_grpc_address)
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    metadata = (("authorization", f"Bearer {API_KEY}"),)
    name = f"jobs/{job_id}"
    try:
        transcript = await stub.UpdateSpeakers(
            job_service_pb2.UpdateSpeakersRequest(name=name, speaker_names={"S2": "Дәурен"}), metadata=metadata
        )
        assert [s.label for s in transcript.speakers] == ["S1", "Дәурен"]
        segment = await stub.UpdateSegment(
            job_service_pb2.UpdateSegmentRequest(name=f"{name}/segments/0", text="Сәлем, қалың қалай?"),
            metadata=metadata,
        )
        assert segment.edited and segment.original_text == "Сәлем қалың қалай" and segment.start_seconds == 0.5
        transcript = await stub.MergeSpeakers(
            job_service_pb2.MergeSpeakersRequest(name=name, speaker="S1", into="S2"), metadata=metadata
        )
        assert [(s.id, s.label, s.segment_count) for s in transcript.speakers] == [("S2", "Дәурен", 2)]

        chunks = [
            chunk
            async for chunk in stub.ExportTranscript(
                job_service_pb2.ExportTranscriptRequest(name=name, format=export_pb2.EXPORT_FORMAT_VTT),
                metadata=metadata,
            )
        ]
        assert chunks[0].content_type == "text/vtt; charset=utf-8" and chunks[0].filename == "Сұхбат «Әңгіме» 1.vtt"
        cues = export_checks.parse_vtt(b"".join(c.data for c in chunks))
        assert [(c.voice, c.text) for c in cues] == [("Дәурен", "Сәлем, қалың қалай?"), ("Дәурен", "Жақсы, рахмет!")]

        for request, code in [
            (
                job_service_pb2.UpdateSpeakersRequest(name=name, speaker_names={"S2": " "}),
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
            (job_service_pb2.UpdateSegmentRequest(name=f"{name}/segments/5", revert=True), grpc.StatusCode.NOT_FOUND),
            (job_service_pb2.UpdateSegmentRequest(name=name, text="x"), grpc.StatusCode.INVALID_ARGUMENT),
        ]:
            method = (
                stub.UpdateSpeakers
                if isinstance(request, job_service_pb2.UpdateSpeakersRequest)
                else stub.UpdateSegment
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await method(request, metadata=metadata)
            assert refused.value.code() == code
    finally:
        await channel.close()


async def test_a_lone_surrogate_or_a_nul_is_a_clear_400_on_http_and_grpc_and_changes_nothing(stack, database):
    job_id = await new_job(database)
    # "\ud800" is valid JSON (half of a UTF-16 pair) but no character: raw bodies, as json.dumps cannot send it.
    cases = [
        ("put", "/speakers", rb'{"speakers": {"S1": "Ai\ud800gerim"}}', "SPEAKER_NAME_INVALID"),
        ("patch", "/segments/0", rb'{"text": "\ud800"}', "SEGMENT_TEXT_INVALID"),
        ("patch", "/segments/0", rb'{"text": "a\u0000b"}', "SEGMENT_TEXT_INVALID"),
        # Fields with a length bound are refused by the body's model already.
        ("patch", "/segments/0", rb'{"language": "\udc00"}', "INVALID_REQUEST"),
        ("patch", "/segments/0", rb'{"speaker": "\ud800"}', "INVALID_REQUEST"),
    ]
    async with httpx.AsyncClient(base_url=stack.http, headers=AUTH) as client:
        before = (await client.get(f"/api/v1/jobs/{job_id}/export/json")).content
        for method, path, body, code in cases:
            response = await client.request(
                method, f"/api/v1/jobs/{job_id}{path}", content=body, headers={"Content-Type": "application/json"}
            )
            assert (response.status_code, response.json()["error"]["code"]) == (400, code), (body, response.text)
        # A label is echoed in the error's message: still written, escaped, as UTF-8 cannot carry it.
        unknown = await client.put(f"/api/v1/jobs/{job_id}/speakers", content=rb'{"speakers": {"\ud800": "A"}}')
        assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "SPEAKER_NOT_FOUND")
        assert (await client.get(f"/api/v1/jobs/{job_id}/export/json")).content == before

    channel = grpc_server.channel(stack.settings.public_grpc_address)
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    metadata = (("authorization", f"Bearer {API_KEY}"),)
    # gRPC strings cannot carry a surrogate, but can carry a NUL, which PostgreSQL's text cannot store.
    name = f"jobs/{job_id}/segments/0"
    try:
        for call, request in [
            (stub.UpdateSegment, job_service_pb2.UpdateSegmentRequest(name=name, text="a\x00b")),
            (stub.UpdateSpeakers, job_service_pb2.UpdateSpeakersRequest(name=f"jobs/{job_id}", speaker_names={"S1": "\x00"})),
        ]:  # fmt: skip
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call(request, metadata=metadata)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
    finally:
        await channel.close()


async def test_export_formats_are_case_insensitive_and_head_answers_like_get(stack, database):
    job_id = await new_job(database)
    async with httpx.AsyncClient(base_url=stack.http, headers=AUTH) as client:
        lower = await client.get(f"/api/v1/jobs/{job_id}/export/txt")
        upper = await client.get(f"/api/v1/jobs/{job_id}/export/TXT")
        assert upper.status_code == 200 and upper.content == lower.content
        assert upper.headers["content-type"] == lower.headers["content-type"]
        assert (await client.get(f"/api/v1/jobs/{job_id}/export/Srt")).status_code == 200
        page, head = await client.get("/"), await client.head("/")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-type"] == page.headers["content-type"]
        assert head.headers["content-length"] == page.headers["content-length"]
