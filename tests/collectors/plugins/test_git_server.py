"""git_server: local fake Gitea and GitLab APIs paging recorded repositories."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tests.collectors.helpers import by_key, collect, key
from tests.collectors.plugins.appserver import Reply, Request, load, serve
from unity.collectors.appapi import AppError
from unity.collectors.plugins.git_server import GitServerConfig, GitServerPlugin
from unity.sdk import ConfigError

DATA = Path(__file__).parent / "testdata" / "git_server"
TOKEN = "8f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6"


def gitea_routes() -> dict[str, Any]:
    repos = load(DATA / "gitea-1.22.3-repos.json")

    def search(request: Request) -> Reply:
        if request.headers.get("Authorization") != f"token {TOKEN}":
            return (
                401,
                {"message": "token is required", "url": "https://git.home.example/api/swagger"},
            )
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.path).query))
        page, limit = int(query["page"]), int(query["limit"])
        chunk = repos[(page - 1) * limit : page * limit]
        return (200, {"ok": True, "data": chunk}, {"X-Total-Count": str(len(repos))})

    return {
        "/api/v1/version": load(DATA / "gitea-1.22.3-version.json"),
        "/api/v1/repos/search": search,
    }


def gitlab_routes() -> dict[str, Any]:
    projects = load(DATA / "gitlab-17.6.1-projects.json")

    def listing(request: Request) -> Reply:
        if request.headers.get("PRIVATE-TOKEN") != TOKEN:
            return (401, {"message": "401 Unauthorized"})
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.path).query))
        page, size = int(query["page"]), int(query["per_page"])
        chunk = projects[(page - 1) * size : page * size]
        more = page * size < len(projects)
        return (200, chunk, {"X-Next-Page": str(page + 1) if more else "", "X-Page": str(page),
                             "X-Per-Page": str(size), "X-Total": str(len(projects))})  # fmt: skip

    return {
        "/api/v4/version": load(DATA / "gitlab-17.6.1-version.json"),
        "/api/v4/projects": listing,
    }


def plugin(url: str, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> GitServerPlugin:
    monkeypatch.setenv("GIT_TOKEN", TOKEN)
    return GitServerPlugin(GitServerConfig(url=url, token_env="GIT_TOKEN", **kw))


def test_gitea_every_page(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(gitea_routes()) as app:
        sink = collect(plugin(app.url, monkeypatch, page_size=3))
    values = by_key(sink)
    assert values[key("git_repositories", visibility="private")] == 2
    assert values[key("git_repositories", visibility="public")] == 5
    assert values[key("git_repositories_archived")] == 1
    assert values[key("git_repositories_forks")] == 1
    assert values[key("git_repositories_mirrors")] == 1
    assert (
        values[key("git_repositories_size_bytes")]
        == (412 + 20480 + 88211 + 1024 + 512000 + 3300 + 64) * 1024
    )
    assert values[key("git_open_issues")] == 5
    searches = [p for p in app.paths() if p.startswith("/api/v1/repos/search")]
    assert searches == [f"/api/v1/repos/search?page={n}&limit=3" for n in (1, 2, 3)]
    events = {e.kind: e for e in sink.events}
    assert events["git_version"].data == {"version": "1.22.3"}
    assert (
        events["git_largest_repositories"].data["repositories"][0]["name"]
        == "alice/upstream-mirror"
    )


def test_gitea_exact_multiple_of_the_page_size_stops_on_the_total(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with serve(gitea_routes()) as app:
        values = by_key(collect(plugin(app.url, monkeypatch, page_size=7)))
    assert values[key("git_repositories", visibility="public")] == 5
    assert len([p for p in app.paths() if "search" in p]) == 1


def test_gitlab_every_page(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(gitlab_routes()) as app:
        sink = collect(plugin(app.url, monkeypatch, kind="gitlab", page_size=2))
    values = by_key(sink)
    assert values[key("git_repositories", visibility="private")] == 3
    assert values[key("git_repositories", visibility="internal")] == 1
    assert values[key("git_repositories", visibility="public")] == 1
    assert values[key("git_repositories_forks")] == 1
    assert values[key("git_repositories_archived")] == 1
    assert (
        values[key("git_repositories_size_bytes")]
        == 5242880 + 1048576 + 20971520 + 104857600 + 2097152 + 1024
    )
    pages = [p for p in app.paths() if p.startswith("/api/v4/projects")]
    assert len(pages) == 3 and pages[-1].endswith("page=3&per_page=2")
    assert all(TOKEN not in p for p in app.paths())


def test_wrong_token(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(gitlab_routes()) as app:
        monkeypatch.setenv("GIT_TOKEN", "glpat-wrong")
        p = GitServerPlugin(GitServerConfig(url=app.url, kind="gitlab", token_env="GIT_TOKEN"))
        with pytest.raises(AppError, match="GitLab: /api/v4/projects answered 401"):
            collect(p)


def test_config() -> None:
    with pytest.raises(ConfigError, match="page_size"):
        GitServerPlugin.parse_config({"page_size": 500})
