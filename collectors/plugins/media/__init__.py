"""Media servers: Plex (JSON by its Accept header), Jellyfin and Emby: sessions, transcodes,
library counts."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from unity.collectors import appapi
from unity.sdk import Health, Metric, Plugin, Sink

# Jellyfin/Emby /Items/Counts keys and the label they get.
COUNTS = {
    "MovieCount": "movies",
    "SeriesCount": "series",
    "EpisodeCount": "episodes",
    "AlbumCount": "albums",
    "SongCount": "songs",
    "MusicVideoCount": "music_videos",
    "BookCount": "books",
    "BoxSetCount": "collections",
}


class Server(appapi.AppConfig, frozen=True, forbid_unknown_fields=True):
    name: str = ""
    kind: Literal["plex", "jellyfin", "emby"] = "jellyfin"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.name or not self.url:
            raise ValueError("every server needs a name and a url")


class MediaConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    servers: list[Server] = []


class Reading(msgspec.Struct):
    sessions: int = 0
    transcodes: int = 0
    libraries: dict[str, float] = {}
    version: str = ""
    playing: list[dict[str, Any]] = []


def _container(answer: Any, path: str) -> dict[str, Any]:
    container = answer.get("MediaContainer") if isinstance(answer, dict) else None
    if not isinstance(container, dict):
        raise appapi.AppError(f"Plex: {path} has no MediaContainer (is Accept JSON honoured?)")
    return container


def plex(server: Server) -> Reading:
    # The token goes in X-Plex-Token, a header (Plex also takes it in the query: never here).
    headers = {"X-Plex-Token": appapi.token(server, "Plex"), "Accept": "application/json"}
    client = appapi.Client("Plex", server, headers)
    identity = _container(client.json("/identity"), "/identity")
    sessions = _container(client.json("/status/sessions"), "/status/sessions")
    playing = []
    transcodes = 0
    for item in sessions.get("Metadata") or []:
        transcode = item.get("TranscodeSession") or {}
        video = transcode.get("videoDecision") == "transcode"
        audio = transcode.get("audioDecision") == "transcode"
        transcodes += 1 if video or audio else 0
        playing.append({
            "user": (item.get("User") or {}).get("title"),
            "title": item.get("grandparentTitle") or item.get("title"),
            "player": (item.get("Player") or {}).get("product"),
            "transcode": bool(video or audio),
        })  # fmt: skip
    libraries: dict[str, float] = {}
    for section in (
        _container(client.json("/library/sections"), "/library/sections").get("Directory") or []
    ):
        # Size 0 asks only for the total, not the items.
        page = client.json(
            f"/library/sections/{section.get('key')}/all",
            headers={"X-Plex-Container-Start": "0", "X-Plex-Container-Size": "0"},
        )
        container = _container(page, "/library/sections/<key>/all")
        total = container.get("totalSize", container.get("size", 0))
        libraries[str(section.get("title", section.get("key")))] = float(total or 0)
    return Reading(len(playing), transcodes, libraries, str(identity.get("version", "")), playing)


def jellyfin(server: Server) -> Reading:
    secret = appapi.token(server, server.kind)
    prefix = "/emby" if server.kind == "emby" else ""
    headers = {"X-Emby-Token": secret}
    if server.kind == "jellyfin":
        headers = {"Authorization": f'MediaBrowser Token="{secret}"'}
    client = appapi.Client(server.kind.capitalize(), server, headers)
    info = client.json(f"{prefix}/System/Info")
    sessions = client.json(f"{prefix}/Sessions", query={"ActiveWithinSeconds": "960"})
    counts = client.json(f"{prefix}/Items/Counts")
    if not isinstance(sessions, list) or not isinstance(counts, dict):
        raise appapi.AppError(f"{server.kind}: Sessions or Items/Counts has a wrong shape")
    playing = []
    transcodes = 0
    for session in sessions:
        item = session.get("NowPlayingItem")
        if not isinstance(item, dict):
            continue
        method = (session.get("PlayState") or {}).get("PlayMethod", "")
        transcodes += method == "Transcode"
        playing.append({
            "user": session.get("UserName"),
            "title": item.get("SeriesName") or item.get("Name"),
            "player": session.get("Client"),
            "transcode": method == "Transcode",
        })  # fmt: skip
    libraries = {label: float(counts.get(k) or 0) for k, label in COUNTS.items() if k in counts}
    version = str(info.get("Version", "")) if isinstance(info, dict) else ""
    return Reading(len(playing), transcodes, libraries, version, playing)


class MediaPlugin(Plugin):
    id = "media"
    name = "Media servers"
    description = "Plex, Jellyfin and Emby: playing sessions, transcodes, library counts."
    category = "apps"
    tags = ("plex", "jellyfin", "emby", "media")
    Config = MediaConfig
    metrics = (
        Metric("media_up", "", "gauge", "1 when the server's API answered"),
        Metric("media_sessions", "", "gauge", "sessions playing something"),
        Metric("media_transcodes", "", "gauge", "playing sessions being transcoded"),
        Metric("media_library_items", "", "gauge", "items per library (Plex) or type"),
    )

    config: MediaConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._problems: list[str] = []
        self._playing: dict[str, list[dict[str, Any]]] = {}

    def unavailable(self) -> str | None:
        return None if self.config.servers else "no servers configured"

    def collect(self, sink: Sink) -> None:
        self._problems = []
        done = 0
        for server in self.config.servers:
            labels = {"server": server.name, "kind": server.kind}
            try:
                reading = plex(server) if server.kind == "plex" else jellyfin(server)
            except appapi.AppError as exc:
                sink.add("media_up", 0.0, labels)
                self._problems.append(f"{server.name}: {exc}")
                continue
            done += 1
            sink.add("media_up", 1.0, labels)
            sink.add("media_sessions", reading.sessions, labels)
            sink.add("media_transcodes", reading.transcodes, labels)
            for library, count in sorted(reading.libraries.items()):
                sink.add("media_library_items", count, labels | {"library": library})
            if reading.playing != self._playing.get(server.name, []):
                sink.event(
                    "media_playing",
                    f"{server.name}: {reading.sessions} playing, {reading.transcodes} transcoding",
                    {"server": server.name, "version": reading.version,
                     "sessions": reading.playing[:50]},
                )  # fmt: skip
            self._playing[server.name] = reading.playing
        if self.config.servers and not done:
            raise appapi.AppError("; ".join(self._problems))

    def health(self) -> Health | None:
        if self._problems:
            return Health("degraded", "; ".join(self._problems)[:500])
        return None
