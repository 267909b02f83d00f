"""Start, watch and stop the whole product: Redis, action server, Rasa, web.

Used by the run command (``python -m scripts.stack run``) and by the
integration and browser tests, which start the same processes on free ports
with their own Redis key prefix.

Each process runs in its own process group and logs to var/log/<name>.log;
stopping sends SIGTERM to every group, then SIGKILL to what is left, so
Ctrl-C leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common.settings import Settings, split_redis_url  # noqa: E402
from scripts.model import model_path  # noqa: E402

READY_TIMEOUT = float(os.environ.get("CS_READY_TIMEOUT", "300"))


class StackError(RuntimeError):
    """A process could not start; the message says what to do."""


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def private_settings(var_dir: Path, tag: str, **overrides: Any) -> Settings:
    """Settings for a throw-away stack (tests, benchmarks): free ports, its own Redis and key prefix."""
    import secrets

    redis_port, rasa_port, action_port, web_port = (free_port() for _ in range(4))
    values: dict[str, Any] = {
        "redis_url": f"redis://127.0.0.1:{redis_port}/0",
        "key_prefix": tag + secrets.token_hex(4),
        "rasa_url": f"http://127.0.0.1:{rasa_port}",
        "rasa_token": f"{tag}-" + secrets.token_hex(16),
        "action_token": secrets.token_urlsafe(24),
        "metrics_token": secrets.token_urlsafe(24),
        "conversation_key": secrets.token_urlsafe(32),
        "rest_clients_text": "test=" + secrets.token_urlsafe(24),
        "web_port": web_port,
        "rasa_port": rasa_port,
        "action_port": action_port,
        "local_redis_port": redis_port,
        "var_dir": var_dir,
    }
    return Settings(**{**values, **overrides})


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 - loopback only
            return 200 <= reply.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def redis_ping(host: str, port: int, password: str = "") -> bool:
    """PING over a raw socket, so the launcher needs no redis package."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            if password:
                sock.sendall(f"AUTH {password}\r\n".encode())
                sock.recv(64)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class Service:
    name: str
    command: list[str]
    ready: Callable[[], bool]
    port: int | None = None
    process: subprocess.Popen[bytes] | None = None


@dataclass
class Stack:
    """The processes of one running product."""

    settings: Settings
    log_dir: Path
    model: Path = field(default_factory=model_path)
    start_redis: bool = False
    services: list[Service] = field(default_factory=list)
    quiet: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, *, start_redis: bool) -> Stack:
        return cls(settings=settings, log_dir=settings.var_dir / "log", start_redis=start_redis)

    # -- environment -------------------------------------------------------
    def env(self) -> dict[str, str]:
        parts = split_redis_url(self.settings.redis_url)
        env = dict(os.environ)
        env.update(
            {
                "PYTHONPATH": str(ROOT),
                "PYTHONUNBUFFERED": "1",
                "RASA_TELEMETRY_ENABLED": "false",
                "TF_CPP_MIN_LOG_LEVEL": "2",
                "HF_HUB_OFFLINE": "1",
                "REDIS_URL": self.settings.redis_url,
                "REDIS_HOST": parts.host,
                "REDIS_PORT": str(parts.port),
                "REDIS_DB": str(parts.db),
                "REDIS_PASSWORD": parts.password,
                "CS_KEY_PREFIX": self.settings.key_prefix,
                "CS_VAR_DIR": str(self.settings.var_dir),
                "RASA_URL": self.settings.rasa_url,
                **self.settings.secret_env(),
                "RASA_PORT": str(self.settings.rasa_port),
                "ACTION_ENDPOINT_URL": f"http://127.0.0.1:{self.settings.action_port}/webhook",
                # rasa-sdk's only way to choose its interface (it defaults to 0.0.0.0)
                "SANIC_HOST": self.settings.action_host,
                "MAX_MESSAGE_CHARS": str(self.settings.max_message_chars),
                "ACTION_TIMEOUT_SECONDS": str(self.settings.action_timeout_seconds),
                "CS_ALLOWED_ORIGINS": ",".join(self.settings.allowed_origins),
                "RATE_LIMIT_BURST": str(self.settings.rate_limit_burst),
                "RATE_LIMIT_PER_MINUTE": str(self.settings.rate_limit_per_minute),
                "PUBLIC_RASA_URL": self.settings.public_rasa_url,
                "LOG_LEVEL": self.settings.log_level,
                **self.settings.channel_env(),
            }
        )
        return env

    # -- services ----------------------------------------------------------
    def plan(self) -> list[Service]:
        s = self.settings
        services: list[Service] = []
        if self.start_redis:
            parts = split_redis_url(s.redis_url)
            redis_dir = s.var_dir / "redis"
            redis_dir.mkdir(parents=True, exist_ok=True)
            redis_server = shutil.which("redis-server") or "/usr/bin/redis-server"
            services.append(
                Service(
                    "redis",
                    [
                        redis_server,
                        "--port",
                        str(parts.port),
                        "--bind",
                        "127.0.0.1",
                        "--dir",
                        str(redis_dir),
                        "--appendonly",
                        "yes",
                        "--save",
                        "",
                        "--daemonize",
                        "no",
                        "--protected-mode",
                        "yes",
                    ],
                    lambda: redis_ping(parts.host, parts.port),
                    parts.port,
                )
            )
        services.append(
            Service(
                "actions",
                [
                    str(ROOT / ".venv" / "bin" / "python"),
                    "-m",
                    "actions",  # rasa_sdk with the project's logging (actions/__main__.py)
                    "--actions",
                    "actions",
                    "--port",
                    str(s.action_port),
                ],
                lambda: http_ok(f"http://127.0.0.1:{s.action_port}/health"),
                s.action_port,
            )
        )
        services.append(
            Service(
                "rasa",
                [
                    # `rasa` plus bot/speedups.py (see there)
                    str(ROOT / ".venv-rasa" / "bin" / "python"),
                    "-m",
                    "bot.server",
                    "run",
                    "--model",
                    str(self.model),
                    "--endpoints",
                    str(ROOT / "endpoints.yml"),
                    "--credentials",
                    str(ROOT / "credentials.yml"),
                    "--interface",
                    s.rasa_host,
                    "--port",
                    str(s.rasa_port),
                    "--enable-api",
                    "--auth-token",
                    s.rasa_token,
                    "--cors",
                    *s.allowed_origins,
                ],
                lambda: http_ok(f"http://127.0.0.1:{s.rasa_port}/status?token={s.rasa_token}"),
                s.rasa_port,
            )
        )
        services.append(
            Service(
                "web",
                [
                    str(ROOT / ".venv" / "bin" / "python"),
                    "-m",
                    "handoff.serve",  # uvicorn with the project's logging
                    "--host",
                    s.web_host,
                    "--port",
                    str(s.web_port),
                ],
                lambda: http_ok(f"http://127.0.0.1:{s.web_port}/healthz"),
                s.web_port,
            )
        )
        return services

    def _say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    def check_ports(self, services: list[Service]) -> None:
        for service in services:
            if service.port is not None and not port_free(service.port):
                hint = {
                    "redis": "set LOCAL_REDIS_PORT to another port, or REDIS_URL to a Redis you own",
                    "actions": "set ACTION_PORT",
                    "rasa": "set RASA_PORT",
                    "nginx": "set RASA_PORT",
                    "web": "set WEB_PORT",
                }.get(service.name.split("-")[0], "")
                raise StackError(
                    f"port {service.port} for {service.name} is taken (another copy running? "
                    f"`ss -ltnp | grep {service.port}` shows who); {hint}"
                )

    def start(self) -> None:
        if not self.model.is_file():
            raise StackError(f"no trained model at {self.model}; run `make setup` first")
        services = self.plan()
        self.check_ports(services)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = self.env()
        self.seed_shop(env)
        for service in services:
            log_path = self.log_dir / f"{service.name}.log"
            log = log_path.open("ab")
            self._say(f"  starting {service.name:<8} log: {log_path}")
            service.process = subprocess.Popen(  # noqa: S603 - fixed argv
                service.command,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            self.services.append(service)
            # Rasa needs Redis and the action server, the web service needs Rasa
            if service.name in ("redis", "actions"):
                self.wait(service)
        for service in self.services:
            self.wait(service)

    def seed_shop(self, env: dict[str, str]) -> None:
        """Migrate and seed the demo shop this stack's actions use (idempotent, about a second)."""
        result = subprocess.run(  # noqa: S603 - fixed argv
            [str(ROOT / ".venv" / "bin" / "python"), "-m", "shop", "seed"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"seeding the shop database failed:\n{result.stderr[-2000:]}")

    def demo_agent(self) -> str:
        """Make sure the DEMO supervisor exists (run command only); returns its login line.

        A stack other machines can reach gets no demo supervisor (its password sits in
        var/secrets/), and one left from a loopback run is removed.
        """
        exposed = bool(self.settings.exposed_hosts)
        command = ["remove", "demo"] if exposed else ["demo"]
        result = subprocess.run(  # noqa: S603 - fixed argv
            [str(ROOT / ".venv" / "bin" / "python"), "-m", "handoff", "agents", *command],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if exposed:
            return "(no demo login on an exposed stack: python -m handoff agents add NAME)"
        if result.returncode != 0:
            return f"(demo agent not created: {result.stderr.strip()[-300:]})"
        return result.stdout.strip()

    def wait(self, service: Service) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            assert service.process is not None
            code = service.process.poll()
            if code is not None:
                raise StackError(
                    f"{service.name} exited with code {code} while starting; last log lines:\n"
                    + self.tail(service.name)
                )
            if service.ready():
                return
            time.sleep(0.5)
        raise StackError(f"{service.name} not ready after {READY_TIMEOUT:.0f}s:\n" + self.tail(service.name))

    def tail(self, name: str, lines: int = 25) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _service(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    def stop_service(self, name: str) -> None:
        """Stop one process (the fault-injection tests stop Redis mid-conversation)."""
        service = self._service(name)
        if service.process and service.process.poll() is None:
            os.killpg(service.process.pid, signal.SIGTERM)
            service.process.wait(timeout=15)

    def kill_service(self, name: str) -> None:
        """kill -9 one process and its group: a crash, with no chance to clean up (fault tests)."""
        service = self._service(name)
        if service.process and service.process.poll() is None:
            os.killpg(service.process.pid, signal.SIGKILL)
            service.process.wait(timeout=15)

    def restart_service(self, name: str, extra_env: dict[str, str] | None = None) -> None:
        """Start a stopped service again; extra_env lets fault tests point it somewhere else."""
        service = self._service(name)
        log = (self.log_dir / f"{service.name}.log").open("ab")
        service.process = subprocess.Popen(  # noqa: S603 - fixed argv
            service.command,
            cwd=ROOT,
            env={**self.env(), **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.wait(service)

    def dead(self) -> list[Service]:
        return [s for s in self.services if s.process is not None and s.process.poll() is not None]

    def stop(self, grace: float = 10.0) -> None:
        for service in reversed(self.services):
            if service.process and service.process.poll() is None:
                try:
                    os.killpg(service.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for service in reversed(self.services):
            if not service.process:
                continue
            try:
                service.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                # also reaches children a process may have left in its group
                os.killpg(service.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            service.process.wait()
        self.services.clear()


def exposure_refusal(settings: Settings) -> str:
    """Why the stack must not start as configured: reachable from other machines with a DEMO secret.

    The DEMO secrets live in var/secrets/ of this install; anyone who can read them (or a copy of
    the install) holds the keys, so they are only good while every port is loopback.
    """
    exposed = settings.exposed_hosts
    if not exposed or not settings.demo_secrets:
        return ""
    return (
        f"refusing to listen on {', '.join(exposed)}: these secrets still have their generated DEMO "
        f"values: {', '.join(settings.demo_secrets)}. Set each of them (environment or .env.local, see "
        "README 'Security and privacy'), or keep WEB_HOST / RASA_HOST / ACTION_HOST on 127.0.0.1."
    )


def run(build: Callable[[Settings, bool], Stack] | None = None) -> int:
    """The run command; ``build`` makes another kind of stack (scripts/replicas.py)."""
    try:
        settings = Settings.from_env()
    except ValueError as error:  # a malformed setting: say which, not a traceback
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    refusal = exposure_refusal(settings)
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    start_redis = not (os.environ.get("REDIS_URL") or "")
    if not start_redis:
        parts = split_redis_url(settings.redis_url)
        if not redis_ping(parts.host, parts.port, parts.password):
            print(
                f"Redis at {parts.host}:{parts.port} (REDIS_URL) does not answer. Start it, or unset "
                "REDIS_URL to let this command start its own.",
                file=sys.stderr,
            )
            return 1
    stack = build(settings, start_redis) if build else Stack.from_settings(settings, start_redis=start_redis)
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print("Starting the StarCard support assistant...")
    try:
        stack.start()
    except (StackError, KeyboardInterrupt) as error:
        print(f"\nstart-up failed: {error}", file=sys.stderr)
        stack.stop()
        return 1
    s = settings
    print("All services are up:")
    print(f"  demo page + widget  http://127.0.0.1:{s.web_port}/")
    print(f"  agent console       http://127.0.0.1:{s.web_port}/console  {stack.demo_agent()}")
    print(f"  Rasa server         http://127.0.0.1:{s.rasa_port}/  (REST: /webhooks/rest/webhook)")
    print(f"  action server       http://127.0.0.1:{s.action_port}/health")
    replicas = [service.name for service in stack.services if "-" in service.name]
    if replicas:
        print(f"  behind nginx        {', '.join(replicas)}  (logs per replica; config var/nginx/nginx.conf)")
    wechat = "on" if s.wechat_token else "off (set WECHAT_TOKEN, see README)"
    telegram = (
        "on" if s.telegram_bot_token and s.telegram_webhook_secret else "off (set TELEGRAM_*, see README)"
    )
    print(f"  WeChat webhook      http://127.0.0.1:{s.rasa_port}/webhooks/wechat/webhook  {wechat}")
    print(f"  Telegram webhook    http://127.0.0.1:{s.rasa_port}/webhooks/telegram/webhook  {telegram}")
    print(f"  Redis               {s.redis_url}{'  (started here, AOF in var/redis)' if start_redis else ''}")
    print(f"  logs                {stack.log_dir}/")
    print("Press Ctrl-C to stop everything.", flush=True)
    while not stopping:
        dead = stack.dead()
        if dead:
            for service in dead:
                print(
                    f"{service.name} stopped unexpectedly; last log lines:\n{stack.tail(service.name)}",
                    file=sys.stderr,
                )
            break
        time.sleep(0.5)
    print("\nStopping...", flush=True)
    stack.stop()
    print("Stopped.")
    return 0 if stopping else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "run":
        sys.exit(run())
    print("usage: python -m scripts.stack run", file=sys.stderr)
    sys.exit(2)
