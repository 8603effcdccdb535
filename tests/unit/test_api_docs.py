"""The HTTP API's document teaches what the API does: every error code it lists is one the code raises,
each route's examples are its own statuses' codes, and the examples are real answers, not placeholders."""

from pathlib import Path

from kazru.settings import Settings
from services.gateway import openapi_docs
from services.gateway.http_api import create_app

ROOT = Path(__file__).resolve().parents[2]
# Codes built at run time rather than written out, and where.
DERIVED = {
    "JOB_DELETED": ("kazru/db/jobs.py", 'code=f"JOB_{state.value}"'),
    "JOB_EXPIRED": ("kazru/db/jobs.py", 'code=f"JOB_{state.value}"'),
    "INVALID_MAX_SPEAKERS": ("services/gateway/upload_form.py", 'code = f"INVALID_{name.upper()}"'),
}
DOCUMENT = create_app(Settings.model_construct(), gateway=None, auth=None).openapi()  # type: ignore[arg-type]


def sources() -> str:
    files = [*ROOT.glob("kazru/**/*.py"), *ROOT.glob("services/**/*.py")]
    return "\n".join(path.read_text(encoding="utf-8") for path in files if path.name != "openapi_docs.py")


def test_every_documented_error_code_is_raised_somewhere():
    code = sources()
    for error_code in openapi_docs.ERROR_MESSAGES:
        if error_code in DERIVED:
            where, pattern = DERIVED[error_code]
            assert pattern in (ROOT / where).read_text(encoding="utf-8"), error_code
        else:
            assert f'"{error_code}"' in code, f"{error_code} is documented but never raised"


def test_each_route_lists_its_codes_with_an_example_of_each():
    for path, operations in DOCUMENT["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if not status.startswith(("4", "5")) or path == "/api/v1/health":  # its 503 is the health report
                    continue
                examples = response["content"]["application/json"].get("examples", {})
                assert examples, f"{method} {path} {status}: no example"
                for code, example in examples.items():
                    assert f"`{code}`" in response["description"]
                    assert example["value"]["error"]["code"] == code
                    assert example["value"]["error"]["message"] == openapi_docs.ERROR_MESSAGES[code]
                if status != "404":  # the old placeholder, once shown under every status
                    assert "JOB_NOT_FOUND" not in examples, f"{method} {path} {status}"


def test_the_examples_and_the_description_are_real():
    job = DOCUMENT["components"]["schemas"]["Job"]["examples"][0]
    assert job["state"] == "PENDING" and job["links"]["self"].endswith(job["job_id"])
    assert "STATE_UNSPECIFIED" not in str(DOCUMENT["paths"]["/api/v1/upload"])
    description = DOCUMENT["info"]["description"]
    for step in ("/api/v1/upload", "/status", "/transcript", "/export/srt", "DELETE", "/v1/audio/transcriptions"):
        assert step in description


def test_every_json_route_answers_through_its_documented_model():
    """The response model is the serializer: a JSON route without one would answer what the document does not say."""
    from fastapi.responses import StreamingResponse

    from services.gateway.routes import files, jobs, session, system, transcript

    json_routes = [
        route for module in (jobs, transcript, files, system, session) for route in module.router.routes
        if not (isinstance(route.response_class, type) and issubclass(route.response_class, StreamingResponse))
        and route.status_code != 204  # no body
    ]  # fmt: skip
    assert len(json_routes) >= 11
    for route in json_routes:
        assert route.response_model is not None, f"{route.methods} {route.path} builds its JSON by hand"
        responses = DOCUMENT["paths"][route.path][next(iter(route.methods)).lower()]["responses"]
        success = responses.get("200") or responses["202"]
        assert success["content"]["application/json"]["schema"]["$ref"].endswith(f"/{route.response_model.__name__}")


def test_the_job_says_which_engine_and_model_transcribed_it():
    job = DOCUMENT["components"]["schemas"]["Job"]
    assert {"engine", "engine_model"} <= set(job["required"])
    assert "gigaam-multilingual-ctc" in job["properties"]["engine_model"]["description"]
