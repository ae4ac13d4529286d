"""Kubernetes nodes and pods: the API over HTTPS with a bearer token, or `kubectl get -o json`.

In a pod the service account's token and CA are mounted and KUBERNETES_SERVICE_HOST names the
API; elsewhere ``kubectl`` brings the user's kubeconfig. Lists are read page by page (``limit``
and ``continue``), so a big cluster is counted whole.
"""

from __future__ import annotations

import datetime as dt
import os
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from unity.collectors import command, webapi
from unity.sdk import Metric, Plugin, Sink

SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
# Waiting reasons that mean a pod will not come up by itself.
STUCK = ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError")


class KubernetesError(RuntimeError):
    """The API or kubectl could not be read, or answered something that is not a list."""


class KubernetesConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    source: Literal["api", "kubectl"] = "api"
    # https://host:port of the API; empty = in-cluster (KUBERNETES_SERVICE_HOST and _PORT).
    server: str = ""
    token_file: str = f"{SERVICE_ACCOUNT}/token"
    token_env: str = ""
    ca_file: str = f"{SERVICE_ACCOUNT}/ca.crt"
    read_timeout: float = 10.0
    page_size: int = 500
    command: tuple[str, ...] = ("kubectl",)
    command_timeout: float = 20.0
    kubeconfig: str = ""
    context: str = ""
    # Namespaces to count; empty = all.
    namespaces: tuple[str, ...] = ()
    # A pod pending longer than this many seconds is reported.
    pending_grace: float = 300.0


def ready(conditions: list[dict[str, Any]] | None) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions or [])


def created(item: Mapping[str, Any]) -> dt.datetime | None:
    # RFC 3339 with a zone ("2025-12-04T12:00:00Z"): never a naive time.
    text = (item.get("metadata") or {}).get("creationTimestamp")
    try:
        return dt.datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None


def waiting_reasons(pod: Mapping[str, Any]) -> list[str]:
    status = pod.get("status") or {}
    containers = [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]
    return [
        str(c["state"]["waiting"].get("reason", ""))
        for c in containers
        if isinstance((c.get("state") or {}).get("waiting"), dict)
    ]


def restarts(pod: Mapping[str, Any]) -> int:
    status = pod.get("status") or {}
    return sum(int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or [])


def pod_name(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


class KubernetesPlugin(Plugin):
    id = "kubernetes"
    name = "Kubernetes"
    description = "Nodes ready, pods by phase and namespace, restarts, stuck and pending pods."
    category = "containers"
    tags = ("kubernetes", "k8s", "k3s")
    Config = KubernetesConfig
    metrics = (
        Metric("kubernetes_nodes", "", "gauge", "nodes"),
        Metric("kubernetes_nodes_ready", "", "gauge", "nodes whose Ready condition is True"),
        Metric("kubernetes_node_ready", "", "gauge", "1 while the node is Ready"),
        Metric("kubernetes_pods", "", "gauge", "pods by namespace and phase"),
        Metric("kubernetes_pods_not_ready", "", "gauge", "running pods not Ready"),
        Metric("kubernetes_pods_waiting", "", "gauge", "pods with a container waiting, by reason"),
        Metric("kubernetes_container_restarts", "", "gauge", "restarts of the namespace's pods"),
    )

    config: KubernetesConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._last: dict[str, list[str]] = {}

    def _server(self) -> str:
        if self.config.server:
            return self.config.server.rstrip("/")
        host, port = (
            os.environ.get("KUBERNETES_SERVICE_HOST"),
            os.environ.get("KUBERNETES_SERVICE_PORT", "443"),
        )
        if not host:
            return ""
        return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"

    def unavailable(self) -> str | None:
        if self.config.source == "kubectl":
            return command.missing(self.config.command)
        if not self._server():
            return "not in a cluster (no KUBERNETES_SERVICE_HOST) and no server configured"
        if not self.config.token_env and not Path(self.config.token_file).exists():
            return f"no service account token at {self.config.token_file}"
        return None

    def _token(self) -> str:
        try:
            token = command.read_secret(self.config.token_env, self.config.token_file)
        except command.CommandError as exc:
            raise KubernetesError(str(exc)) from None
        if not token:
            raise KubernetesError("no API token (token_env unset and token_file empty)")
        return token

    def _api_list(self, path: str) -> Iterator[dict[str, Any]]:
        server = self._server()
        if not server.startswith("https://"):
            raise KubernetesError(f"the API must be https:// (a token is sent): {server!r}")
        headers = {"Authorization": f"Bearer {self._token()}", "Accept": "application/json"}
        after = ""
        while True:
            query = {"limit": str(self.config.page_size)} | ({"continue": after} if after else {})
            url = f"{server}{path}?{urllib.parse.urlencode(query)}"
            try:
                page = webapi.get_json(
                    url,
                    headers=headers,
                    timeout=self.config.read_timeout,
                    ca_file=self.config.ca_file if Path(self.config.ca_file).exists() else "",
                )
            except webapi.WebApiError as exc:
                raise KubernetesError(f"Kubernetes API: {exc}") from None
            if not isinstance(page, dict) or not isinstance(page.get("items"), list):
                raise KubernetesError(f"Kubernetes API: {path} answered no list")
            yield from page["items"]
            after = (page.get("metadata") or {}).get("continue") or ""
            if not after:
                return

    def _kubectl(self, *args: str) -> list[dict[str, Any]]:
        prefix = [*(("--kubeconfig", self.config.kubeconfig) if self.config.kubeconfig else ()),
                  *(("--context", self.config.context) if self.config.context else ())]  # fmt: skip
        out = command.run(
            self.config.command,
            [*prefix, "get", *args, "-o", "json"],
            timeout=self.config.command_timeout,
        )
        try:
            listing = msgspec.json.decode(out.stdout)
        except msgspec.DecodeError as exc:
            raise KubernetesError(f"kubectl get {args[0]}: not JSON ({exc})") from None
        if not isinstance(listing, dict) or not isinstance(listing.get("items"), list):
            raise KubernetesError(f"kubectl get {args[0]}: no items list")
        return list(listing["items"])

    def nodes(self) -> list[dict[str, Any]]:
        if self.config.source == "kubectl":
            return self._kubectl("nodes")
        return list(self._api_list("/api/v1/nodes"))

    def pods(self) -> list[dict[str, Any]]:
        spaces = self.config.namespaces
        if self.config.source == "kubectl":
            if not spaces:
                return self._kubectl("pods", "--all-namespaces")
            return [p for ns in spaces for p in self._kubectl("pods", "--namespace", ns)]
        if not spaces:
            return list(self._api_list("/api/v1/pods"))
        return [p for ns in spaces for p in self._api_list(f"/api/v1/namespaces/{ns}/pods")]

    def collect(self, sink: Sink) -> None:
        nodes, pods = self.nodes(), self.pods()
        not_ready_nodes: dict[str, Any] = {}
        for node in nodes:
            name = str((node.get("metadata") or {}).get("name", ""))
            up = ready((node.get("status") or {}).get("conditions"))
            sink.add("kubernetes_node_ready", 1.0 if up else 0.0, {"node": name})
            if not up:
                not_ready_nodes[name] = {"conditions": (node.get("status") or {}).get("conditions")}
        sink.add("kubernetes_nodes", float(len(nodes)))
        sink.add("kubernetes_nodes_ready", float(len(nodes) - len(not_ready_nodes)))
        counts: dict[tuple[str, ...], int] = {}

        def count(*labels: str, by: int = 1) -> None:
            counts[labels] = counts.get(labels, 0) + by

        now = dt.datetime.now(dt.UTC)
        stuck: dict[str, Any] = {}
        pending: dict[str, Any] = {}
        for pod in pods:
            namespace = str((pod.get("metadata") or {}).get("namespace", ""))
            phase = str((pod.get("status") or {}).get("phase") or "Unknown")
            count("kubernetes_pods", namespace, phase)
            count("kubernetes_container_restarts", namespace, by=restarts(pod))
            if phase == "Running" and not ready((pod.get("status") or {}).get("conditions")):
                count("kubernetes_pods_not_ready", namespace)
            reasons = sorted(set(waiting_reasons(pod)) - {""})
            for reason in reasons:
                count("kubernetes_pods_waiting", namespace, reason)
            if any(r in STUCK for r in reasons):
                stuck[pod_name(pod)] = {"waiting": reasons, "restarts": restarts(pod)}
            born = created(pod)
            if (
                phase == "Pending"
                and born
                and (now - born).total_seconds() > self.config.pending_grace
            ):
                pending[pod_name(pod)] = {"since": born.isoformat()}
        names = {
            "kubernetes_pods": ("namespace", "phase"),
            "kubernetes_container_restarts": ("namespace",),
            "kubernetes_pods_not_ready": ("namespace",),
            "kubernetes_pods_waiting": ("namespace", "reason"),
        }
        for (metric, *values), value in sorted(counts.items()):
            sink.add(metric, float(value), dict(zip(names[metric], values, strict=True)))
        self._changed(
            sink, "kubernetes_nodes_not_ready", not_ready_nodes, "critical", "nodes not Ready"
        )
        self._changed(sink, "kubernetes_pods_stuck", stuck, "warning", "pods stuck")
        self._changed(sink, "kubernetes_pods_pending", pending, "warning", "pods pending")

    def _changed(
        self, sink: Sink, kind: str, now: dict[str, Any], severity: Any, what: str
    ) -> None:
        """An event when the set of names changes (a crash loop's growing restarts is not news)."""
        names = sorted(now)
        before = self._last.get(kind)
        self._last[kind] = names
        if names == before or (before is None and not names):
            return
        message = f"{len(names)} {what}: {', '.join(names)}"[:500] if names else f"no {what}"
        sink.event(kind, message, {"items": now, "was": before}, severity if names else "info")
