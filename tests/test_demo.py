"""The README's main job, as a smoke run: every step of scripts/demo.sh with tiny schedules."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_script_runs_end_to_end(tmp_path):
    env = {**os.environ, "CONDENSE_ARGS": "--set outer=1 --set inner=1", "EVAL_ARGS": "--seeds 1 --steps 20"}
    r = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh"), str(Path(sys.executable).parent), str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| hmn |" in r.stdout and "| random |" in r.stdout
    assert (tmp_path / "hmn" / "samples.png").is_file()
    assert (tmp_path / "digits-hmn.onnx").is_file() and (tmp_path / "device" / "grid.png").is_file()
