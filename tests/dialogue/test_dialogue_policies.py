"""`rasa test core` on tests/test_stories.yml: every story's next action is predicted right."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from booking.settings import PROJECT_ROOT

TEST_STORIES = PROJECT_ROOT / "tests" / "test_stories.yml"


def test_rasa_test_core_has_no_failed_stories(trained_model: Path, tmp_path: Path):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "rasa"), "test", "core", "--model", str(trained_model),
         "--stories", str(TEST_STORIES), "--out", str(tmp_path), "--no-plot"],
        cwd=PROJECT_ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    failed = (tmp_path / "failed_test_stories.yml").read_text()
    assert "None of the test stories failed" in failed, failed
