"""``POST /api/v1/replay`` for admins: a background backfill whose progress can be polled."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx

from tests.helpers import running_ingest, wait_for
from tests.integration.ingest_support import (
    assert_exactly,
    fetchval,
    publish_batches,
    stored,
    streams_ready,
)
from tests.servers import Env
from unity.api.app import create_app
from unity.api.tokens import create_token


async def test_admin_replay_restores_lost_rows_and_reports_progress(env: Env) -> None:
    nc, js = await streams_ready(env)
    published = await publish_batches(js, env, 50)
    async with running_ingest(env):

        async def all_stored() -> bool:
            return await stored(env) >= published.samples

        await wait_for(all_stored)
    await fetchval(env, "DELETE FROM samples WHERE series_id % 2 = 0")
    lost = published.samples - await stored(env)
    assert lost > 0

    app = create_app(env.settings, env.ep)  # the real app: this fails if it loses the route
    async with app.router.lifespan_context(app):
        pool = app.state.unity.pool
        _, admin = await create_token(pool, "replay-admin", ["admin"])
        _, reader = await create_token(pool, "replay-reader", ["read"])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://unity") as client:
            since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
            denied = await client.post(
                "/api/v1/replay",
                json={"since": since},
                headers={"Authorization": f"Bearer {reader}"},
            )
            assert denied.status_code == 403
            auth = {"Authorization": f"Bearer {admin}"}
            bad = await client.post(
                "/api/v1/replay", json={"since": since, "until": since}, headers=auth
            )
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_replay"
            unknown = await client.post(
                "/api/v1/replay", json={"since": since, "speed": 2}, headers=auth
            )
            assert unknown.status_code == 422

            started = await client.post("/api/v1/replay", json={"since": since}, headers=auth)
            assert started.status_code == 202, started.text
            body = started.json()
            assert body["total"] == published.messages + published.health
            for _ in range(600):
                status = (await client.get(f"/api/v1/replay/{body['id']}", headers=auth)).json()
                if status["state"] != "running":
                    break
                await asyncio.sleep(0.1)
            assert status["state"] == "done", status
            assert status["done"] == status["total"]
            assert status["samples"] == published.samples
            missing = await client.get("/api/v1/replay/nope", headers=auth)
            assert missing.status_code == 404
    await assert_exactly(env, published)
    await nc.close()
