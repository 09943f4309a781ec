"""Cold start: import time, and the first fit with an empty and with a warm numba cache.

What it shows
-------------
What a new user waits for before the first model: ``import skensemble`` and the first
``fit`` of a small default ``NeuralBaggingClassifier(random_state=0)`` on scikit-learn's
breast-cancer data (569 x 30), each in a fresh Python process:

* ``cold``: the numba cache is empty (``NUMBA_CACHE_DIR`` points to a new temporary
  folder), so the first fit compiles the member-major CPU kernel, as in a new
  environment;
* ``warm``: a second process with the same ``NUMBA_CACHE_DIR``, which loads the kernel
  the cold process wrote.

Each process imports skensemble, fits once (the first fit) and then fits the same
estimator again (the second fit, nothing left to compile or load). It reports:

* ``import s``: wall time of ``from skensemble import NeuralBaggingClassifier`` (which
  imports torch and scikit-learn; the numba kernel module is imported by the first fit);
* ``1st fit s``, ``2nd fit s``: wall time of each ``fit``;
* ``overhead s``: first fit minus second fit, the one-time cost of the first fit
  (kernel compile or cache load, starting numba's threads, first-use costs of torch);
* ``compile s``: seconds numba spent compiling (its ``numba:compile`` events, nested
  ones counted once), 0 when everything came from the cache; the JSON names the
  functions that compiled and the cache hits and misses of the parallel kernel and of
  the configuration's member epoch.

Every process starts from the same installed files, and the operating system's file
cache is warm (this script has imported torch before starting them): the figures leave
out reading the libraries from a cold disk, which a machine's very first import pays.

How to run
----------
    python benchmarks/bench_cold_start.py               # 3 repeats (~1-2 minutes)
    python benchmarks/bench_cold_start.py --repeats 1 --out DIR

Prints a table (median over repeats, and every repeat) and writes
``benchmarks/results/cold_start.json`` (machine, git commit, settings, every process's
raw figures). Run it on an otherwise idle machine; the load average is recorded.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import machine_info  # benchmarks/_machine.py

# The measured process: a new interpreter, so nothing is imported or compiled yet.
CHILD = r"""
import json, time
start = time.perf_counter()
from skensemble import NeuralBaggingClassifier  # imports torch and scikit-learn
import_s = time.perf_counter() - start

import numba.core.event as ev
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer

X, y = load_breast_cancer(return_X_y=True)
timer, recorder = ev.TimingListener(), ev.RecordingListener()
est = NeuralBaggingClassifier(random_state=0)
with ev.install_listener("numba:compile", timer), ev.install_listener("numba:compile", recorder):
    start = time.perf_counter()
    est.fit(X, y)
    first_s = time.perf_counter() - start
again = clone(est)
start = time.perf_counter()
again.fit(X, y)
second_s = time.perf_counter() - start
# Each compiled function with its seconds (inclusive of the functions it compiled).
compiled, stack = [], []
for stamp, event in recorder.buffer:
    if event.is_start:
        stack.append(stamp)
    else:
        name = event.data["dispatcher"].py_func.__qualname__
        compiled.append({"name": name, "depth": len(stack) - 1,
                         "seconds": stamp - stack.pop()})
result = {
    "import_s": import_s, "first_fit_s": first_s, "second_fit_s": second_s,
    "overhead_s": first_s - second_s,
    "compile_s": timer.duration if timer.done else 0.0, "compiled": compiled,
    "engine": est.engine_, "n_iter": int(est.n_iter_), "fit_time_s": float(est.fit_time_),
    "accuracy_train": float(est.score(X, y)),
}
if est.engine_ == "numba":
    from skensemble._kernels import numba_cpu
    stats = numba_cpu._epoch_kernel.stats
    result["kernel_cache_hits"] = sum(stats.cache_hits.values())
    result["kernel_cache_misses"] = sum(stats.cache_misses.values())
    # The configuration's member epoch, compiled apart from the kernel (one per
    # activation, loss and solver).
    members = [fn for fn, _ in numba_cpu._MEMBERS.values()]
    result["member_cache_hits"] = sum(sum(fn.stats.cache_hits.values()) for fn in members)
    result["member_cache_misses"] = sum(sum(fn.stats.cache_misses.values()) for fn in members)
    result["threading_layer"] = numba_cpu.THREADING_LAYER
print("RESULT " + json.dumps(result))
"""


def run_child(cache_dir):
    """One fresh interpreter with ``NUMBA_CACHE_DIR=cache_dir``; its figures (a dict)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"child process failed:\n{proc.stdout}\n{proc.stderr}")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return {**json.loads(line[len("RESULT ") :]), "process_wall_s": wall}


COLUMNS = [
    ("import_s", "import s"),
    ("first_fit_s", "1st fit s"),
    ("second_fit_s", "2nd fit s"),
    ("overhead_s", "overhead s"),
    ("compile_s", "compile s"),
    ("process_wall_s", "process s"),
]


def print_table(runs):
    print(f"\n{'':<14}" + "".join(f"{title:>12}" for _, title in COLUMNS))
    for phase in ("cold", "warm"):
        rows = [r[phase] for r in runs]
        median = {k: statistics.median(r[k] for r in rows) for k, _ in COLUMNS}
        print(f"{phase + ' (median)':<14}" + "".join(f"{median[k]:>12.2f}" for k, _ in COLUMNS))
        for i, r in enumerate(rows):
            print(f"{'  repeat ' + str(i):<14}" + "".join(f"{r[k]:>12.2f}" for k, _ in COLUMNS))
    print(
        "\nimport s: from skensemble import NeuralBaggingClassifier. overhead s: 1st fit - "
        "2nd fit in the same process (compile or cache load and other first-use costs). "
        "compile s: numba compiling. "
        "process s: the whole child process, interpreter start to exit."
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="cold+warm pairs (default 3)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results",
        help="folder for cold_start.json (default: benchmarks/results)",
    )
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    info = machine_info()
    print(
        f"cold start: {args.repeats} repeat(s), {info['cpu_count']} CPUs, torch {info['torch']}, "
        f"numba {info['numba']}, commit {(info['git_commit'] or '?')[:7]}"
    )
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"WARNING: load average {load:.1f}: other processes are running, times are noisy.")
    runs = []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache_dir:
            cold = run_child(cache_dir)
            warm = run_child(cache_dir)
        runs.append({"cold": cold, "warm": warm, "load_average": os.getloadavg()})
        print(
            f"  repeat {i}: cold 1st fit {cold['first_fit_s']:.2f} s (compiled "
            f"{len(cold['compiled'])} functions), warm 1st fit "
            f"{warm['first_fit_s']:.2f} s, engine {cold['engine']}",
            flush=True,
        )
    print_table(runs)
    print("\nWhat the first cold process compiled (seconds include what each compiled inside):")
    for c in runs[0]["cold"]["compiled"][::-1]:  # outermost first
        if c["depth"] <= 1:
            print(f"  {'  ' * c['depth']}{c['name']:<34}{c['seconds']:6.2f} s")
    summary = {
        phase: {k: statistics.median(r[phase][k] for r in runs) for k, _ in COLUMNS}
        for phase in ("cold", "warm")
    }
    results = {
        "machine": info,
        "settings": {
            "estimator": "NeuralBaggingClassifier(random_state=0)",
            "data": "load_breast_cancer (569 x 30)",
            "repeats": args.repeats,
            "cold": "fresh process, NUMBA_CACHE_DIR a new empty folder",
            "warm": "fresh process, NUMBA_CACHE_DIR the folder the cold process filled",
            "overhead_s": "first fit - second fit of the same estimator in the same process",
            "compile_s": "numba:compile events, nested ones counted once",
            "python": sys.executable,
        },
        "summary_median": summary,
        "runs": runs,
        "load_average_end": os.getloadavg(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "cold_start.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
