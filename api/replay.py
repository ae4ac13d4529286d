"""``POST /replay`` (admin): re-ingest a time range of the streams in the background.

The replay runs in the API process with its own temporary JetStream consumers and the API's
database pool; ``GET /replay/{id}`` shows its progress. Replaying stored data changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from unity.api.errors import ApiError
from unity.api.operation import Operation, Param, read_body
from unity.api.params import in_range
from unity.api.responses import MsgspecResponse
from unity.api.state import state_of
from unity.ingest.replay import Replay, ReplayError

log = logging.getLogger(__name__)

MAX_RUNS_KEPT = 100


# msgspec describes a datetime as a plain string; the server reads RFC 3339.
DATE_TIME = msgspec.Meta(extra_json_schema={"format": "date-time"})


class ReplayRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What to replay: ``[since, until]`` (until defaults to now), optionally one subject filter."""

    since: Annotated[datetime, DATE_TIME]
    until: Annotated[datetime, DATE_TIME] | None = None
    subject: str | None = None


class ReplayStatus(msgspec.Struct, frozen=True):
    id: str
    state: Literal["running", "done", "failed"]
    since: datetime
    until: datetime
    subject: str | None
    total: int
    done: int
    samples: int
    rejected: dict[str, int]
    elapsed_s: float
    error: str = ""


class _Run:
    def __init__(self, replay: Replay) -> None:
        self.id = uuid.uuid4().hex[:16]
        self.replay = replay
        self.error = ""
        self.task: asyncio.Task[None] | None = None

    async def main(self) -> None:
        try:
            await self.replay.run()
        except Exception as exc:  # reported through GET /replay/{id}, never lost in a task
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("replay %s failed: %s", self.id, self.error)

    def status(self) -> ReplayStatus:
        r, p = self.replay, self.replay.progress
        running = self.task is not None and not self.task.done()
        return ReplayStatus(
            id=self.id,
            state="running" if running else ("failed" if self.error else "done"),
            since=r.since,
            until=r.until,
            subject=r.subject,
            total=p.total,
            done=p.done,
            samples=r.stats.samples,
            rejected=dict(r.stats.dead),
            elapsed_s=round(p.elapsed, 3) if p.started else 0.0,
            error=self.error,
        )


def _runs(request: Request) -> dict[str, _Run]:
    runs: dict[str, _Run] | None = getattr(request.app.state, "replays", None)
    if runs is None:
        runs = {}
        request.app.state.replays = runs
    return runs


async def start_replay(request: Request) -> Response:
    st = state_of(request)
    body = await read_body(request, ReplayRequest)
    in_range("since", body.since)
    if body.until is not None:
        in_range("until", body.until)
    try:
        replay = Replay(st.settings, st.js, st.pool, body.since, body.until, body.subject)
    except ReplayError as exc:
        raise ApiError(400, "bad_replay", str(exc)) from None
    await replay.count()
    runs = _runs(request)
    for old in [k for k, v in runs.items() if v.task is not None and v.task.done()]:
        if len(runs) < MAX_RUNS_KEPT:
            break
        del runs[old]
    run = _Run(replay)
    run.task = asyncio.create_task(run.main(), name=f"replay-{run.id}")
    runs[run.id] = run
    return MsgspecResponse(run.status(), status_code=202)


async def replay_status(request: Request) -> Response:
    run = _runs(request).get(request.path_params["id"])
    if run is None:
        raise ApiError(404, "not_found", f"no replay {request.path_params['id']!r}")
    return MsgspecResponse(run.status())


OPERATIONS = [
    Operation(
        "POST",
        "/replay",
        start_replay,
        "Replay a time range of the streams into storage (idempotent backfill)",
        "operations",
        "admin",
        body=ReplayRequest,
        response=ReplayStatus,
        status=202,
    ),
    Operation(
        "GET",
        "/replay/{id}",
        replay_status,
        "Progress of a replay started by POST /replay",
        "operations",
        "admin",
        params=(Param("id", "path", {"type": "string"}, "replay id", required=True),),
        response=ReplayStatus,
    ),
]
