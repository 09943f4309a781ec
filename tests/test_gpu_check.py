"""benchmarks/gpu_check.py keeps working: its --smoke run on the CPU passes.

The smoke run is every section of the GPU check at tiny sizes on the CPU: the graphed
engine's static-buffer schedule eagerly, Triton under its interpreter (a fresh process:
TRITON_INTERPRET must be set before triton is imported).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_gpu_check_smoke_passes_on_the_cpu():
    # One smoke run (a process importing everything and building numba kernels: the
    # slowest test) checks the sections and where the results went: with --smoke and no
    # --out, a temporary file, never the committed results (issue 25, defect 9: --out
    # defaulted to benchmarks/results/gpu.json under --smoke).
    committed = SCRIPT.parent / "results" / "gpu.json"
    before = committed.read_bytes() if committed.exists() else None
    env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = Path(done.stdout.split("\nwrote ")[1].split(";")[0])
    assert out.exists() and out.resolve() != committed.resolve()
    assert (committed.read_bytes() if committed.exists() else None) == before
    data = json.loads(out.read_text())
    shutil.rmtree(out.parent)  # the temporary folder the run made
    assert data["machine"]["smoke"] is True
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
