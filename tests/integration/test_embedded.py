"""The embedded PostgreSQL a laptop gets when no database URL is set."""

from __future__ import annotations

import tempfile
from pathlib import Path

import psycopg
import pytest

from payout_adapters import embedded, postgres


def test_the_default_data_directory_is_the_users_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))

    assert embedded.default_data_dir() == tmp_path / "payout-core" / "postgres"


def test_the_server_is_started_once_then_found_running_and_reused() -> None:
    directory = Path(tempfile.mkdtemp(prefix="payout-embedded-test-"))

    first = embedded.start(directory, at_exit="delete")
    postgres.migrate(first.url)
    second = embedded.start(directory, at_exit="delete")

    assert second == first
    assert first.data_dir == directory.resolve()
    assert postgres.migrate(second.url) == []  # the same database, already migrated
    with psycopg.connect(second.url) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (embedded.DATABASE,)
