"""kubernetes: a local HTTPS API server (test CA, bearer token, paging) and kubectl's JSON."""

from __future__ import annotations

import datetime as dt
import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.collectors.helpers import by_key, collect, key
from tests.collectors.plugins.argv_tool import calls, install
from tests.collectors.plugins.testca import TestCA
from unity.collectors.plugins.kubernetes import (
    KubernetesConfig,
    KubernetesError,
    KubernetesPlugin,
)
from unity.sdk import ConfigError

DATA = Path(__file__).parent / "testdata" / "kubernetes"
TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.service-account.token"


def listing(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text())
    for item in data["items"]:
        if item["metadata"]["name"].startswith("jellyfin-"):
            # Created just now: pending, but within the grace period.
            now = dt.datetime.now(dt.UTC).replace(microsecond=0)
            item["metadata"]["creationTimestamp"] = now.isoformat().replace("+00:00", "Z")
    return data


class Api:
    def __init__(self) -> None:
        self.nodes = listing("nodes.json")["items"]
        self.pods = listing("pods.json")["items"]
        self.asked: list[str] = []
        self.auth: list[str] = []


class Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def do_GET(self) -> None:
        api: Api = self.server.api  # type: ignore[attr-defined]
        self.auth_header = self.headers.get("Authorization", "")
        api.asked.append(self.path)
        api.auth.append(self.auth_header)
        if self.auth_header != f"Bearer {TOKEN}":
            return self.reply(
                401, {"kind": "Status", "status": "Failure", "reason": "Unauthorized", "code": 401}
            )
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        items = {"/api/v1/nodes": api.nodes, "/api/v1/pods": api.pods}.get(url.path)
        if items is None:
            if url.path.startswith("/api/v1/namespaces/") and url.path.endswith("/pods"):
                ns = url.path.split("/")[4]
                items = [p for p in api.pods if p["metadata"]["namespace"] == ns]
            else:
                return self.reply(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
        start = int(query.get("continue") or 0)
        limit = int(query.get("limit") or len(items))
        page = items[start : start + limit]
        more = start + limit < len(items)
        kind = "NodeList" if "nodes" in url.path else "PodList"
        meta = {"resourceVersion": "918300", **({"continue": str(start + limit)} if more else {})}
        self.reply(200, {"kind": kind, "apiVersion": "v1", "metadata": meta, "items": page})

    def reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[Api, str, Path]]:
    ca = TestCA(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.api = Api()  # type: ignore[attr-defined]
    server.socket = (
        ca.leaf("apiserver").server_context().wrap_socket(server.socket, server_side=True)
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server.api, f"https://127.0.0.1:{server.server_address[1]}", ca.pem  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def token_file(tmp_path: Path) -> str:
    path = tmp_path / "token"
    path.write_text(TOKEN)
    return str(path)


def check(values: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> None:
    assert values[key("kubernetes_nodes")] == 3
    assert values[key("kubernetes_nodes_ready")] == 2
    assert values[key("kubernetes_node_ready", node="pi4")] == 0
    assert values[key("kubernetes_pods", namespace="home", phase="Running")] == 2
    assert values[key("kubernetes_pods", namespace="home", phase="Pending")] == 2
    assert values[key("kubernetes_pods", namespace="kube-system", phase="Succeeded")] == 1
    assert values[key("kubernetes_pods", namespace="media", phase="Failed")] == 1
    assert values[key("kubernetes_container_restarts", namespace="home")] == 48
    assert values[key("kubernetes_pods_not_ready", namespace="home")] == 1
    assert values[key("kubernetes_pods_waiting", namespace="home", reason="CrashLoopBackOff")] == 1
    assert values[key("kubernetes_pods_waiting", namespace="media", reason="ImagePullBackOff")] == 1


def test_api_with_token_ca_and_paging(api: tuple[Api, str, Path], tmp_path: Path) -> None:
    state, url, ca = api
    plugin = KubernetesPlugin(
        KubernetesConfig(server=url, token_file=token_file(tmp_path), ca_file=str(ca), page_size=4)
    )
    assert plugin.unavailable() is None
    sink = collect(plugin)
    check(by_key(sink))
    # 9 pods in pages of 4: three requests, the token in the header of each, never the URL.
    assert [p for p in state.asked if p.startswith("/api/v1/pods")] == [
        "/api/v1/pods?limit=4",
        "/api/v1/pods?limit=4&continue=4",
        "/api/v1/pods?limit=4&continue=8",
    ]
    assert all(TOKEN not in p for p in state.asked)
    events = {e.kind: e for e in sink.events}
    assert events["kubernetes_nodes_not_ready"].severity == "critical"
    assert events["kubernetes_nodes_not_ready"].message == "1 nodes not Ready: pi4"
    stuck = events["kubernetes_pods_stuck"]
    assert stuck.data["items"] == {
        "home/immich-server-7c9f8d6b5-2kq9d": {"waiting": ["CrashLoopBackOff"], "restarts": 47},
        "media/sonarr-84d6c7b9f-zz9kx": {"waiting": ["ImagePullBackOff"], "restarts": 0},
    }
    # Pending for hours is news; pending for seconds (jellyfin) is a pod starting.
    assert sorted(events["kubernetes_pods_pending"].data["items"]) == [
        "home/paperless-6f7d9c4b8-tx5vn",
        "media/sonarr-84d6c7b9f-zz9kx",
    ]
    # More restarts of the same crash-looping pod: the numbers move, no new event.
    state.pods[3]["status"]["containerStatuses"][0]["restartCount"] = 48
    again = collect(plugin)
    assert again.events == []
    assert by_key(again)[key("kubernetes_container_restarts", namespace="home")] == 49
    state.nodes[2]["status"]["conditions"][-1]["status"] = "True"
    [recovered] = collect(plugin).events
    assert (recovered.kind, recovered.message, recovered.severity) == (
        "kubernetes_nodes_not_ready",
        "no nodes not Ready",
        "info",
    )


def test_api_namespaces_and_refusals(api: tuple[Api, str, Path], tmp_path: Path) -> None:
    state, url, ca = api
    plugin = KubernetesPlugin(
        KubernetesConfig(
            server=url, token_file=token_file(tmp_path), ca_file=str(ca), namespaces=("media",)
        )
    )
    values = by_key(collect(plugin))
    assert {dict(k[1])["namespace"] for k in values if k[0] == "kubernetes_pods"} == {"media"}
    assert "/api/v1/namespaces/media/pods?limit=500" in state.asked
    wrong = tmp_path / "wrong"
    wrong.write_text("expired-token\n")
    denied = KubernetesPlugin(KubernetesConfig(server=url, token_file=str(wrong), ca_file=str(ca)))
    with pytest.raises(KubernetesError, match="answered 401 Unauthorized") as caught:
        collect(denied)
    assert "expired-token" not in str(caught.value)
    # The server's certificate is checked: without the test CA it is refused.
    untrusted = KubernetesPlugin(
        KubernetesConfig(
            server=url, token_file=token_file(tmp_path), ca_file=str(tmp_path / "none")
        )
    )
    with pytest.raises(KubernetesError, match="CERTIFICATE_VERIFY_FAILED"):
        collect(untrusted)
    plain = KubernetesPlugin(
        KubernetesConfig(server="http://127.0.0.1:8080", token_file=token_file(tmp_path))
    )
    with pytest.raises(KubernetesError, match="must be https://"):
        collect(plain)


def test_in_cluster_discovery(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    outside = KubernetesPlugin()
    assert outside.unavailable() == (
        "not in a cluster (no KUBERNETES_SERVICE_HOST) and no server configured"
    )
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.43.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    inside = KubernetesPlugin(KubernetesConfig(token_file=str(tmp_path / "token")))
    assert inside.unavailable() == f"no service account token at {tmp_path / 'token'}"
    assert inside._server() == "https://10.43.0.1:443"


def test_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nodes, pods = tmp_path / "nodes.json", tmp_path / "pods.json"
    nodes.write_text(json.dumps(listing("nodes.json")))
    pods.write_text(json.dumps(listing("pods.json")))
    recorded = install(
        monkeypatch,
        tmp_path / "bin",
        "kubectl",
        {
            "--context homelab get nodes -o json": nodes,
            "--context homelab get pods --all-namespaces -o json": pods,
        },
    )
    plugin = KubernetesPlugin(KubernetesConfig(source="kubectl", context="homelab"))
    assert plugin.unavailable() is None
    sink = collect(plugin)
    check(by_key(sink))
    assert calls(recorded)[1] == [
        "--context",
        "homelab",
        "get",
        "pods",
        "--all-namespaces",
        "-o",
        "json",
    ]
    assert {e.kind for e in sink.events} == {
        "kubernetes_nodes_not_ready",
        "kubernetes_pods_stuck",
        "kubernetes_pods_pending",
    }
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("error: You must be logged in to the server (Unauthorized)\n")
    install(monkeypatch, tmp_path / "bin2", "kubectl", {"get nodes -o json": (garbage, 1)})
    with pytest.raises(Exception, match="exited 1: error: You must be logged in"):
        collect(KubernetesPlugin(KubernetesConfig(source="kubectl")))
    assert KubernetesPlugin(
        KubernetesConfig(source="kubectl", command=("no-kubectl",))
    ).unavailable() == ("no-kubectl not found on PATH")


def test_config_refuses_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="'token'"):
        KubernetesPlugin.parse_config({"token": "in-the-file"})
