"""`kazru-admin` (also `python -m kazru.admin`): the database administrator's command. It talks to PostgreSQL
straight (KAZRU_DATABASE_URL), not to the API, so it runs where the services' settings are (the server's
machine, a service's pod): API keys (create, list, revoke) and the service's usage report. There is no admin
RPC; the `kazru` client only ever speaks the public API.

Exit codes and errors as `kazru`'s (kazru.cli): 0 ok, 1 other error, 2 usage error, 3 key not found,
5 PostgreSQL unavailable; an error is one line on stderr, `kazru-admin: CODE: message`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kazru.cli import EXIT_OK, positive, run_command
from kazru.db import api_keys, usage
from kazru.db.session import create_engine, create_sessionmaker
from kazru.settings import Settings


@contextlib.asynccontextmanager
async def database() -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on KAZRU_DATABASE_URL for one command; the engine is disposed when it ends."""
    engine = create_engine(Settings())
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


async def cmd_keys(args: argparse.Namespace) -> int:
    async with database() as sessions:
        if args.keys_command == "create":
            created = await api_keys.create_key(sessions, args.name, args.owner)
            print(f"created key {created.record.id} for owner {created.record.owner_id}; "
                  "this is the only time the key is shown:", file=sys.stderr)  # fmt: skip
            print(created.key)
        elif args.keys_command == "list":
            print(f"{'ID':<36}  {'NAME':<20}  {'OWNER':<44}  {'CREATED':<19}  REVOKED")
            for key in await api_keys.list_keys(sessions):
                revoked = key.revoked_at.strftime("%Y-%m-%d %H:%M:%S") if key.revoked_at else "-"
                print(f"{key.id!s:<36}  {key.name:<20}  {key.owner_id:<44}  "
                      f"{key.created_at.strftime('%Y-%m-%d %H:%M:%S'):<19}  {revoked}")  # fmt: skip
        else:
            revoked = await api_keys.revoke_key(sessions, args.key_id)
            print(f"revoked {revoked.id} ({revoked.name})")
    return EXIT_OK


async def cmd_usage(args: argparse.Namespace) -> int:
    """The service's usage per day, newest first (the operator's report)."""
    async with database() as sessions, sessions() as session:
        report = await usage.usage_report(session, args.days)
    totals = usage.totals(report)
    if args.json:
        print(json.dumps({"days": [day.as_json() for day in report], "totals": totals}, indent=2))
        return EXIT_OK
    print(f"{'DAY':<10}  {'FILES':>6}  {'AUDIO MIN':>10}  {'DONE':>6}  {'FAILED':>6}  {'CANCELLED':>9}  "
          f"{'BILLED S':>10}  {'COST':>9}")  # fmt: skip
    rows = [(day.day.isoformat(), day.as_json()) for day in report] + [("total", totals)]
    for label, figures in rows:
        print(f"{label:<10}  {figures['files']:>6}  {figures['audio_minutes']:>10.1f}  {figures['succeeded']:>6}  "
              f"{figures['failed']:>6}  {figures['cancelled']:>9}  {figures['engine_billed_seconds']:>10.1f}  "
              f"{figures['estimated_cost']:>9.2f}")  # fmt: skip
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kazru-admin", description="KazRu-STT Pro's database administration: API keys and usage, straight "
        "in PostgreSQL (KAZRU_DATABASE_URL).",
        epilog="exit codes: 0 ok, 1 other error, 2 usage, 3 key not found, 5 database unavailable",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="KEYS_COMMAND")
    create = key_commands.add_parser("create", help="create a key and print it (once)")
    create.add_argument("name")
    create.add_argument("--owner", help="act as this existing owner (default: a new owner of its own)")
    key_commands.add_parser("list", help="every key, revoked ones too (never the keys themselves)")
    revoke = key_commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    keys.set_defaults(run=cmd_keys)

    usage_report = commands.add_parser(
        "usage", help="the service's usage per day: files, audio minutes, failures, billed seconds, cost"
    )
    usage_report.add_argument(
        "--days", type=positive, default=30, help="the last N days (default %(default)s, at most 366)"
    )
    usage_report.add_argument("--json", action="store_true", help="as JSON")
    usage_report.set_defaults(run=cmd_usage)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("kazru-admin", args.run(args))


if __name__ == "__main__":
    sys.exit(main())
