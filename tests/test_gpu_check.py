"""benchmarks/gpu_check.py runs end to end where there is no GPU (--cpu-smoke), so the GPU run is not its first run."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO


def test_gpu_check_cpu_smoke_runs_every_part(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "lib"), str(REPO)]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--cpu-smoke", "--out",
                           str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "gpu-smoke.json").read_text())
    assert result["smoke"] and result["gpu"] is None
    assert result["training"]["finite"] and result["training"]["steps"] >= 1
    amp = result["amp_every_configuration"]
    assert amp["all_ok"] and len(amp["configurations"]) == 7  # light and its ablations, as tiny networks
    for label in ("paper", "light"):
        assert result["inference"][label]["batched_fps"] > 0 and result["inference"][label]["streaming_fps"] > 0
        assert result["adaptation"][label]["seconds"] > 0
        assert result["archive"][label]["ok"] == result["archive"][label]["videos"] == 2
    assert "| paper |" in done.stdout and "| light |" in done.stdout
