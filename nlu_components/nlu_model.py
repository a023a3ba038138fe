"""An NLU-only model for tests and benchmarks, retrained only when what it is built from changes.

The model is keyed on a fingerprint of config.yml, data/nlu/, data/red_flags.yml, the custom
components and the Rasa version, and kept in var/nlu-models/ (ignored by git), so `make test`
and `make bench` train once per change instead of once per run.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import rasa

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = PROJECT_ROOT / "var" / "nlu-models"


@dataclass(frozen=True)
class NluModel:
    path: Path
    train_seconds: float
    trained_now: bool


def inputs(root: Path = PROJECT_ROOT) -> list[Path]:
    """Every file the NLU model depends on."""
    files = [root / "config.yml", root / "data" / "red_flags.yml"]
    files += sorted((root / "data" / "nlu").rglob("*.yml"))
    files += sorted((root / "nlu_components").glob("*.py"))
    return [f for f in files if f.is_file()]


def fingerprint(root: Path = PROJECT_ROOT) -> str:
    digest = hashlib.sha256(rasa.__version__.encode())
    for path in inputs(root):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def train_nlu_model(out_dir: Path, name: str, root: Path = PROJECT_ROOT) -> float:
    """Train with the same CLI as `make train`, NLU part only; returns seconds taken."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONHASHSEED": "42"}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "rasa", "train", "nlu", "--config", "config.yml", "--nlu",
         "data/nlu", "--out", str(out_dir), "--fixed-model-name", name],
        cwd=root, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    return time.perf_counter() - started


def nlu_model(root: Path = PROJECT_ROOT, cache_dir: Path = CACHE_DIR) -> NluModel:
    """The NLU model for the current inputs, trained now if no cached one matches.

    A file lock makes concurrent test runs wait for one training instead of racing.
    """
    key = fingerprint(root)
    model, meta = cache_dir / f"nlu-{key}.tar.gz", cache_dir / f"nlu-{key}.json"
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if model.exists() and meta.exists():
            return NluModel(model, json.loads(meta.read_text())["train_seconds"], False)
        with tempfile.TemporaryDirectory(dir=cache_dir) as scratch:
            seconds = train_nlu_model(Path(scratch), f"nlu-{key}", root)
            os.replace(Path(scratch) / model.name, model)
        meta.write_text(json.dumps({"train_seconds": round(seconds, 1),
                                    "rasa": rasa.__version__}))
        for stale in cache_dir.glob("nlu-*"):
            if key not in stale.name:
                stale.unlink()
    return NluModel(model, round(seconds, 1), True)
