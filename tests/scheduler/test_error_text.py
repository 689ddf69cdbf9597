"""Failures told in words a user can act on, never as a Python exception name."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import pytest
from mailkit import free_port
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from scheduler.error_text import explain


def test_a_refused_connection_is_connection_refused() -> None:
    port = free_port()
    with pytest.raises(OSError) as refused:
        socket.create_connection(("127.0.0.1", port), timeout=2)
    with pytest.raises(OSError) as through_urllib:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
    assert explain(refused.value) == "connection refused"
    assert explain(through_urllib.value) == "connection refused"


def test_a_file_problem_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(OSError) as missing:
        (tmp_path / "usage.csv").read_text()
    assert explain(missing.value) == f"no such file or directory: {tmp_path / 'usage.csv'}"


def test_a_database_error_says_what_the_database_refused(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(DBAPIError) as refused, engine.connect() as conn:
        conn.execute(text("SELECT * FROM accounts"))
    assert explain(refused.value) == "the database refused the statement: no such table: accounts"


def test_an_unexpected_error_keeps_its_message_but_never_its_class_name() -> None:
    assert explain(RuntimeError("ledger service timed out")) == "ledger service timed out"
    assert explain(KeyError()) == "an unexpected error (details are in the worker's log)"
    assert "Error" not in explain(ValueError(""))
