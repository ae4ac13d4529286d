"""Git servers: Gitea/Forgejo (and Gitea-compatible APIs) and GitLab: repositories and sizes,
read over every page of the listing."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Literal

import msgspec

from unity.collectors import appapi
from unity.sdk import Metric, Plugin, Sink

KIB = 1024


class GitServerConfig(appapi.AppConfig, frozen=True, forbid_unknown_fields=True):
    url: str = "http://127.0.0.1:3000"
    kind: Literal["gitea", "gitlab"] = "gitea"
    page_size: int = 50
    # Largest repositories named in the `git_largest_repositories` event.
    top: int = 10
    # Safety stop for a listing that never ends (a proxy looping on page 1).
    max_pages: int = 1000

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.page_size <= 100:
            raise ValueError("page_size must be 1..100 (GitLab's maximum)")


class Repo(msgspec.Struct, frozen=True):
    name: str
    size: float
    visibility: str
    archived: bool
    fork: bool
    mirror: bool
    open_issues: float


def gitea_repo(item: dict[str, Any]) -> Repo:
    return Repo(
        name=str(item.get("full_name", "")),
        size=float(item.get("size") or 0) * KIB,  # Gitea reports KiB
        visibility="private" if item.get("private") else "public",
        archived=bool(item.get("archived")),
        fork=bool(item.get("fork")),
        mirror=bool(item.get("mirror")),
        open_issues=float(item.get("open_issues_count") or 0),
    )


def gitlab_repo(item: dict[str, Any]) -> Repo:
    stats = item.get("statistics") or {}
    return Repo(
        name=str(item.get("path_with_namespace", "")),
        size=float(stats.get("repository_size") or 0) + float(stats.get("lfs_objects_size") or 0),
        visibility=str(item.get("visibility", "")),
        archived=bool(item.get("archived")),
        fork="forked_from_project" in item,
        mirror=bool(item.get("mirror")),
        open_issues=float(item.get("open_issues_count") or 0),
    )


class GitServerPlugin(Plugin):
    id = "git_server"
    name = "Git server"
    description = "Gitea/Forgejo and GitLab: repositories by visibility, archived, forks, sizes."
    category = "apps"
    tags = ("gitea", "forgejo", "gitlab", "git")
    Config = GitServerConfig
    metrics = (
        Metric("git_repositories", "", "gauge", "repositories by visibility"),
        Metric("git_repositories_archived", "", "gauge", "archived repositories"),
        Metric("git_repositories_forks", "", "gauge", "forks"),
        Metric("git_repositories_mirrors", "", "gauge", "pull mirrors"),
        Metric("git_repositories_size_bytes", "bytes", "gauge", "repositories' size, summed"),
        Metric("git_open_issues", "", "gauge", "open issues over all repositories"),
    )

    config: GitServerConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._version = ""
        self._largest: list[str] | None = None

    def unavailable(self) -> str | None:
        return appapi.not_configured(self.config)

    def _pages(self, client: appapi.Client, path: str, query: dict[str, str]) -> list[Any]:
        """Every item of a paginated listing: page after page until one comes back short."""
        items: list[Any] = []
        size = self.config.page_size
        for page in range(1, self.config.max_pages + 1):
            per = "per_page" if self.config.kind == "gitlab" else "limit"
            answer = client.request(path, query=query | {"page": str(page), per: str(size)})
            try:
                chunk = json.loads(answer.body)
            except ValueError:
                raise appapi.AppError(f"{client.app}: {path} did not answer JSON") from None
            if isinstance(chunk, dict):  # Gitea's /repos/search wraps the list
                if chunk.get("ok") is False:
                    raise appapi.AppError(f"{client.app}: {path}: {chunk.get('message')}")
                chunk = chunk.get("data")
            if not isinstance(chunk, list):
                raise appapi.AppError(f"{client.app}: {path} answered no list")
            items.extend(chunk)
            following = answer.headers.get("x-next-page")
            total = answer.headers.get("x-total-count") or answer.headers.get("x-total")
            if following == "" or len(chunk) < size or (total and len(items) >= int(total)):
                return items
        raise appapi.AppError(f"{client.app}: {path} still had pages after {self.config.max_pages}")

    def repositories(self) -> tuple[list[Repo], str]:
        secret = appapi.token(self.config, "GitLab" if self.config.kind == "gitlab" else "Gitea")
        if self.config.kind == "gitlab":
            client = appapi.Client("GitLab", self.config, {"PRIVATE-TOKEN": secret})
            version = client.json("/api/v4/version")
            items = self._pages(
                client, "/api/v4/projects", {"statistics": "true", "simple": "false"}
            )
            repos = [gitlab_repo(i) for i in items if isinstance(i, dict)]
        else:
            client = appapi.Client("Gitea", self.config, {"Authorization": f"token {secret}"})
            version = client.json("/api/v1/version")
            items = self._pages(client, "/api/v1/repos/search", {})
            repos = [gitea_repo(i) for i in items if isinstance(i, dict)]
        return repos, str((version or {}).get("version", "")) if isinstance(version, dict) else ""

    def collect(self, sink: Sink) -> None:
        repos, version = self.repositories()
        for visibility, n in sorted(Counter(r.visibility for r in repos).items()):
            sink.add("git_repositories", n, {"visibility": visibility})
        sink.add("git_repositories_archived", sum(r.archived for r in repos))
        sink.add("git_repositories_forks", sum(r.fork for r in repos))
        sink.add("git_repositories_mirrors", sum(r.mirror for r in repos))
        sink.add("git_repositories_size_bytes", sum(r.size for r in repos))
        sink.add("git_open_issues", sum(r.open_issues for r in repos))
        largest = sorted(repos, key=lambda r: -r.size)[: self.config.top]
        names = [r.name for r in largest]
        if names != self._largest:
            self._largest = names
            sink.event(
                "git_largest_repositories",
                f"{len(repos)} repositories, largest {largest[0].name}"
                if largest
                else "no repositories",
                {
                    "version": version,
                    "repositories": [{"name": r.name, "size_bytes": r.size} for r in largest],
                },
                "debug",
            )
        if version != self._version:
            self._version = version
            sink.event("git_version", f"{self.config.kind} {version}", {"version": version})
