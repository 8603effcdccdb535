"""Apply the Alembic migrations: `python -m kazru.db.migrate` (also the k8s migration Job)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from kazru.settings import Settings

ALEMBIC_INI = Path(__file__).with_name("alembic.ini")


def alembic_config(database_url: str) -> Config:
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str) -> None:
    command.upgrade(alembic_config(database_url), "head")


if __name__ == "__main__":
    upgrade(Settings().database_url)
