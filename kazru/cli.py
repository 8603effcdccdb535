"""`kazru`: the command-line client. Jobs go through the public gRPC API only (kazru.v1.JobService);
API keys and the usage report are the database administrator's, in `kazru-admin` (kazru.admin).

Exit codes a script can rely on: 0 ok, 1 other error, 2 usage error (or options the server
refuses, or an output that cannot be written), 3 not found (or deleted/expired), 4 the job failed,
5 the server is unavailable. Errors are one line on stderr: `kazru: CODE: message`. A reader that
goes away (`kazru jobs | head`) ends the command quietly, with 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import mimetypes
import os
import shlex
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import IO, Any

import grpc

from kazru.adapters import outages
from kazru.api_json import job_json
from kazru.domain import errors, export_formats, upload_protocol
from kazru.domain.errors import KazruError, Kind
from kazru.grpc.errors import from_rpc_error
from kazru.v1 import export_pb2, job_pb2, job_service_pb2, job_service_pb2_grpc

EXIT_OK, EXIT_OTHER, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_JOB_FAILED, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4, 5
EXIT_CODES = {
    Kind.INVALID_ARGUMENT: EXIT_USAGE,
    Kind.NOT_FOUND: EXIT_NOT_FOUND,
    Kind.GONE: EXIT_NOT_FOUND,
    Kind.UNAVAILABLE: EXIT_UNAVAILABLE,
}
DEFAULT_SERVER = "127.0.0.1:50051"
CHUNK_BYTES = 256 * 1024
CALL_TIMEOUT_SECONDS = 30.0
WATCH_RECONNECT_SECONDS = 60.0
FORMATS = export_formats.BY_NAME
# Formats that are not text: never written to a terminal, where they would only garble it.
BINARY_FORMATS = frozenset({"docx"})
State = job_pb2.Job.State
# Commands that were `kazru`'s and are `kazru-admin`'s now.
MOVED_TO_ADMIN = ("keys", "usage")


class JobFailed(Exception):
    def __init__(self, job: job_pb2.Job):
        state = State.Name(job.state)
        code = job.error.code if job.HasField("error") else f"JOB_{state}"
        message = job.error.message if job.HasField("error") else f"the job ended {state}"
        super().__init__(f"{code}: {message}")


class ProgressBar:
    """One line on stderr, redrawn in place on a terminal; on a pipe, a line per 25% step (or state)."""

    WIDTH = 30

    def __init__(self, label: str, stream: IO[str], enabled: bool = True):
        self._label = label
        self._stream = stream
        self._enabled = enabled
        self._tty = stream.isatty()
        self._last: tuple[int, str] | None = None

    def show(self, percent: int, note: str = "") -> None:
        percent = max(0, min(100, percent))
        if not self._enabled:
            return
        if self._tty:
            filled = self.WIDTH * percent // 100
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            self._stream.write(f"\r{self._label:<13} [{bar}] {percent:3d}% {note:<10}")
            self._stream.flush()
        elif self._last is None or percent // 25 > self._last[0] // 25 or note != self._last[1]:
            self._stream.write(f"{self._label}: {percent}% {note}".rstrip() + "\n")
        self._last = (percent, note)

    def done(self) -> None:
        if self._enabled and self._tty and self._last is not None:
            self._stream.write("\n")
            self._stream.flush()


def job_name(job: str) -> str:
    return job if job.startswith("jobs/") else f"jobs/{job}"


class Client:
    def __init__(self, channel: grpc.aio.Channel, api_key: str | None):
        self._stub = job_service_pb2_grpc.JobServiceStub(channel)
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()

    async def upload(
        self, path: Path, options: job_pb2.TranscriptionOptions, on_sent: Callable[[int], None]
    ) -> job_pb2.Job:
        size = path.stat().st_size
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"

        async def requests() -> AsyncIterator[job_service_pb2.UploadAudioRequest]:
            yield job_service_pb2.UploadAudioRequest(
                metadata=job_service_pb2.UploadMetadata(
                    filename=path.name, content_type=content_type, options=options, request_id=uuid.uuid4().hex
                )
            )
            sent = 0
            with path.open("rb") as audio:
                while chunk := audio.read(CHUNK_BYTES):
                    yield job_service_pb2.UploadAudioRequest(chunk=chunk)
                    sent += len(chunk)
                    on_sent(sent)
            yield job_service_pb2.UploadAudioRequest(complete=job_pb2.UploadComplete(size_bytes=sent))

        on_sent(0)
        job = await self._stub.UploadAudio(requests(), metadata=self._metadata)
        on_sent(size)
        return job

    def watch(self, name: str) -> AsyncIterator[job_pb2.Job]:
        return self._stub.WatchJob(job_service_pb2.WatchJobRequest(name=name), metadata=self._metadata)

    async def get(self, name: str) -> job_pb2.Job:
        return await self._stub.GetJob(
            job_service_pb2.GetJobRequest(name=name), metadata=self._metadata, timeout=CALL_TIMEOUT_SECONDS
        )

    async def list(self, page_size: int, page_token: str) -> job_service_pb2.ListJobsResponse:
        return await self._stub.ListJobs(
            job_service_pb2.ListJobsRequest(page_size=page_size, page_token=page_token),
            metadata=self._metadata, timeout=CALL_TIMEOUT_SECONDS,
        )  # fmt: skip

    async def delete(self, name: str) -> job_pb2.Job:
        return await self._stub.DeleteJob(
            job_service_pb2.DeleteJobRequest(name=name), metadata=self._metadata, timeout=CALL_TIMEOUT_SECONDS
        )

    async def export(self, name: str, fmt: str, timestamps: bool, out: str | None) -> None:
        """Write the rendered file to `out` (replaced only once complete) or to stdout."""
        check_output(out, fmt)
        request = job_service_pb2.ExportTranscriptRequest(
            name=name, format=FORMATS[fmt], options=export_pb2.ExportOptions(timestamps=timestamps)
        )
        chunks = self._stub.ExportTranscript(request, metadata=self._metadata)
        if out is None or out == "-":
            async for chunk in chunks:
                sys.stdout.buffer.write(chunk.data)
            sys.stdout.buffer.flush()
            return
        target = Path(out)
        try:
            handle, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        except OSError as error:
            raise unwritable(out, error.strerror or str(error)) from None
        try:
            with os.fdopen(handle, "wb") as file:
                async for chunk in chunks:
                    file.write(chunk.data)
            os.replace(partial, target)
        except OSError as error:
            Path(partial).unlink(missing_ok=True)
            raise unwritable(out, error.strerror or str(error)) from None
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise


def unwritable(out: str, reason: str) -> errors.InvalidArgument:
    return errors.InvalidArgument(f"cannot write {out}: {reason}", code="OUTPUT_NOT_WRITABLE")


def check_output(out: str | None, fmt: str) -> None:
    """Refuse, before anything is uploaded or fetched, an output that cannot take the file."""
    if out is None or out == "-":
        if fmt in BINARY_FORMATS and sys.stdout.isatty():
            raise errors.InvalidArgument(
                f"{fmt} is a binary file and stdout is a terminal; write it with -o FILE.{fmt} (or redirect stdout)",
                code="BINARY_TO_TERMINAL",
            )
        return
    target = Path(out)
    if target.is_dir():
        raise unwritable(out, "it is a folder; name a file")
    folder = target.parent
    if not folder.is_dir():
        raise unwritable(out, f"the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise unwritable(out, f"the folder {folder} is not writable")


async def follow(client: Client, job: job_pb2.Job, bar: ProgressBar) -> job_pb2.Job:
    """Watch the job to its end, showing its progress; returns the last state seen.

    The job goes on without us: if the server goes away (a restart, a new gateway replica),
    the watch is picked up again for up to WATCH_RECONNECT_SECONDS."""
    last = job
    lost_since: float | None = None
    while True:
        try:
            async for update in client.watch(job.name):
                lost_since = None
                last = update
                bar.show(update.progress, State.Name(update.state).lower())
            break
        except grpc.RpcError as error:
            if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                raise
            lost_since = lost_since or time.monotonic()
            if time.monotonic() - lost_since > WATCH_RECONNECT_SECONDS:
                raise
            await asyncio.sleep(1.0)
    bar.done()
    return last


# Commands over gRPC ---------------------------------------------------------------------------


async def cmd_transcribe(client: Client, args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise errors.InvalidArgument(f"no such file: {args.file}", code="FILE_NOT_FOUND")
    check_output(args.output, args.format)  # before the upload: a job whose transcript has nowhere to go is waste
    options = job_pb2.TranscriptionOptions(languages=args.languages)
    if args.speakers:
        options.min_speakers = options.max_speakers = args.speakers
    else:
        options.min_speakers = args.min_speakers or 0
        options.max_speakers = args.max_speakers or 0
    size = path.stat().st_size
    upload_bar = ProgressBar("upload", sys.stderr, not args.quiet)
    job = await client.upload(path, options, lambda sent: upload_bar.show(100 * sent // size if size else 100))
    upload_bar.done()
    if not args.quiet:
        print(f"job {job.job_id}", file=sys.stderr)
    job = await follow(client, job, ProgressBar("transcription", sys.stderr, not args.quiet))
    if job.state != State.SUCCEEDED:
        raise JobFailed(job)
    await client.export(job.name, args.format, not args.no_timestamps, args.output)
    return EXIT_OK


async def cmd_jobs(client: Client, args: argparse.Namespace) -> int:
    token, shown = "", 0
    while True:
        page = await client.list(min(100, args.limit - shown), token)
        if not token:  # the header only once the server has answered
            print(f"{'JOB':<36}  {'STATE':<9}  {'PROGRESS':>8}  {'CREATED':<20}  FILE")
        for job in page.jobs:
            created = job.create_time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S") if job.HasField("create_time") else ""
            print(f"{job.job_id:<36}  {State.Name(job.state):<9}  {job.progress:>7}%  {created:<20}  {job.filename}")
        shown += len(page.jobs)
        token = page.next_page_token
        if not token or shown >= args.limit:
            return EXIT_OK


async def cmd_show(client: Client, args: argparse.Namespace) -> int:
    job = await client.get(job_name(args.job))
    if args.watch and job.state in (State.PENDING, State.RUNNING):
        job = await follow(client, job, ProgressBar("transcription", sys.stderr))
    print(json.dumps(job_json(job), ensure_ascii=False, indent=2))
    return EXIT_OK


async def cmd_export(client: Client, args: argparse.Namespace) -> int:
    await client.export(job_name(args.job), args.format, not args.no_timestamps, args.output)
    return EXIT_OK


async def cmd_delete(client: Client, args: argparse.Namespace) -> int:
    job = await client.delete(job_name(args.job))
    print(f"{job.job_id} {State.Name(job.state)}")
    return EXIT_OK


# Plumbing -----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kazru", description="KazRu-STT Pro from the command line (gRPC API).",
        epilog="exit codes: 0 ok, 1 other error, 2 usage, 3 not found, 4 job failed, 5 server unavailable",
    )  # fmt: skip
    parser.add_argument("--server", default=os.environ.get("KAZRU_SERVER", DEFAULT_SERVER),
                        help="gRPC address (env KAZRU_SERVER; default %(default)s)")  # fmt: skip
    parser.add_argument("--api-key", default=os.environ.get("KAZRU_API_KEY"),
                        help="API key, sent as 'authorization: Bearer' (env KAZRU_API_KEY)")  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_export_options(command: argparse.ArgumentParser, required: bool) -> None:
        command.add_argument(
            "--format",
            "-f",
            choices=FORMATS,
            default=None if required else "txt",
            required=required,
            help="export format" + ("" if required else " (default txt)"),
        )
        command.add_argument("-o", "--output", help="write here instead of stdout (replaced only when complete)")
        command.add_argument("--no-timestamps", action="store_true", help="TXT/DOCX without time stamps")

    transcribe = commands.add_parser("transcribe", help="upload a file, wait for the transcript, export it")
    transcribe.add_argument("file")
    add_export_options(transcribe, required=False)
    transcribe.add_argument(
        "--languages",
        type=_languages,
        default=[],
        help="allowed languages, comma-separated (e.g. kk,ru; default: the server's)",
    )
    # The API's min_speakers/max_speakers; the page's "Speakers, at most" is --max-speakers.
    speakers = transcribe.add_mutually_exclusive_group()
    # Checked here, so that an error names the option typed (--speakers sets both bounds).
    speakers.add_argument("--speakers", type=_speaker_count, help="exactly this many speakers (min = max)")
    transcribe.add_argument("--min-speakers", type=_speaker_count, help="at least this many speakers")
    speakers.add_argument("--max-speakers", type=_speaker_count, help="at most this many speakers")
    transcribe.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    transcribe.set_defaults(run=cmd_transcribe)

    jobs = commands.add_parser("jobs", help="your jobs, newest first")
    jobs.add_argument("--limit", type=positive, default=20, help="at most this many (default %(default)s)")
    jobs.set_defaults(run=cmd_jobs)

    show = commands.add_parser("show", help="one job as JSON, with the HTTP API's fields")
    show.add_argument("job", help="job id or jobs/{id}")
    show.add_argument("--watch", action="store_true", help="wait until the job ends first")
    show.set_defaults(run=cmd_show)

    export = commands.add_parser("export", help="download a finished job's transcript")
    export.add_argument("job", help="job id or jobs/{id}")
    add_export_options(export, required=True)
    export.set_defaults(run=cmd_export)

    delete = commands.add_parser("delete", help="cancel if running; delete the audio and transcript now")
    delete.add_argument("job", help="job id or jobs/{id}")
    delete.set_defaults(run=cmd_delete)

    # Hidden: an old habit of `kazru keys ...` gets a pointer to the command these moved to. No prefix
    # characters, so that whatever follows (`--days 7`, `-h`) is kept to be repeated in the pointer.
    for moved in MOVED_TO_ADMIN:
        commands.add_parser(moved, add_help=False, prefix_chars="\0").add_argument("rest", nargs="*")
    return parser


def _languages(value: str) -> list[str]:
    languages = [part.strip() for part in value.split(",") if part.strip()]
    if not languages:
        raise argparse.ArgumentTypeError("name at least one language, e.g. kk,ru")
    return languages


def positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _speaker_count(value: str) -> int:
    number = positive(value)
    if number > upload_protocol.MAX_SPEAKERS:
        raise argparse.ArgumentTypeError(f"at most {upload_protocol.MAX_SPEAKERS} speakers are told apart")
    return number


async def _run(args: argparse.Namespace) -> int:
    async with grpc.aio.insecure_channel(args.server) as channel:
        return await args.run(Client(channel, args.api_key), args)


def _fail(prog: str, code: int, reason: str, message: str) -> int:
    print(f"{prog}: {reason}: {message}", file=sys.stderr)
    return code


def run_command(
    prog: str, command: Coroutine[Any, Any, int], explain: Callable[[Exception], int | None] = lambda error: None
) -> int:
    """`command` run to the exit code scripts rely on (this module's docstring), an error as one line on stderr,
    `PROG: CODE: message`. `explain` reports an error particular to the tool and returns its exit code, or None."""
    try:
        code = asyncio.run(command)
        sys.stdout.flush()  # here, where a closed pipe is still ours to handle
        return code
    except BrokenPipeError:
        # The reader went away (`| head`): it has what it wanted. Nothing more may reach the closed pipe,
        # not even the interpreter's last flush.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # noqa: BLE001 - one line for scripts, not a traceback
        explained = explain(error)
        if explained is not None:
            return explained
        if isinstance(error, KazruError):
            return _fail(prog, EXIT_CODES.get(error.kind, EXIT_OTHER), error.code, error.message)
        outage = outages.from_infrastructure(error)
        if outage is not None:
            return _fail(prog, EXIT_UNAVAILABLE, outage.code, outage.message)
        return _fail(prog, EXIT_OTHER, type(error).__name__, str(error) or "unexpected error")


def _explain(error: Exception, server: str) -> int | None:
    """The API's errors: its status, or, where our server was never reached, the transport's."""
    if isinstance(error, JobFailed):
        print(f"kazru: {error}", file=sys.stderr)
        return EXIT_JOB_FAILED
    if not isinstance(error, grpc.RpcError):
        return None
    failure = from_rpc_error(error)
    if _has_error_info(error):
        return _fail("kazru", EXIT_CODES.get(failure.kind, EXIT_OTHER), failure.code, failure.message)
    # No status from our server: it was never reached (or a proxy answered).
    details = error.details() if hasattr(error, "details") else str(error)
    return _fail("kazru", EXIT_CODES.get(failure.kind, EXIT_OTHER), error.code().name, f"{server}: {details}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "speakers", None) and getattr(args, "min_speakers", None):
        build_parser().error("--speakers means exactly; it goes with neither --min-speakers nor --max-speakers")
    if args.command in MOVED_TO_ADMIN:
        admin = shlex.join(["kazru-admin", args.command, *args.rest])
        return _fail("kazru", EXIT_USAGE, "MOVED_TO_KAZRU_ADMIN", f"API keys and usage talk to PostgreSQL, not to "
                     f"the API: run `{admin}` (or python -m kazru.admin) where KAZRU_DATABASE_URL is set")  # fmt: skip
    return run_command("kazru", _run(args), lambda error: _explain(error, args.server))


def _has_error_info(error: grpc.RpcError) -> bool:
    from grpc_status import rpc_status

    status = rpc_status.from_call(error) if hasattr(error, "trailing_metadata") else None
    return status is not None and any(detail.type_url.endswith("google.rpc.ErrorInfo") for detail in status.details)


if __name__ == "__main__":
    sys.exit(main())
