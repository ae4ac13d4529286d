"""SQLite files, opened read-only: size, page stats, rows per table, optional quick_check."""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from pathlib import Path

import msgspec

from unity.sdk import Health, Metric, Plugin, Sink


class Database(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: str
    name: str = ""
    # Tables whose rows are counted; empty means every table (a full scan of each).
    tables: list[str] = []
    count_rows: bool = True
    # PRAGMA quick_check: reads every page, so it is off by default for large files.
    quick_check: bool = False

    @property
    def label(self) -> str:
        return self.name or self.path


class SqliteConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    databases: list[Database] = []
    # Seconds to wait for a writer's lock before the file counts as locked.
    busy_timeout: float = 2.0


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SqlitePlugin(Plugin):
    id = "sqlite"
    name = "SQLite files"
    description = "Per SQLite file: size, pages, free pages, rows per table, quick_check."
    category = "database"
    Config = SqliteConfig
    metrics = (
        Metric("sqlite_file_size_bytes", "bytes", "gauge", "the database file"),
        Metric("sqlite_wal_size_bytes", "bytes", "gauge", "its -wal file, when there is one"),
        Metric("sqlite_page_size_bytes", "bytes", "gauge", "PRAGMA page_size"),
        Metric("sqlite_pages", "", "gauge", "PRAGMA page_count"),
        Metric("sqlite_freelist_pages", "", "gauge", "PRAGMA freelist_count (reusable pages)"),
        Metric("sqlite_table_rows", "", "gauge", "rows per table"),
        Metric("sqlite_quick_check_ok", "", "gauge", "1 when PRAGMA quick_check says ok"),
    )

    config: SqliteConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._errors: list[str] = []

    def unavailable(self) -> str | None:
        if not self.config.databases:
            return "no databases configured"
        if not any(Path(d.path).is_file() for d in self.config.databases):
            return "none of the configured database files exists"
        return None

    def collect(self, sink: Sink) -> None:
        self._errors = []
        for db in self.config.databases:
            try:
                self.read(db, sink)
            except (OSError, sqlite3.Error) as exc:
                self._errors.append(f"{db.label}: {type(exc).__name__}: {exc}")
        if len(self._errors) == len(self.config.databases):
            raise RuntimeError("; ".join(self._errors))

    def health(self) -> Health | None:
        return Health("degraded", "; ".join(self._errors)) if self._errors else None

    def read(self, db: Database, sink: Sink) -> None:
        path = Path(db.path)
        labels = {"database": db.label}
        # mode=ro never creates a missing file (a plain connect would, silently, empty).
        uri = f"file:{urllib.parse.quote(str(path.absolute()))}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=self.config.busy_timeout)
        try:
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            tables = db.tables or [
                row[0]
                for row in conn.execute(
                    "SELECT name FROM sqlite_schema WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%' ORDER BY name"
                )
            ]
            rows = {}
            if db.count_rows:
                for table in tables:
                    sql = f"SELECT count(*) FROM {quote(table)}"  # noqa: S608 (a quoted identifier)
                    rows[table] = conn.execute(sql).fetchone()[0]
            check = None
            if db.quick_check:
                check = [r[0] for r in conn.execute("PRAGMA quick_check")]
        finally:
            conn.close()
        sink.add("sqlite_file_size_bytes", path.stat().st_size, labels)
        wal = Path(f"{path}-wal")
        if wal.exists():
            sink.add("sqlite_wal_size_bytes", os.stat(wal).st_size, labels)
        sink.add("sqlite_page_size_bytes", page_size, labels)
        sink.add("sqlite_pages", pages, labels)
        sink.add("sqlite_freelist_pages", free, labels)
        for table, count in rows.items():
            sink.add("sqlite_table_rows", count, {**labels, "table": table})
        if check is not None:
            ok = check == ["ok"]
            sink.add("sqlite_quick_check_ok", 1.0 if ok else 0.0, labels)
            if not ok:
                sink.event(
                    "quick_check_failed",
                    f"{db.label}: quick_check found {len(check)} problem(s)",
                    {"database": db.label, "problems": check[:100]},
                    "error",
                )
