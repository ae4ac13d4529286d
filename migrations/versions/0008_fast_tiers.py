"""Storage tiers for wide ranges (issue 18): a 5-minute rollup between 1m and 1h.

A week at a 5-minute step read from ``samples_1m`` aggregates a million rows per 100 series at
query time; ``samples_5m`` holds those points as rows. On the plain path it is a table
partitioned by week that `unity maintain` fills from ``samples_1m``; on TimescaleDB a
continuous aggregate on ``samples_1m`` (hierarchical, TimescaleDB 2.9 or later), real-time like
the others, with a refresh policy inside the raw window and a retention policy.

The plain table's key carries every column a query reads (``INCLUDE``): a week of 100 series is
then an index-only scan in (series_id, bucket) order, with no heap visits and no sort (measured
in `tests/bench/bench_query.py`, docs/benchmarks.md).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ROLLUP = """
    bucket     timestamptz NOT NULL,
    series_id  bigint NOT NULL,
    min        double precision NOT NULL,
    max        double precision NOT NULL,
    avg        double precision NOT NULL,
    sum        double precision NOT NULL,
    count      bigint NOT NULL,
    last       double precision NOT NULL,
    PRIMARY KEY (series_id, bucket) INCLUDE (min, max, sum, count, last)
"""


def _timescale() -> bool:
    """Whether 0003 took the TimescaleDB path (``samples`` is a hypertable)."""
    bind = op.get_bind()
    if not bind.exec_driver_sql(
        "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"
    ).scalar():
        return False
    return bool(
        bind.exec_driver_sql(
            "SELECT count(*) FROM timescaledb_information.hypertables "
            "WHERE hypertable_name = 'samples' AND hypertable_schema = current_schema()"
        ).scalar()
    )


def upgrade() -> None:
    if not _timescale():
        # Partitions (a week each) are made by `unity maintain` as the rollup advances.
        op.execute(f"CREATE TABLE samples_5m ({ROLLUP}) PARTITION BY RANGE (bucket)")
        op.execute("CREATE TABLE samples_5m_default PARTITION OF samples_5m DEFAULT")
        return
    # The columns compose as 0003's do; avg from sum and count so that it stays exact.
    op.execute(
        """
        CREATE MATERIALIZED VIEW samples_5m
        WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
        SELECT time_bucket(INTERVAL '5 minutes', bucket) AS bucket, series_id,
               min(min) AS min, max(max) AS max, sum(sum) / sum(count)::float8 AS avg,
               sum(sum) AS sum, sum(count)::bigint AS count, last(last, bucket) AS last
        FROM samples_1m
        GROUP BY time_bucket(INTERVAL '5 minutes', bucket), series_id
        WITH NO DATA
        """
    )
    # As 0003's policies: the window stays far inside the shortest raw retention (1 day).
    op.execute(
        "SELECT add_continuous_aggregate_policy('samples_5m', start_offset => INTERVAL '6 hours', "
        "end_offset => INTERVAL '5 minutes', schedule_interval => INTERVAL '5 minutes', "
        "if_not_exists => true)"
    )
    op.execute(
        "SELECT add_retention_policy('samples_5m', drop_after => INTERVAL '365 days', "
        "if_not_exists => true)"
    )


def downgrade() -> None:
    if _timescale():
        op.execute("DROP MATERIALIZED VIEW IF EXISTS samples_5m")
        return
    op.execute("DROP TABLE IF EXISTS samples_5m")
    op.execute("DELETE FROM rollup_watermarks WHERE resolution = 'samples_5m'")
