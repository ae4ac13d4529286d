"""Times at the edges of what datetime can hold are a 400 ``bad_time`` on every endpoint that
takes a time, and valid ranges right at the accepted bounds are answered, not overflowed."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api

YEAR_1 = "0001-01-01T00:00:00Z"
YEAR_9999 = "9999-12-31T23:59:59Z"
# The times, and the parameter the error must name.
EDGES = [
    ({"end": YEAR_1}, "end"),
    ({"start": YEAR_1}, "start"),
    ({"end": YEAR_9999}, "end"),
    ({"start": YEAR_9999}, "start"),
    ({"start": "8999-12-31T00:00:00Z", "end": YEAR_9999}, "end"),
    ({"end": "0001-01-01T00:30:00+01:00"}, "end"),  # year 1 as written, year 0 in UTC
    ({"start": "-1000000w"}, "start"),
    ({"end": "-1"}, "end"),  # epoch seconds before 1970
    ({"end": "1e300"}, "end"),
]


@pytest.fixture
async def probe(api: Api) -> tuple[Api, str]:
    """A registered plugin (for its runs) and a series (so that query reaches the planner)."""
    reg = await api.send("POST", "/plugins", json={"host": "edge", "plugin": "clock"})
    assert reg.status_code == 201, reg.text
    await api.state.pool.execute(
        "INSERT INTO series (host, plugin, name) VALUES ('edge', 'clock', 'tick')"
    )
    return api, f"/plugins/{reg.json()['id']}/runs"


def _paths(runs: str) -> dict[str, dict[str, str]]:
    return {"/query": {"selector": "tick"}, "/events": {}, runs: {}}


@pytest.mark.parametrize(("times", "name"), EDGES, ids=[str(times) for times, _ in EDGES])
async def test_out_of_range_times_are_bad_time_everywhere(
    probe: tuple[Api, str], times: dict[str, str], name: str
) -> None:
    api, runs = probe
    for path, params in _paths(runs).items():
        resp = await api.get(path, params=params | times)
        assert resp.status_code == 400, (path, resp.text)
        error = resp.json()["error"]
        assert error["code"] == "bad_time", (path, error)
        assert error["message"].startswith(f"{name}="), (path, error)
        assert "out of range" in error["message"]


@pytest.mark.parametrize(
    "times",
    [
        {"start": "8999-12-31T00:00:00Z", "end": "9000-01-01T00:00:00Z"},
        {"start": "1970-01-01T00:00:00Z", "end": "1970-01-01T01:00:00Z"},
        {"end": "1e11"},
        {"start": "1970-01-01T00:00:00Z", "end": "9000-01-01T00:00:00Z", "step": "366d"},
    ],
    ids=["last-day", "first-hour", "epoch-1e11", "whole-range-coarse-step"],
)
async def test_ranges_at_the_bounds_are_answered(
    probe: tuple[Api, str], times: dict[str, str]
) -> None:
    api, runs = probe
    for path, params in _paths(runs).items():
        resp = await api.get(path, params=params | times)
        assert resp.status_code == 200, (path, resp.text)
        assert resp.json().get("items", resp.json().get("series")) == []


async def test_an_end_at_the_lower_bound_leaves_no_default_range(probe: tuple[Api, str]) -> None:
    api, _ = probe
    for path, params in (("/query", {"selector": "tick"}), ("/events", {})):
        resp = await api.get(path, params=params | {"end": "1970-01-01T00:00:00Z"})
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "bad_range", resp.text


@pytest.mark.parametrize("field", ["since", "until"])
async def test_replay_times_out_of_range_are_bad_time(api: Api, field: str) -> None:
    body = {"since": "2020-01-01T00:00:00Z"} | {field: YEAR_9999 if field == "until" else YEAR_1}
    resp = await api.send("POST", "/replay", "admin", json=body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "bad_time" and field in resp.json()["error"]["message"]
