"""Sends queued deliveries: grouped, off the event loop, retried with backoff, outcome recorded.

Rows are claimed with ``FOR UPDATE SKIP LOCKED``, so two evaluators never send the same row.
Deliveries that share a channel and a group (one rule, one host, one state) go out as one
message: twenty disks filling on one host is one notification. A failed send is retried after
``retry_s``, doubling, up to ``attempts``; then the row is ``failed`` with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass

import asyncpg

from unity.ingest.alerts.sender import send
from unity.schemas.alerts import SEVERITY_RANK, AlertState, RuleSeverity

log = logging.getLogger(__name__)
CLAIM = 500
CONCURRENCY = 8
SEND_TIMEOUT_S = 30.0


@dataclass(slots=True)
class Counts:
    sent: int = 0
    failed: int = 0
    retried: int = 0


@dataclass(frozen=True, slots=True)
class Item:
    id: int
    channel: str
    url: str
    attempts: int
    rule: str
    state: AlertState
    severity: RuleSeverity
    message: str
    host: str


def compose(items: list[Item]) -> tuple[str, str]:
    """Title and body of one message for a group of changes."""
    first = items[0]
    severity = max((i.severity for i in items), key=SEVERITY_RANK.__getitem__)
    where = f" on {first.host}" if first.host else ""
    if first.rule == "test":
        return "[Unity] test message", first.message
    if len(items) == 1:
        title = f"[{severity.upper()}] {first.rule} {first.state}{where}"
    else:
        title = f"[{severity.upper()}] {first.rule}: {len(items)} alerts {first.state}{where}"
    return title, "\n".join(i.message for i in items)


class Outbox:
    def __init__(self, pool: asyncpg.Pool, attempts: int = 5, retry_s: float = 2.0) -> None:
        self.pool = pool
        self.attempts = attempts
        self.retry_s = retry_s
        self.counts = Counts()
        self._limit = asyncio.Semaphore(CONCURRENCY)

    async def send_due(self) -> int:
        """Send what is due now; the number of deliveries handled."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT d.id, d.channel_id, d.group_key, d.attempts, c.name, c.url, h.rule,"
                " h.state, h.severity, h.message, coalesce(h.labels ->> 'host', '') AS host"
                " FROM alert_deliveries d JOIN alert_channels c ON c.id = d.channel_id"
                " JOIN alert_history h ON h.change_id = d.change_id"
                " WHERE d.status = 'pending' AND d.next_attempt_at <= now()"
                " ORDER BY d.id LIMIT $1 FOR UPDATE OF d SKIP LOCKED",
                CLAIM,
            )
            groups: dict[tuple[int, str], list[Item]] = defaultdict(list)
            for r in rows:
                groups[(r["channel_id"], r["group_key"])].append(
                    Item(
                        r["id"],
                        r["name"],
                        r["url"],
                        r["attempts"],
                        r["rule"],
                        r["state"],
                        r["severity"],
                        r["message"],
                        r["host"],
                    )
                )
            # Sends run at once (each in a thread); the outcomes are written one by one, on the
            # one connection that holds the claim.
            outcomes = await asyncio.gather(*(self._send(items) for items in groups.values()))
            for items, error in outcomes:
                await self._record(conn, items, error)
        return len(rows)

    async def _send(self, items: list[Item]) -> tuple[list[Item], str | None]:
        title, body = compose(items)
        first = items[0]
        severity = max((i.severity for i in items), key=SEVERITY_RANK.__getitem__)
        async with self._limit:
            try:
                error = await asyncio.wait_for(
                    asyncio.to_thread(send, first.url, title, body, severity, first.state),
                    SEND_TIMEOUT_S,
                )
            except TimeoutError:
                error = f"no answer within {SEND_TIMEOUT_S:.0f}s"
        return items, error

    async def _record(self, conn: asyncpg.Connection, items: list[Item], error: str | None) -> None:
        first = items[0]
        ids = [i.id for i in items]
        attempts = first.attempts + 1
        if error is None:
            self.counts.sent += len(items)
            await conn.execute(
                "UPDATE alert_deliveries SET status = 'sent', attempts = attempts + 1,"
                " error = '', sent_at = now() WHERE id = ANY($1::bigint[])",
                ids,
            )
            return
        if attempts >= self.attempts:
            self.counts.failed += len(items)
            log.warning(
                "channel %s: delivery failed after %d attempts: %s", first.channel, attempts, error
            )
            status, delay = "failed", 0.0
        else:
            self.counts.retried += len(items)
            status, delay = "pending", self.retry_s * 2 ** (attempts - 1)
        await conn.execute(
            "UPDATE alert_deliveries SET status = $2, attempts = attempts + 1, error = $3,"
            " next_attempt_at = now() + make_interval(secs => $4) WHERE id = ANY($1::bigint[])",
            ids,
            status,
            error,
            delay,
        )
