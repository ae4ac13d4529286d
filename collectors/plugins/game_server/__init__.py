"""Game servers: Minecraft (server list ping, through mcstatus) and Source-engine A2S_INFO
(Valheim, CS2, ARK, Rust..., through python-a2s): up, players, latency."""

from __future__ import annotations

import importlib.util
from typing import Any, Literal

import msgspec

from unity.sdk import Health, Metric, Plugin, Sink

DEFAULT_PORT = {"minecraft": 25565, "source": 27015}
LIBRARY = {"minecraft": "mcstatus", "source": "a2s"}
EXTRA = "pip install 'unity-telemetry[game]'"


class GameError(RuntimeError):
    """No server answered."""


class Server(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    kind: Literal["minecraft", "source"]
    host: str
    # 0: the game's default (25565 for Minecraft; 27015 for A2S, Valheim's is its game port + 1).
    port: int = 0


class GameServerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    servers: list[Server] = []
    # Seconds per query.
    query_timeout: float = 3.0


class Reading(msgspec.Struct, frozen=True):
    players: int
    players_max: int
    latency: float
    info: dict[str, Any]


def minecraft(host: str, port: int, timeout: float) -> Reading:
    from mcstatus import JavaServer

    status = JavaServer(host, port, timeout=timeout).status(tries=1)
    sample = [p.name for p in status.players.sample or []]
    return Reading(
        players=status.players.online,
        players_max=status.players.max,
        latency=status.latency / 1000.0,  # mcstatus reports milliseconds
        info={"version": status.version.name, "protocol": status.version.protocol,
              "motd": status.motd.to_plain(), "players": sample},
    )  # fmt: skip


def source(host: str, port: int, timeout: float) -> Reading:
    import a2s  # type: ignore[import-untyped]  # python-a2s ships no type hints

    info = a2s.info((host, port), timeout=timeout)
    return Reading(
        players=int(info.player_count),
        players_max=int(info.max_players),
        latency=float(info.ping),
        info={"name": str(info.server_name), "map": str(info.map_name), "game": str(info.game),
              "version": str(getattr(info, "version", "")),
              "bots": int(getattr(info, "bot_count", 0))},
    )  # fmt: skip


class GameServerPlugin(Plugin):
    id = "game_server"
    name = "Game servers"
    description = "Minecraft server list ping and Source A2S: up, players, latency."
    category = "apps"
    tags = ("minecraft", "valheim", "steam", "a2s", "games")
    Config = GameServerConfig
    metrics = (
        Metric("game_up", "", "gauge", "1 when the server answered the query"),
        Metric("game_players", "", "gauge", "players online"),
        Metric("game_players_max", "", "gauge", "player slots"),
        Metric("game_latency_seconds", "seconds", "gauge", "query round trip"),
    )

    config: GameServerConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._problems: list[str] = []
        self._info: dict[str, dict[str, Any]] = {}

    def unavailable(self) -> str | None:
        if not self.config.servers:
            return "no servers configured"
        kinds = {s.kind for s in self.config.servers}
        gone = sorted(LIBRARY[k] for k in kinds if importlib.util.find_spec(LIBRARY[k]) is None)
        if gone:
            return f"needs the 'game' extra ({', '.join(gone)} missing): {EXTRA}"
        return None

    def collect(self, sink: Sink) -> None:
        self._problems = []
        done = 0
        for server in self.config.servers:
            labels = {"server": server.name, "kind": server.kind}
            query = minecraft if server.kind == "minecraft" else source
            port = server.port or DEFAULT_PORT[server.kind]
            try:
                reading = query(server.host, port, self.config.query_timeout)
            except ImportError:
                raise GameError(f"needs the 'game' extra: {EXTRA}") from None
            except Exception as exc:  # the libraries raise OSError, ValueError and their own
                sink.add("game_up", 0.0, labels)
                why = str(exc) or type(exc).__name__
                self._problems.append(f"{server.name} ({server.host}:{port}): {why}"[:200])
                continue
            done += 1
            sink.add("game_up", 1.0, labels)
            sink.add("game_players", reading.players, labels)
            sink.add("game_players_max", reading.players_max, labels)
            sink.add("game_latency_seconds", reading.latency, labels)
            if reading.info != self._info.get(server.name):
                self._info[server.name] = reading.info
                sink.event(
                    "game_info",
                    f"{server.name}: {reading.players}/{reading.players_max}",
                    {"server": server.name, "kind": server.kind, **reading.info},
                )
        if self.config.servers and not done:
            raise GameError("; ".join(self._problems))

    def health(self) -> Health | None:
        if self._problems:
            return Health("degraded", "; ".join(self._problems)[:500])
        return None
