"""Storage that lasts: day partitions or hypertables, 1m/1h rollups, retention.

With TimescaleDB available (``CREATE EXTENSION IF NOT EXISTS timescaledb`` succeeds), ``samples``
and ``events`` become hypertables and ``samples_1m``/``samples_1h`` continuous aggregates.
Otherwise ``samples`` and ``events`` are range-partitioned by day with a DEFAULT partition that
catches rows for days without a partition, and the rollups are tables that ingest's maintenance
task fills. Existing rows are kept both ways, and both ways downgrade to the 0002 tables.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from datetime import UTC, datetime, timedelta

from alembic import op
from sqlalchemy import exc

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

DAY = timedelta(days=1)
AHEAD_DAYS = 3
ROLLUPS = {"samples_1m": "1 minute", "samples_1h": "1 hour"}
# Partition widths of the plain path; the rollup tables age slowly, so their partitions are wider.
WIDTHS = {"samples": 1, "events": 1, "samples_1m": 1, "samples_1h": 30}
ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)

SAMPLES = """
    time        timestamptz NOT NULL,
    series_id   bigint NOT NULL,
    value       double precision NOT NULL
"""
EVENTS = """
    time      timestamptz NOT NULL,
    host      text NOT NULL,
    plugin    text NOT NULL,
    instance  text NOT NULL DEFAULT '',
    kind      text NOT NULL,
    severity  text NOT NULL DEFAULT 'info',
    message   text NOT NULL DEFAULT '',
    data      jsonb NOT NULL DEFAULT '{}'
"""
# Name and definition of the unique key of each converted table; it includes the partition key.
KEYS = {
    "samples": ("samples_series_time", "UNIQUE (series_id, time)"),
    "events": ("events_identity", "UNIQUE (host, plugin, instance, kind, time)"),
}
ROLLUP = """
    bucket     timestamptz NOT NULL,
    series_id  bigint NOT NULL,
    min        double precision NOT NULL,
    max        double precision NOT NULL,
    avg        double precision NOT NULL,
    sum        double precision NOT NULL,
    count      bigint NOT NULL,
    last       double precision NOT NULL,
    PRIMARY KEY (series_id, bucket)
"""


def _timescale() -> bool:
    """Take the TimescaleDB path when the extension can be created in this database."""
    bind = op.get_bind()
    available = bind.exec_driver_sql(
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).scalar()
    if not available:
        return False
    try:
        with bind.begin_nested():
            bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except exc.DBAPIError:
        # Installed but not in shared_preload_libraries: the plain path still works.
        return False
    return True


def _installed() -> bool:
    return bool(
        op.get_bind()
        .exec_driver_sql("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")
        .scalar()
    )


def _day_starts(table: str, width_days: int) -> list[datetime]:
    """Partitions needed for the rows already in ``table`` and for the next few days."""
    width = timedelta(days=width_days)
    rows = op.get_bind().exec_driver_sql(
        f"SELECT DISTINCT date_bin(interval '{width_days} days', time, "  # noqa: S608 -- constants
        f"timestamptz '{ORIGIN.isoformat()}') FROM {table}"
    )
    starts = {r[0] for r in rows}
    today = ORIGIN + (datetime.now(UTC) - ORIGIN) // width * width
    starts.update(today + i * width for i in range(AHEAD_DAYS // width_days + 1))
    return sorted(starts)


def _partitioned(table: str, columns: str, key: str, starts: list[datetime]) -> None:
    width = timedelta(days=WIDTHS[table])
    if table in KEYS:
        name, definition = KEYS[table]
        columns = f"{columns}, CONSTRAINT {name} {definition}"
    op.execute(f"CREATE TABLE {table} ({columns}) PARTITION BY RANGE ({key})")
    op.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
    for lo in starts:
        op.execute(
            f"CREATE TABLE {table}_p{lo:%Y%m%d} PARTITION OF {table} "
            f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{(lo + width).isoformat()}')"
        )


def _convert(table: str, columns: str, column_names: str) -> None:
    op.execute(f"ALTER TABLE {table} RENAME TO {table}_0002")
    name = KEYS[table][0]
    op.execute(f"ALTER TABLE {table}_0002 RENAME CONSTRAINT {name} TO {name}_0002")
    starts = _day_starts(f"{table}_0002", WIDTHS[table])
    _partitioned(table, columns, "time", starts)
    op.execute(
        f"INSERT INTO {table} ({column_names}) SELECT {column_names} FROM {table}_0002"  # noqa: S608
    )
    op.execute(f"DROP TABLE {table}_0002")


def _upgrade_plain() -> None:
    _convert("samples", SAMPLES, "time, series_id, value")
    _convert("events", EVENTS, "time, host, plugin, instance, kind, severity, message, data")
    for table in ROLLUPS:
        _partitioned(table, ROLLUP, "bucket", [])
    # How far each rollup is complete: buckets before done_until are closed and stored.
    op.execute(
        """
        CREATE TABLE rollup_watermarks (
            resolution  text PRIMARY KEY,
            done_until  timestamptz NOT NULL
        )
        """
    )


def _upgrade_timescale() -> None:
    for table in ("samples", "events"):
        op.execute(
            f"SELECT create_hypertable('{table}', by_range('time', INTERVAL '1 day'), "
            "migrate_data => true, if_not_exists => true)"
        )
    # Newest first within a series (TimescaleDB's default): history queries scan whole ranges
    # and do not care, the PostgreSQL fallback of /latest (`ORDER BY time DESC LIMIT 1` per
    # series) reads a compressed segment from its first row.
    op.execute(
        "ALTER TABLE samples SET (timescaledb.compress, "
        "timescaledb.compress_segmentby = 'series_id', "
        "timescaledb.compress_orderby = 'time DESC')"
    )
    op.execute("SELECT add_compression_policy('samples', INTERVAL '2 days', if_not_exists => true)")
    for view, width in ROLLUPS.items():
        # WITH NO DATA: a continuous aggregate WITH DATA cannot be created inside a transaction.
        op.execute(
            f"""
            CREATE MATERIALIZED VIEW {view}
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT time_bucket(INTERVAL '{width}', time) AS bucket, series_id,
                   min(value) AS min, max(value) AS max, avg(value) AS avg,
                   sum(value) AS sum, count(*) AS count, last(value, time) AS last
            FROM samples
            GROUP BY time_bucket(INTERVAL '{width}', time), series_id
            WITH NO DATA
            """  # noqa: S608 -- constants only
        )
    # A refresh over raw rows dropped for retention deletes their buckets, so each start_offset
    # stays far inside the shortest raw window the settings allow (1 day); older late rows are
    # taken in by `unity maintain`, which refreshes back to the raw retention window.
    op.execute(
        "SELECT add_continuous_aggregate_policy('samples_1m', start_offset => INTERVAL '1 hour', "
        "end_offset => INTERVAL '1 minute', schedule_interval => INTERVAL '1 minute', "
        "if_not_exists => true)"
    )
    op.execute(
        "SELECT add_continuous_aggregate_policy('samples_1h', start_offset => INTERVAL '6 hours', "
        "end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes', "
        "if_not_exists => true)"
    )
    # Defaults; `unity maintain` re-applies them from the settings at every start.
    for relation, keep in (
        ("samples", "30 days"),
        ("events", "30 days"),
        ("samples_1m", "90 days"),
        ("samples_1h", "730 days"),
    ):
        op.execute(
            f"SELECT add_retention_policy('{relation}', drop_after => INTERVAL '{keep}', "
            "if_not_exists => true)"
        )


def upgrade() -> None:
    if _timescale():
        _upgrade_timescale()
    else:
        _upgrade_plain()


def _unconvert(table: str, columns: str, column_names: str) -> None:
    op.execute(f"CREATE TABLE {table}_0002 ({columns})")
    op.execute(
        f"INSERT INTO {table}_0002 ({column_names}) SELECT {column_names} FROM {table}"  # noqa: S608
    )
    op.execute(f"DROP TABLE {table}")
    op.execute(f"ALTER TABLE {table}_0002 RENAME TO {table}")
    name, definition = KEYS[table]
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")


def downgrade() -> None:
    timescale = _installed() and bool(
        op.get_bind()
        .exec_driver_sql(
            "SELECT count(*) FROM timescaledb_information.hypertables "
            "WHERE hypertable_name = 'samples'"
        )
        .scalar()
    )
    if timescale:
        for view in ROLLUPS:
            op.execute(f"DROP MATERIALIZED VIEW IF EXISTS {view}")
    else:
        for table in (*ROLLUPS, "rollup_watermarks"):
            op.execute(f"DROP TABLE IF EXISTS {table}")
    # Back to plain tables, rows kept (compressed chunks are read back transparently).
    _unconvert("samples", SAMPLES, "time, series_id, value")
    _unconvert("events", EVENTS, "time, host, plugin, instance, kind, severity, message, data")
