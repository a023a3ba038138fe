"""A clinic's overrides of the compliance gate are checked when its file is loaded: a misspelt
key stops the load (naming clinic and field) instead of silently turning a rule off."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.outreach.conftest import LONDON


def load(tmp_path: Path, compliance: dict) -> subprocess.CompletedProcess:
    clinic = copy.deepcopy(LONDON)
    clinic["settings"]["outreach"] = {"compliance": compliance}
    path = tmp_path / "clinics.yml"
    path.write_text(yaml.safe_dump({"clinics": [clinic]}))
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'ringback.db'}"}
    ringback = str(Path(sys.executable).parent / "ringback")
    subprocess.run([ringback, "migrate"], env=env, check=True, capture_output=True)
    return subprocess.run([ringback, "load-clinics", "--file", str(path)], env=env,
                          capture_output=True, text=True)


def test_a_misspelt_override_stops_the_load(tmp_path):
    loaded = load(tmp_path, {"sending_hour": "09:00-19:00"})
    assert loaded.returncode == 2
    assert "clinic thames" in loaded.stderr and "sending_hour" in loaded.stderr


def test_good_overrides_load(tmp_path):
    loaded = load(tmp_path, {"sending_hours": "09:00-19:00", "caps": {"per_24h": 2}})
    assert loaded.returncode == 0, loaded.stderr
    assert "thames" in loaded.stdout
