"""Download clients: qBittorrent (cookie sign-in), Transmission (session-id handshake) and
SABnzbd (numbers as strings): speeds, queue and item states."""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections import Counter
from typing import Any, Literal

import msgspec

from unity.collectors import appapi
from unity.sdk import Health, Metric, Plugin, Sink

MIB = 1024 * 1024
# Transmission's torrent status numbers (libtransmission tr_torrent_activity).
TRANSMISSION = {
    0: "stopped",
    1: "check_wait",
    2: "checking",
    3: "download_wait",
    4: "downloading",
    5: "seed_wait",
    6: "seeding",
}


class Client(appapi.AppConfig, frozen=True, forbid_unknown_fields=True):
    name: str = ""
    kind: Literal["qbittorrent", "transmission", "sabnzbd"] = "qbittorrent"
    # qBittorrent and Transmission: the user (its password from token_env/_file);
    # SABnzbd: unused (token_env/_file hold the API key).
    username: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.name or not self.url:
            raise ValueError("every client needs a name and a url")


class DownloadsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    clients: list[Client] = []


class Reading(msgspec.Struct):
    down: float = 0.0
    up: float = 0.0
    left: float = 0.0
    states: dict[str, int] = {}
    paused: float | None = None
    version: str = ""


def number(value: Any) -> float:
    """SABnzbd sends most numbers as strings ("0.35", "357 "); JSON numbers pass through."""
    if isinstance(value, bool) or value is None:
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        raise appapi.AppError(f"SABnzbd: {value!r} is not a number") from None


def qbittorrent(config: Client) -> Reading:
    where = urllib.parse.urlsplit(config.url)
    origin = f"{where.scheme}://{where.netloc}"
    login = appapi.Client("qBittorrent", config, {"Referer": origin, "Origin": origin})
    form = urllib.parse.urlencode(
        {"username": config.username, "password": appapi.token(config, "qBittorrent")}
    )
    answer = login.request(
        "/api/v2/auth/login",
        method="POST",
        body=form.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    cookie = answer.headers.get("set-cookie", "")
    # A wrong password is "200 Fails." without a cookie, not a 401.
    if answer.body.strip() != b"Ok." or "SID=" not in cookie:
        raise appapi.AppError("qBittorrent: sign-in refused: wrong username or password", 401)
    sid = cookie.split("SID=", 1)[1].split(";", 1)[0]
    client = appapi.Client("qBittorrent", config, {"Cookie": f"SID={sid}", "Referer": origin})
    transfer = client.json("/api/v2/transfer/info")
    torrents = client.json("/api/v2/torrents/info")
    version = client.request("/api/v2/app/version").body.decode(errors="replace").strip()
    if not isinstance(transfer, dict) or not isinstance(torrents, list):
        raise appapi.AppError("qBittorrent: transfer/info or torrents/info has a wrong shape")
    states = Counter(str(t.get("state", "unknown")) for t in torrents)
    return Reading(
        down=number(transfer.get("dl_info_speed")),
        up=number(transfer.get("up_info_speed")),
        left=sum(number(t.get("amount_left")) for t in torrents),
        states=dict(states),
        version=version,
    )


def transmission(config: Client) -> Reading:
    headers = {"Content-Type": "application/json"}
    if config.username:
        pair = f"{config.username}:{appapi.token(config, 'Transmission')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    client = appapi.Client("Transmission", config, headers)
    session = ""

    def rpc(method: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        nonlocal session
        body = json.dumps({"method": method, "arguments": arguments or {}}).encode()
        for _ in range(2):
            answer = client.request(
                "/transmission/rpc",
                method="POST",
                body=body,
                headers={"X-Transmission-Session-Id": session} if session else {},
                ok=range(200, 410),
            )
            if answer.status == 409:  # CSRF protection: retry with the session id it gave
                session = answer.headers.get("x-transmission-session-id", "")
                continue
            if answer.status in (401, 403):
                raise appapi.AppError(
                    f"Transmission: {method} answered {answer.status}: wrong or missing token",
                    answer.status,
                )
            if answer.status >= 300:
                raise appapi.AppError(f"Transmission: {method} answered {answer.status}")
            data = json.loads(answer.body)
            if not isinstance(data, dict) or data.get("result") != "success":
                raise appapi.AppError(f"Transmission: {method}: {data.get('result')!r}")
            arguments_out: dict[str, Any] = data.get("arguments") or {}
            return arguments_out
        raise appapi.AppError("Transmission: no session id after the 409 handshake")

    stats = rpc("session-stats")
    torrents = rpc("torrent-get", {"fields": ["status", "error", "leftUntilDone"]}).get(
        "torrents", []
    )
    states: Counter[str] = Counter()
    for torrent in torrents:
        state = TRANSMISSION.get(int(torrent.get("status", -1)), "unknown")
        states["error" if torrent.get("error") else state] += 1
    version = str(rpc("session-get", {"fields": ["version"]}).get("version", ""))
    return Reading(
        down=number(stats.get("downloadSpeed")),
        up=number(stats.get("uploadSpeed")),
        left=sum(number(t.get("leftUntilDone")) for t in torrents),
        states=dict(states),
        version=version,
    )


def sabnzbd(config: Client) -> Reading:
    # The API key goes in a POST body, never the query string (URLs end up in logs).
    client = appapi.Client("SABnzbd", config)
    key = appapi.token(config, "SABnzbd")
    form = urllib.parse.urlencode({"mode": "queue", "output": "json", "apikey": key})
    answer = client.json(
        "/api",
        method="POST",
        body=form.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    if isinstance(answer, dict) and answer.get("error"):
        # SABnzbd says "API Key Incorrect" with status 200.
        raise appapi.AppError(f"SABnzbd: {answer['error']}", 401)
    queue = answer.get("queue") if isinstance(answer, dict) else None
    if not isinstance(queue, dict):
        raise appapi.AppError("SABnzbd: the queue answer has no queue")
    states = Counter(str(s.get("status", "unknown")) for s in queue.get("slots") or [])
    return Reading(
        down=number(queue.get("kbpersec")) * 1024,
        left=number(queue.get("mbleft")) * MIB,
        states=dict(states),
        paused=1.0 if queue.get("paused") else 0.0,
        version=str(queue.get("version", "")),
    )


READERS = {"qbittorrent": qbittorrent, "transmission": transmission, "sabnzbd": sabnzbd}


class DownloadsPlugin(Plugin):
    id = "downloads"
    name = "Download clients"
    description = "qBittorrent, Transmission and SABnzbd: speeds, bytes left, items by state."
    category = "apps"
    tags = ("qbittorrent", "transmission", "sabnzbd", "torrent", "usenet")
    Config = DownloadsConfig
    metrics = (
        Metric("downloads_up", "", "gauge", "1 when the client's API answered"),
        Metric("downloads_download_rate", "bytes/s", "gauge", "download speed now"),
        Metric("downloads_upload_rate", "bytes/s", "gauge", "upload speed now (torrents)"),
        Metric("downloads_left_bytes", "bytes", "gauge", "still to download in the queue"),
        Metric("downloads_items", "", "gauge", "torrents or queue slots by state"),
        Metric("downloads_paused", "", "gauge", "1 while the whole queue is paused (SABnzbd)"),
    )

    config: DownloadsConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._problems: list[str] = []
        self._versions: dict[str, str] = {}

    def unavailable(self) -> str | None:
        return None if self.config.clients else "no clients configured"

    def collect(self, sink: Sink) -> None:
        self._problems = []
        done = 0
        for client in self.config.clients:
            labels = {"client": client.name, "kind": client.kind}
            try:
                reading = READERS[client.kind](client)
            except appapi.AppError as exc:
                sink.add("downloads_up", 0.0, labels)
                self._problems.append(f"{client.name}: {exc}")
                continue
            except ValueError:
                sink.add("downloads_up", 0.0, labels)
                self._problems.append(f"{client.name}: {client.kind} did not answer JSON")
                continue
            done += 1
            sink.add("downloads_up", 1.0, labels)
            sink.add("downloads_download_rate", reading.down, labels)
            if client.kind != "sabnzbd":
                sink.add("downloads_upload_rate", reading.up, labels)
            sink.add("downloads_left_bytes", reading.left, labels)
            for state, n in sorted(reading.states.items()):
                sink.add("downloads_items", n, labels | {"state": state})
            if reading.paused is not None:
                sink.add("downloads_paused", reading.paused, labels)
            if self._versions.get(client.name) != reading.version:
                self._versions[client.name] = reading.version
                sink.event(
                    "downloads_version",
                    f"{client.name}: {client.kind} {reading.version}",
                    {"client": client.name, "kind": client.kind, "version": reading.version},
                )
        if self.config.clients and not done:
            raise appapi.AppError("; ".join(self._problems))

    def health(self) -> Health | None:
        if self._problems:
            return Health("degraded", "; ".join(self._problems)[:500])
        return None
