"""Regenerate the pictures the README shows, in the places the README references.

    python benchmarks/make_readme_figures.py                      # every picture
    python benchmarks/make_readme_figures.py --only oob_vs_cv     # some of them (comma-separated)
    python benchmarks/make_readme_figures.py --dry-run             # print the commands only

The plotting examples run with ``--out examples/images`` (they write to the current
folder otherwise, so running an example never touches the tracked pictures); the
benchmark pictures are redrawn from their results files without re-running the
benchmarks (``bench_mothernets.py --replot``, ``bench_quality.py --table-only``). Each
command runs in its own process from the repository root. The examples take about two
minutes together on the 2-core development machine, the redraws a few seconds.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> (the picture as the README references it, the command that writes it there)
FIGURES = {
    "uncertainty": (
        "examples/images/uncertainty.png",
        ["examples/plot_uncertainty.py", "--out", "examples/images"],
    ),
    "oob_vs_cv": (
        "examples/images/oob_vs_cv.png",
        ["examples/oob_vs_cv.py", "--out", "examples/images"],
    ),
    "mothernets_pareto": (
        "examples/images/mothernets_pareto.png",
        ["examples/mothernets_pareto.py", "--out", "examples/images"],
    ),
    "hyperparameter_ensemble": (
        "examples/images/hyperparameter_ensemble.png",
        ["examples/hyperparameter_ensemble.py", "--out", "examples/images"],
    ),
    "mothernets": (
        "benchmarks/results/mothernets.png",
        ["benchmarks/bench_mothernets.py", "--replot"],
    ),
    "quality": (
        "benchmarks/results/quality.png",
        ["benchmarks/bench_quality.py", "--table-only", "--plot", "benchmarks/results/quality.png"],
    ),
    "scale": (
        "benchmarks/results/scale.png",
        ["benchmarks/bench_scale.py", "--table-only"],
    ),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=None, help=f"comma-separated, of: {', '.join(FIGURES)}")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(FIGURES)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        parser.error(f"unknown picture(s) {unknown}; known: {list(FIGURES)}")
    for name in names:
        picture, command = FIGURES[name]
        print(f"$ python {' '.join(command)}    # -> {picture}", flush=True)
        if args.dry_run:
            continue
        path = ROOT / picture
        before = path.stat().st_mtime_ns if path.exists() else None
        # bench_quality.py prints long tables (the README quotes them in its own section).
        quiet = subprocess.DEVNULL if name == "quality" else None
        start = time.perf_counter()
        subprocess.run([sys.executable, *command], cwd=ROOT, check=True, stdout=quiet)
        if not path.is_file() or path.stat().st_mtime_ns == before:
            sys.exit(f"{command[0]} did not write {picture}")
        print(f"({time.perf_counter() - start:.0f} s)\n", flush=True)


if __name__ == "__main__":
    main()
