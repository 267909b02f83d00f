"""Stock Rasa as the benchmarks' baseline: the project `rasa init` writes, trained in the run.

`rasa init --no-prompt` creates moodbot in a temporary directory and trains it
with its own config (the stock pipeline and policies); ``Moodbot.serve`` runs
it with `rasa run --enable-api` and Rasa's own channels (rest, socketio) and,
unless told otherwise, Rasa's default in-memory tracker store.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx

from scripts.stack import free_port

ROOT = Path(__file__).resolve().parent.parent
RASA = ROOT / ".venv-rasa" / "bin" / "rasa"

CREDENTIALS = """rest:
socketio:
  user_message_evt: user_uttered
  bot_message_evt: bot_uttered
  session_persistence: false  # true hits Rasa 3.6 calling enter_room without await: replies never arrive
"""


def _env() -> dict[str, str]:
    return {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "3"}


class Moodbot:
    """One stock project; ``serve`` may be called for several tracker stores in turn."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def create(self) -> float:
        """`rasa init --no-prompt` (writes and trains moodbot); returns the seconds it took."""
        started = time.perf_counter()
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory.parent / "moodbot-init.log", "wb") as log:
            subprocess.run(
                [str(RASA), "init", "--no-prompt", "--init-dir", str(self.directory)],
                check=True,
                env=_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        (self.directory / "credentials.yml").write_text(CREDENTIALS, encoding="utf-8")
        return time.perf_counter() - started

    def serve(self, endpoints: str | None = None, log_name: str = "moodbot.log") -> str:
        """Start `rasa run` and return its base URL once the model is loaded."""
        self.port = free_port()
        command = [str(RASA), "run", "--enable-api", "--port", str(self.port), "--model", "models"]
        command += ["--credentials", "credentials.yml"]
        if endpoints is not None:
            (self.directory / "bench-endpoints.yml").write_text(endpoints, encoding="utf-8")
            command += ["--endpoints", "bench-endpoints.yml"]
        log = open(self.directory.parent / log_name, "wb")
        self.process = subprocess.Popen(
            command, cwd=self.directory, env=_env(), stdout=log, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"stock rasa exited; see {log.name}")
            try:
                if httpx.get(f"{url}/status", timeout=2).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"stock rasa did not load its model in 180 s; see {log.name}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None


def redis_endpoints(redis_port: int, key_prefix: str) -> str:
    """endpoints.yml for stock Rasa with its own RedisTrackerStore."""
    return (
        "tracker_store:\n"
        "  type: redis\n"
        "  url: 127.0.0.1\n"
        f"  port: {redis_port}\n"
        "  db: 0\n"
        f"  key_prefix: {key_prefix}\n"
    )
