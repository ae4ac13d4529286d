"""sqlite against real temporary database files."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.collectors.helpers import by_key, collect, key
from unity.collectors.plugins.sqlite import SqlitePlugin
from unity.sdk.testing import run


def make(path: Path, rows: int = 25, *, wal: bool = False) -> Path:
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=wal")
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute('CREATE TABLE "odd ""name""" (x)')
    conn.executemany("INSERT INTO items (body) VALUES (?)", [("x" * 200,)] * rows)
    conn.execute('INSERT INTO "odd ""name""" VALUES (1)')
    conn.execute("DELETE FROM items WHERE id <= 5")
    conn.commit()
    conn.close()
    return path


def plugin(*databases: dict[str, Any]) -> SqlitePlugin:
    return SqlitePlugin(SqlitePlugin.parse_config({"databases": list(databases)}))


def test_sizes_pages_and_rows_without_writing(tmp_path: Path) -> None:
    db = make(tmp_path / "app.db", rows=400)
    before = db.read_bytes()
    p = plugin({"path": str(db), "name": "app", "quick_check": True})
    found = by_key(collect(p))
    labels = {"database": "app"}
    assert found[key("sqlite_file_size_bytes", **labels)] == len(before)
    page = found[key("sqlite_page_size_bytes", **labels)]
    assert found[key("sqlite_pages", **labels)] * page == len(before)
    assert found[key("sqlite_table_rows", database="app", table="items")] == 395
    assert found[key("sqlite_table_rows", database="app", table='odd "name"')] == 1
    assert found[key("sqlite_quick_check_ok", **labels)] == 1.0
    assert db.read_bytes() == before
    assert not (tmp_path / "app.db-journal").exists()


def test_wal_file_and_chosen_tables(tmp_path: Path) -> None:
    db = make(tmp_path / "wal.db", wal=True)
    writer = sqlite3.connect(db)  # keeps the -wal file in place
    writer.execute("INSERT INTO items (body) VALUES ('y')")
    writer.commit()
    try:
        found = by_key(collect(plugin({"path": str(db), "tables": ["items"]})))
    finally:
        writer.close()
    labels = {"database": str(db)}
    assert found[key("sqlite_wal_size_bytes", **labels)] > 0
    assert found[key("sqlite_table_rows", database=str(db), table="items")] == 21
    assert not any(k[0] == "sqlite_table_rows" and ("table", 'odd "name"') in k[1] for k in found)


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[Path]:
    db = make(tmp_path / "locked.db")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    yield db
    holder.execute("ROLLBACK")
    holder.close()


async def test_missing_and_locked_files_are_health_errors(tmp_path: Path, locked: Path) -> None:
    missing = tmp_path / "missing.db"
    result = await run(plugin({"path": str(missing)}))
    assert result.report.status == "error"
    assert "unable to open database file" in result.report.message
    assert not missing.exists()  # read-only open never creates it

    p = SqlitePlugin(
        SqlitePlugin.parse_config({"databases": [{"path": str(locked)}], "busy_timeout": 0.1})
    )
    result = await run(p)
    assert result.report.status == "error"
    assert "database is locked" in result.report.message


async def test_one_bad_file_among_good_ones_is_degraded(tmp_path: Path) -> None:
    good = make(tmp_path / "good.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all, just text" * 200)
    result = await run(plugin({"path": str(good)}, {"path": str(junk), "name": "junk"}))
    assert result.report.status == "degraded"
    assert result.report.message == "junk: DatabaseError: file is not a database"
    assert result.batch is not None


def test_quick_check_reports_corruption_as_data_and_an_event(tmp_path: Path) -> None:
    db = make(tmp_path / "bad.db", rows=2000)
    conn = sqlite3.connect(db)
    conn.execute("CREATE INDEX items_body ON items (body, id)")
    conn.commit()
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray(db.read_bytes())
    # Scribble over the middle of the index's last pages: the table still reads.
    for start in range(len(data) - 6 * page, len(data) - page, page):
        data[start + 100 : start + 300] = b"\xff" * 200
    db.write_bytes(bytes(data))
    p = plugin({"path": str(db), "name": "bad", "quick_check": True, "count_rows": False})
    sink = collect(p)
    assert by_key(sink)[key("sqlite_quick_check_ok", database="bad")] == 0.0
    [event] = sink.events
    assert event.kind == "quick_check_failed" and event.severity == "error"
    assert event.data["problems"] and event.data["problems"] != ["ok"]


def test_unavailable(tmp_path: Path) -> None:
    assert SqlitePlugin().unavailable() == "no databases configured"
    assert plugin({"path": str(tmp_path / "x.db")}).unavailable() == (
        "none of the configured database files exists"
    )
    assert plugin({"path": str(make(tmp_path / "y.db"))}).unavailable() is None
