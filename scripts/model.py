"""Train the Rasa model only when its inputs changed.

The model file is named by a hash of everything that shapes it (config,
domain, training data, our NLU component code, the Rasa lock file), and kept
in a cache outside the checkout so a fresh clone or a CI run with the same
inputs reuses it instead of retraining for minutes.

    python -m scripts.model path      # print the model path for the current inputs
    python -m scripts.model ensure    # train if that model is missing
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RASA = ROOT / ".venv-rasa" / "bin" / "rasa"


def training_inputs(root: Path = ROOT) -> list[Path]:
    files = [root / "config.yml", root / "domain.yml", root / "requirements" / "rasa.lock"]
    files += sorted((root / "data").rglob("*.yml"))
    files += sorted((root / "bot" / "nlu").rglob("*.py"))
    files += [root / "common" / "language.py", root / "common" / "encoders.py"]
    return [f for f in files if f.is_file()]


def encoder_pin(root: Path = ROOT, encoder_dir: Path | None = None) -> bytes:
    """The encoder the NLU's sentence features come from, as the knowledge index recorded it.

    Its fingerprint (package version and weights, or a model directory's files), not the
    record as a whole: the record also says where things were, which differs between clones.
    """
    spec_file = (encoder_dir or root / "var" / "knowledge" / "current" / "encoder") / "encoder.json"
    if not spec_file.is_file():
        return b""
    return str(json.loads(spec_file.read_text("utf-8")).get("fingerprint", "")).encode()


def training_hash(root: Path = ROOT, encoder_dir: Path | None = None) -> str:
    digest = hashlib.sha256()
    for path in training_inputs(root):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    digest.update(encoder_pin(root, encoder_dir))
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("CS_MODEL_CACHE", Path(base) / "starcard-assistant" / "models"))


def model_path(root: Path = ROOT) -> Path:
    return root / "models" / f"assistant-{training_hash(root)}.tar.gz"


def ensure_model(root: Path = ROOT) -> Path:
    target = model_path(root)
    if target.is_file():
        print(f"model up to date: {target.relative_to(root)}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    cached = cache_dir() / target.name
    if cached.is_file():
        shutil.copy2(cached, target)
        print(f"model restored from cache: {cached}")
        return target
    print("training data, domain or config changed: training the model (a few minutes)...", flush=True)
    env = {**os.environ, "PYTHONPATH": str(root), "RASA_TELEMETRY_ENABLED": "false"}
    command = [
        str(RASA),
        "train",
        "--config",
        str(root / "config.yml"),
        "--domain",
        str(root / "domain.yml"),
        "--data",
        str(root / "data"),
        "--out",
        str(target.parent),
        "--fixed-model-name",
        target.name[: -len(".tar.gz")],
    ]
    subprocess.run(command, cwd=root, env=env, check=True)  # noqa: S603 - fixed argv
    cached.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(target, cached)
    # older models of this checkout are dead weight
    for old in target.parent.glob("assistant-*.tar.gz"):
        if old != target:
            old.unlink()
    return target


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "path"
    if command == "path":
        print(model_path())
        return 0
    if command == "ensure":
        ensure_model()
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
