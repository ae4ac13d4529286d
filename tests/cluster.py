"""A three-node NATS cluster on loopback from compose/production/nats.conf, as compose runs it.

Each node gets the environment the production compose gives it (with loopback ports and temp
folders), TLS from `unity certs init` and the users file it is handed. Nodes can be killed
(SIGKILL, like a power cut of that node) and started again on the same store and ports.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from unity.compose import certs
from unity.compose.embedded import _scripts_binary, free_port

PRODUCTION = Path(__file__).resolve().parents[1] / "compose" / "production"


class NatsCluster:
    def __init__(self, folder: Path, users: str) -> None:
        self.folder = folder
        self.ca, self.server, _ = certs.init(folder / "certs", names=["localhost"])
        (folder / "users.conf").write_text(users)
        self.conf = folder / "nats.conf"
        self.conf.write_text((PRODUCTION / "nats.conf").read_text())
        self.client_ports = [free_port() for _ in range(3)]
        self.route_ports = [free_port() for _ in range(3)]
        self.monitor_ports = [free_port() for _ in range(3)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None, None, None]

    @property
    def ca_file(self) -> str:
        return str(self.ca.cert_path)

    @property
    def urls(self) -> list[str]:
        return [f"tls://localhost:{port}" for port in self.client_ports]

    def name(self, i: int) -> str:
        return f"nats-{i + 1}"

    def index(self, name: str) -> int:
        return int(name.removeprefix("nats-")) - 1

    def start(self, i: int) -> None:
        others = [f"tls://127.0.0.1:{self.route_ports[j]}" for j in range(3) if j != i]
        env = {
            **os.environ,
            "NATS_SERVER_NAME": self.name(i),
            "NATS_LISTEN": f"127.0.0.1:{self.client_ports[i]}",
            "NATS_MONITOR": f"127.0.0.1:{self.monitor_ports[i]}",
            "NATS_CLUSTER_LISTEN": f"127.0.0.1:{self.route_ports[i]}",
            "NATS_STORE": str(self.folder / f"store-{i}"),
            "NATS_TLS_CA": self.ca_file,
            "NATS_TLS_CERT": str(self.server.cert),
            "NATS_TLS_KEY": str(self.server.key),
            "NATS_ROUTE_1": others[0],
            "NATS_ROUTE_2": others[1],
        }
        with self.log(i).open("ab") as log:
            argv = [_scripts_binary("nats-server"), "-c", str(self.conf)]
            self.procs[i] = subprocess.Popen(argv, env=env, stdout=log, stderr=log)

    def log(self, i: int) -> Path:
        return self.folder / f"{self.name(i)}.log"

    def logs(self, tail: int = 2000) -> str:
        return "\n".join(self.log(i).read_text()[-tail:] for i in range(3) if self.log(i).exists())

    def kill(self, i: int) -> None:
        """SIGKILL: the node gets no chance to flush or step down."""
        proc = self.procs[i]
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        self.procs[i] = None

    def start_all(self) -> None:
        for i in range(3):
            self.start(i)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc is not None:
                proc.terminate()
        for proc in self.procs:
            if proc is not None:
                proc.wait(15)
        self.procs = [None, None, None]
