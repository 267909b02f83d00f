"""The set-up both README commands share is idempotent: a second run is quick and does not retrain.

Runs scripts/setup.sh for real (the test command has just run it once).
"""

from __future__ import annotations

import subprocess
import time

import pytest

from scripts.model import model_path, training_hash
from scripts.stack import ROOT

pytestmark = pytest.mark.integration


def test_second_setup_run_is_fast_and_does_not_retrain() -> None:
    started = time.monotonic()
    result = subprocess.run(
        ["scripts/setup.sh"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert "model up to date" in result.stdout
    assert "training" not in result.stdout and "installing" not in result.stdout
    assert elapsed < 30, f"second set-up took {elapsed:.1f}s"


def test_model_name_follows_its_training_inputs() -> None:
    assert model_path().name == f"assistant-{training_hash()}.tar.gz"
    assert model_path().is_file()
