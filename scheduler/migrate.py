"""Apply the core's Alembic migrations (and any extra migration trees handed in) to a database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

CORE_MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine, script_location: Path, version_table: str = "alembic_version") -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("version_table", version_table)
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, script_location: Path = CORE_MIGRATIONS, version_table: str = "alembic_version") -> None:
    """Bring the database to the newest revision of every branch of the given migration tree."""
    config = alembic_config(engine, script_location, version_table)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "heads")


def revision(engine: Engine, message: str, script_location: Path = CORE_MIGRATIONS) -> None:
    """Autogenerate a revision (a developer tool: ``python -m scheduler.migrate "message"``)."""
    config = alembic_config(engine, script_location)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True)


if __name__ == "__main__":
    import sys
    import tempfile

    from scheduler.db import make_engine

    with tempfile.TemporaryDirectory() as tmp:
        eng = make_engine(f"sqlite:///{tmp}/gen.db")
        upgrade(eng)
        revision(eng, sys.argv[1] if len(sys.argv) > 1 else "change")
