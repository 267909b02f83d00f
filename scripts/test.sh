#!/usr/bin/env bash
# The test command: set up what is missing, then run every test.
#   1. Rasa side (.venv-rasa): data validation, unit tests of bot/, conversation tests
#   2. app side (.venv): unit tests, integration tests against the real stack
#      (Redis, Rasa, action server, web service) and browser tests in headless chromium
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh --test

export PYTHONPATH="$ROOT" RASA_TELEMETRY_ENABLED=false TF_CPP_MIN_LOG_LEVEL=2 SQLALCHEMY_SILENCE_UBER_WARNING=1
MODEL="$(.venv/bin/python -m scripts.model path)"
mkdir -p var/test-results

echo "==> rasa data validate"
.venv-rasa/bin/rasa data validate --domain domain.yml --data data > var/test-results/validate.log 2>&1 \
  || { cat var/test-results/validate.log; echo "rasa data validate failed"; exit 1; }

echo "==> tests of the Rasa-side code (bot/): unit, and the channels against Redis and local WeChat/Telegram APIs"
.venv-rasa/bin/python -m pytest -q -p no:cacheprovider -W ignore::pytest.PytestConfigWarning tests/unit/bot tests/integration/bot

echo "==> conversation tests (rasa test, zh + en)"
.venv-rasa/bin/rasa test core --model "$MODEL" --stories tests \
  --fail-on-prediction-errors --out var/test-results/core > var/test-results/rasa-test.log 2>&1 \
  || { tail -60 var/test-results/rasa-test.log; cat var/test-results/core/failed_test_stories.yml 2>/dev/null; echo "conversation tests failed"; exit 1; }
echo "conversation tests passed ($(grep -c '^- story' tests/test_*.yml | awk -F: '{s+=$2} END {print s}') stories)"

echo "==> unit, integration and browser tests"
.venv/bin/python -m pytest -p no:cacheprovider tests --ignore=tests/unit/bot --ignore=tests/integration/bot "$@"
