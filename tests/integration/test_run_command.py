"""The run command itself: `python -m scripts.stack run` as `make run` calls it.

Starts the whole product with its own Redis (REDIS_URL unset) on free ports,
checks the demo page and a turn in each language, then sends Ctrl-C (SIGINT)
and checks that no process it started is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from scripts.stack import ROOT, free_port
from tests.integration.helpers import texts

pytestmark = pytest.mark.integration

SECRETS = ("RASA_TOKEN", "ACTION_SERVER_TOKEN", "METRICS_TOKEN", "CS_CONVERSATION_KEY", "CS_REST_CLIENTS")


@pytest.mark.parametrize("host", ["WEB_HOST", "RASA_HOST", "ACTION_HOST"])
def test_run_command_refuses_a_public_address_while_a_demo_secret_is_in_use(
    tmp_path: Path, host: str
) -> None:
    """Issue 23: reachable from other machines with secrets anyone with the install can read is refused."""
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    env.update({"CS_VAR_DIR": str(tmp_path / "var"), host: "0.0.0.0", "RASA_TOKEN": "x" * 40})
    result = subprocess.run(
        [sys.executable, "-m", "scripts.stack", "run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "refusing to listen on 0.0.0.0" in result.stderr
    # the ones still on their DEMO values are named; the one set is not
    assert "ACTION_SERVER_TOKEN" in result.stderr and "RASA_TOKEN," not in result.stderr
    assert "Starting" not in result.stdout


def processes_mentioning(marker: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and str(os.getpid()) != proc.name:
            found.append(f"{proc.name}: {cmdline[:120]}")
    return found


def test_run_command_starts_everything_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("LOCAL_REDIS_PORT", "RASA_PORT", "ACTION_PORT", "WEB_PORT")}
    env = {
        k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "RASA_URL", "PUBLIC_RASA_URL", *SECRETS)
    }
    env.update({k: str(v) for k, v in ports.items()})
    env["CS_VAR_DIR"] = str(tmp_path / "var")
    launcher = subprocess.Popen(
        [sys.executable, "-m", "scripts.stack", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    try:
        assert launcher.stdout is not None
        deadline = time.monotonic() + 300
        for line in launcher.stdout:
            output.append(line)
            if "Press Ctrl-C" in line or time.monotonic() > deadline:
                break
        assert "All services are up:" in "".join(output), "".join(output)
        web = f"http://127.0.0.1:{ports['WEB_PORT']}"
        assert f"http://127.0.0.1:{ports['WEB_PORT']}/" in "".join(output)
        assert httpx.get(web + "/").status_code == 200
        rest = f"http://127.0.0.1:{ports['RASA_PORT']}/webhooks/rest/webhook"
        # the demo REST client's token was generated into var/secrets/, not printed anywhere
        token = (tmp_path / "var" / "secrets" / "rest-client-demo").read_text().strip()
        for message, language in (("你好", "zh"), ("hello", "en")):
            reply = httpx.post(
                rest,
                json={"sender": f"run-{language}", "message": message},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            ).json()
            assert reply[0]["text"] == texts("utter_greet")[language]
        # its own Redis keeps data on disk (AOF) under CS_VAR_DIR
        assert (tmp_path / "var" / "redis").is_dir()
        assert (tmp_path / "var" / "log" / "rasa.log").is_file()
    finally:
        launcher.send_signal(signal.SIGINT)
        rest_of_output, _ = launcher.communicate(timeout=60)
    assert launcher.returncode == 0, "".join(output) + rest_of_output
    assert "Stopped." in rest_of_output
    time.sleep(0.5)
    for port in ports.values():
        assert processes_mentioning(f"--port {port}") == []


def test_a_malformed_setting_is_named_and_nothing_starts(tmp_path: Path) -> None:
    env = {**os.environ, "ACTION_TIMEOUT_SECONDS": "soon", "CS_VAR_DIR": str(tmp_path / "var")}
    result = subprocess.run(
        [sys.executable, "-m", "scripts.stack", "run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "configuration error: ACTION_TIMEOUT_SECONDS must be a number (got 'soon')" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "var" / "log").exists()
