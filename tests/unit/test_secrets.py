"""Secrets come from the environment only, and .env.example lists every one of them."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECRET_NAME = re.compile(r"\b([A-Z][A-Z0-9_]*(?:TOKEN|SECRET|PASSWORD|_KEY|AES_KEY))\b")
# where code reads a variable: os.environ.get("X"), os.environ["X"], _env("X", ...), ${X} in YAML
# set by scripts/stack.py from REDIS_URL (which .env.example lists) for endpoints.yml; nobody sets it by hand
DERIVED = {"REDIS_PASSWORD"}
READS = re.compile(r"""(?:environ(?:\.get)?\(?\[?\s*["']|_env\(\s*["']|\$\{)([A-Z][A-Z0-9_]+)""")


def tracked(*patterns: str) -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", *patterns], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [ROOT / name for name in listed if not name.startswith("tests/")]


def example_keys() -> dict[str, str]:
    keys = {}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            keys[name.strip()] = value.strip()
    return keys


def test_every_secret_the_code_reads_is_listed_in_env_example() -> None:
    read: set[str] = set()
    for path in tracked("*.py", "*.yml", "*.sh"):
        read |= {
            name for name in READS.findall(path.read_text(encoding="utf-8")) if SECRET_NAME.fullmatch(name)
        }
    assert read, "the scan found no secrets at all: the pattern is broken"
    missing = sorted(read - set(example_keys()) - DERIVED)
    assert not missing, f"secrets read by the code but not in .env.example: {missing}"


def test_env_example_holds_no_values_for_secrets() -> None:
    filled = {k: v for k, v in example_keys().items() if SECRET_NAME.fullmatch(k) and v}
    assert not filled, f".env.example must not carry secret values: {sorted(filled)}"


def test_channel_credentials_come_from_the_environment() -> None:
    for name in ("credentials.yml", "endpoints.yml"):
        for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(":")
            if SECRET_NAME.search(key.upper()) and value.strip():
                assert value.strip().startswith("${"), f"{name}: {line.strip()} is not from the environment"
