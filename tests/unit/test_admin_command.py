"""The split between the API client (`kazru`) and the database administrator's command (`kazru-admin`)."""

from __future__ import annotations

import pytest

from kazru import admin, cli


@pytest.mark.parametrize(
    ("argv", "suggested"),
    [(["keys", "create", "alice", "--owner", "local"], "kazru-admin keys create alice --owner local"),
     (["--server", "x:1", "usage", "--days", "7"], "kazru-admin usage --days 7"),
     (["keys"], "kazru-admin keys"), (["keys", "list", "-h"], "kazru-admin keys list -h")],
)  # fmt: skip
def test_the_client_points_an_old_habit_to_kazru_admin(argv, suggested, capsys):
    assert cli.main(argv) == cli.EXIT_USAGE
    error = capsys.readouterr().err.strip()
    assert error.startswith("kazru: MOVED_TO_KAZRU_ADMIN: ") and f"`{suggested}`" in error
    assert len(error.splitlines()) == 1


def listed_commands(parser) -> set[str]:
    help_text = parser.format_help()
    listing = help_text[help_text.index("  COMMAND\n") : help_text.index("options:")]
    return {line.split()[0] for line in listing.splitlines() if line.startswith("    ") and line[4] != " "}


def test_each_command_lists_only_its_own_subcommands():
    assert listed_commands(cli.build_parser()) == {"transcribe", "jobs", "show", "export", "delete"}
    assert listed_commands(admin.build_parser()) == {"keys", "usage"}


def test_an_unreachable_database_is_exit_5_in_one_line(monkeypatch, capsys):
    monkeypatch.setenv("KAZRU_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/kazru")
    assert admin.main(["usage", "--json"]) == cli.EXIT_UNAVAILABLE
    error = capsys.readouterr().err.strip()
    assert error == "kazru-admin: DATABASE_UNAVAILABLE: the database is unavailable; try again"
