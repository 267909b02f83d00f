#!/usr/bin/env bash
# Set up whatever is missing; do nothing that is already done.
#   scripts/setup.sh          what the run command needs
#   scripts/setup.sh --test   also what the tests need (Debian chromium)
# A second run with nothing changed takes seconds: each virtual environment
# records the hash of its lock file, and the model is named by the hash of
# its training inputs (scripts/model.py).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WANT_TEST=0
[[ "${1:-}" == "--test" ]] && WANT_TEST=1
WANT_REPLICAS=0
[[ "${1:-}" == "--replicas" ]] && WANT_REPLICAS=1

say() { printf '\033[1m==>\033[0m %s\n' "$*"; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# sudo only when not root (CI and the dev machines run as root)
as_root() { if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  say "installing Debian package(s): $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null \
    || { as_root apt-get update -q >/dev/null && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; } \
    || die "could not install $* with apt-get"
}

# find_python 3.10 -> path of a working interpreter of exactly that version
find_python() {
  local want="$1" candidate
  local -a candidates=()
  local var="PYTHON${want/./}"
  [[ -n "${!var:-}" ]] && candidates+=("${!var}")
  local pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
  if [[ -d "$pyenv_root/versions" ]]; then
    for candidate in $(ls -d "$pyenv_root/versions/$want".* 2>/dev/null | sort -V -r); do
      candidates+=("$candidate/bin/python$want")
    done
  fi
  candidates+=("python$want" "/usr/bin/python$want" "/usr/local/bin/python$want")
  for candidate in "${candidates[@]}"; do
    if "$candidate" -c "import sys, venv; sys.exit(0 if sys.version_info[:2] == tuple(map(int, '$want'.split('.'))) else 1)" >/dev/null 2>&1; then
      command -v "$candidate" 2>/dev/null || echo "$candidate"
      return 0
    fi
  done
  return 1
}

# ensure_venv DIR PYTHON LOCKFILE
ensure_venv() {
  local dir="$1" python="$2" lock="$3" stamp want
  stamp="$dir/.installed-lock"
  want="$(sha256sum "$lock" | cut -c1-64) $("$python" -c 'import sys; print(sys.version.split()[0])')"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  say "installing $dir from $lock (first time: several minutes)"
  [[ -x "$dir/bin/python" ]] || "$python" -m venv "$dir"
  local -a extra=()
  # this machine keeps the CPU build of torch in /opt/wheels; never let pip pick a CUDA build
  [[ -d /opt/wheels ]] && extra+=(--find-links /opt/wheels)
  "$dir/bin/python" -m pip install --disable-pip-version-check -q "${extra[@]}" -r "$lock" 2>&1 \
    | grep -v -E "^WARNING: Location|DEPRECATION|pip 23.1 will enforce|Discussion can be found" || true
  "$dir/bin/python" -m pip check >/dev/null 2>&1 || say "note: pip check reports conflicts in $dir (see: $dir/bin/pip check)"
  "$dir/bin/python" -c "import sys" || die "$dir is broken"
  echo "$want" > "$stamp"
}

PY310="$(find_python 3.10)" || die "Python 3.10 not found (Rasa 3.6 needs it). Install it with
    pyenv install 3.10.13      (or: apt-get install python3.10 python3.10-venv)
or point PYTHON310 at a python3.10 binary."
PY311="$(find_python 3.11)" || die "Python 3.11 not found. Install it with
    pyenv install 3.11.7       (or: apt-get install python3.11 python3.11-venv)
or point PYTHON311 at a python3.11 binary."

ensure_venv .venv-rasa "$PY310" requirements/rasa.lock
ensure_venv .venv "$PY311" requirements/app.lock
.venv/bin/python -c "import torch, sys; sys.exit(0 if '+cpu' in torch.__version__ or not torch.cuda.is_available() else 1)" \
  || die "the torch in .venv is not the CPU build"

if [[ -z "${REDIS_URL:-}" ]] && ! command -v redis-server >/dev/null 2>&1 && [[ ! -x /usr/bin/redis-server ]]; then
  apt_install redis-server
fi

if [[ $WANT_TEST -eq 1 || $WANT_REPLICAS -eq 1 ]]; then
  # the load balancer in front of the Rasa replicas (scripts/replicas.py, tests/integration/test_replicas.py)
  command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || apt_install nginx
fi

if [[ $WANT_TEST -eq 1 ]]; then
  [[ -x /usr/bin/chromium ]] || apt_install chromium
  # Chinese glyphs for the browser tests' screenshots
  [[ -d /usr/share/fonts/opentype/noto ]] || apt_install fonts-noto-cjk
fi

mkdir -p var/log
# the knowledge index: built when missing, brought up to date when articles changed, else a no-op;
# first, because it exports the MiniLM graph the NLU's featurizer trains with (config.yml)
.venv/bin/python -m knowledge build
.venv/bin/python -m scripts.model ensure
# the demo shop (SQLite under var/ unless DATABASE_URL says otherwise): migrate, seed what is missing
.venv/bin/python -m shop seed
