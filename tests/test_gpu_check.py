"""benchmarks/gpu_check.py keeps working: its --smoke run on the CPU passes.

The smoke run is every section of the GPU check at tiny sizes on the CPU: the graphed
engine's static-buffer schedule eagerly, Triton under its interpreter (a fresh process:
TRITON_INTERPRET must be set before triton is imported).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_gpu_check_smoke_passes_on_the_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads(out.read_text())
    sections = data["sections"]
    assert {"peak", "equivalence", "estimators", "timings", "sweep", "streaming",
            "hyperparameters", "user"} <= set(sections)
    assert all(s["status"] == "ok" for s in sections.values())
    eq = sections["equivalence"]["result"]
    engines = {r["engine"] for r in eq["rows"]}
    assert {"batched", "graphed", "streamed", "triton", "numba",
            "graphed+rates+features", "triton+rates+alphas"} <= engines
    assert eq["failed"] == 0 and all(r["rel_err"] < 1e-4 for r in eq["rows"])
    timed = [r for r in sections["timings"]["result"]["rows"] if "steps_per_s" in r]
    assert {r["engine"] for r in timed} >= {"batched", "graphed", "numba", "triton"}
    hp = sections["hyperparameters"]["result"]
    assert hp["padded"]["ok"] and [r["method"] for r in hp["runs"]] == ["one fit", "search"]
    assert "all checks passed" in done.stdout
    user = sections["user"]["result"]
    assert {(r["estimator"], r["early_stopping"]) for r in user["fits"]} == {
        ("NeuralBaggingRegressor", False), ("NeuralBaggingClassifier", False),
        ("NeuralBaggingClassifier", "auto")}
    assert all(r["fit_s"] > 0 and r["predict_rows_per_s"] > 0 for r in user["fits"])
    assert user["memory"]["E"] == 20 and user["gpus"]["skipped"]


def test_gpu_check_smoke_does_not_overwrite_the_committed_results():
    # Issue 25, defect 9: --out defaulted to benchmarks/results/gpu.json under --smoke.
    committed = SCRIPT.parent / "results" / "gpu.json"
    before = committed.read_bytes() if committed.exists() else None
    env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--only", "none"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    wrote = Path(done.stdout.split("\nwrote ")[1].split(";")[0])
    assert wrote.exists() and wrote.resolve() != committed.resolve()
    assert json.loads(wrote.read_text())["machine"]["smoke"] is True
    assert (committed.read_bytes() if committed.exists() else None) == before
