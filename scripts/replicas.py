"""Several Rasa replicas and action servers behind nginx: the product scaled out on one host.

    python -m scripts.replicas run [--rasa 2] [--actions 2]      (make run-replicas)

The same processes as scripts/stack.py, except that Rasa and the action
server run N times on internal loopback ports, and nginx (Debian's package)
listens on the public Rasa and action ports (RASA_PORT, ACTION_PORT) with
the configuration rendered from deploy/nginx.conf.template into var/nginx/.
Every Rasa replica uses the same Redis tracker store, lock store and event
stream, and sends its Socket.IO emits through Redis (CS_SOCKETIO_REDIS=1),
so any replica can serve any message. docs/operations.md explains the parts;
tests/integration/test_replicas.py runs it.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import shutil
import string
import sys
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common.settings import Settings  # noqa: E402
from scripts.stack import Service, Stack, StackError, free_port, http_ok  # noqa: E402

TEMPLATE = ROOT / "deploy" / "nginx.conf.template"


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not found:
        raise StackError(
            "nginx is not installed: `apt-get install nginx` (`scripts/setup.sh --replicas` does)"
        )
    return found


def render_nginx_conf(
    var: Path,
    listen_host: str,
    rasa_port: int,
    action_port: int,
    rasa_ports: list[int],
    action_ports: list[int],
) -> str:
    """deploy/nginx.conf.template with this stack's ports; nginx's own $variables stay as they are."""

    def servers(ports: list[int]) -> str:
        # one refused connection marks a replica down for 5 s; traffic goes to the others meanwhile
        return "\n".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in ports)

    values = {
        "var": str(var),
        "user_line": f"user {getpass.getuser()};" if os.geteuid() == 0 else "",
        "listen_host": listen_host,
        "rasa_port": str(rasa_port),
        "action_port": str(action_port),
        "rasa_servers": servers(rasa_ports),
        "action_servers": servers(action_ports),
    }
    # safe_substitute leaves nginx's $host, $remote_addr, ... alone; only ${our names} are ours
    text = string.Template(TEMPLATE.read_text()).safe_substitute(values)
    missing = [name for name in values if "${" + name + "}" in text]
    if missing:
        raise StackError(f"{TEMPLATE} kept placeholders {missing}")
    return text


@dataclass
class ReplicaStack(Stack):
    """Stack with ``rasa_replicas`` Rasa servers and ``action_replicas`` action servers behind nginx."""

    rasa_replicas: int = 2
    action_replicas: int = 2

    def env(self) -> dict[str, str]:
        # Socket.IO emits go through Redis, so a line posted to one replica reaches a socket on another
        return {**super().env(), "CS_SOCKETIO_REDIS": "1"}

    @property
    def nginx_dir(self) -> Path:
        return self.settings.var_dir / "nginx"

    def plan(self) -> list[Service]:
        single = {service.name: service for service in super().plan()}
        s = self.settings
        action_ports = [free_port() for _ in range(self.action_replicas)]
        rasa_ports = [free_port() for _ in range(self.rasa_replicas)]
        services: list[Service] = [single["redis"]] if "redis" in single else []
        for number, port in enumerate(action_ports, 1):
            services.append(_moved(single["actions"], f"actions-{number}", s.action_port, port))
        for number, port in enumerate(rasa_ports, 1):
            moved = _moved(single["rasa"], f"rasa-{number}", s.rasa_port, port)
            # only nginx is reachable from outside
            moved.command[moved.command.index("--port") : moved.command.index("--port")] = ["-i", "127.0.0.1"]
            services.append(moved)
        (self.nginx_dir / "tmp").mkdir(parents=True, exist_ok=True)
        conf = self.nginx_dir / "nginx.conf"
        conf.write_text(
            render_nginx_conf(
                self.nginx_dir, s.rasa_host, s.rasa_port, s.action_port, rasa_ports, action_ports
            )
        )
        services.append(
            Service(
                "nginx",
                [nginx_binary(), "-p", str(self.nginx_dir), "-c", str(conf)],
                lambda: http_ok(f"http://127.0.0.1:{s.rasa_port}/status?token={s.rasa_token}"),
                s.rasa_port,
            )
        )
        services.append(single["web"])
        return services

    def replica_ports(self, kind: str) -> list[int]:
        """Internal ports of the "rasa" or "actions" replicas (tests talk to each one directly)."""
        return [svc.port for svc in self.services if svc.name.startswith(kind + "-") and svc.port is not None]

    def turns_per_replica(self) -> dict[str, float]:
        """Customer turns each Rasa replica served, from its own /metrics (not through nginx)."""
        counts: dict[str, float] = {}
        for n, port in enumerate(self.replica_ports("rasa"), start=1):
            try:
                scrape = urllib.request.Request(
                    f"http://127.0.0.1:{port}/metrics",
                    headers={"Authorization": f"Bearer {self.settings.metrics_token}"},
                )
                with urllib.request.urlopen(scrape, timeout=10) as reply:  # noqa: S310 - loopback only
                    text = reply.read().decode()
            except OSError:
                continue
            found = re.findall(r"^cs_turns_total\{[^}]*\} (\S+)$", text, re.M)
            counts[f"rasa-{n}"] = sum(float(v) for v in found)
        return counts


def _moved(service: Service, name: str, old_port: int, new_port: int) -> Service:
    """A copy of ``service`` listening on ``new_port``: argv and readiness check follow."""
    command = [str(new_port) if arg == str(old_port) else arg for arg in service.command]
    # Rasa's /healthz (common/health.py) needs no token; rasa-sdk has /health
    health = "/healthz" if name.startswith("rasa") else "/health"

    def ready() -> bool:
        return http_ok(f"http://127.0.0.1:{new_port}{health}")

    return replace(service, name=name, command=command, ready=ready, port=new_port, process=None)


def main(argv: list[str] | None = None) -> int:
    from scripts.stack import run

    parser = argparse.ArgumentParser(prog="python -m scripts.replicas", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["run"])
    parser.add_argument("--rasa", type=int, default=2, help="Rasa replicas (default 2)")
    parser.add_argument("--actions", type=int, default=2, help="action servers (default 2)")
    args = parser.parse_args(argv)
    if args.rasa < 1 or args.actions < 1:
        parser.error("--rasa and --actions need at least 1")

    def build(settings: Settings, start_redis: bool) -> Stack:
        return ReplicaStack(
            settings=settings,
            log_dir=settings.var_dir / "log",
            start_redis=start_redis,
            rasa_replicas=args.rasa,
            action_replicas=args.actions,
        )

    return run(build)


if __name__ == "__main__":
    sys.exit(main())
