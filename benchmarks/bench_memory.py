"""Extra peak memory of a default fit on 1,000,000 x 100 float64 rows, against the data's size.

Issue 24's target: a default fit (encoding on) adds at most 1.5x the data's size at its
peak. The estimator is ``NeuralBaggingRegressor(random_state=0, max_iter=1)``: every other
parameter at its default (10 members, one hidden layer of 100, robust scaling, the
piecewise-linear encoding over 24 bins, early stopping on 10% held-out rows, batch 256 at
this size), one epoch only so that the run takes minutes on two cores; the memory a fit
holds does not grow with its epochs (the history is a few numbers per epoch). Also
measured: ``predict`` on the same rows, and (issue 24, item 6) on 1,000,000 x 20 rows
after a default fit on 10,000 of them; both must be bounded by a chunk, not by the input.

How: after the data exist, ``/proc/self/clear_refs`` resets the kernel's high-water mark of
the resident memory (``VmHWM``) to the current resident size; the fit's peak is the mark
after it, minus the resident size before it. Linux only (elsewhere: ``ru_maxrss``, which
counts the data too). Writes ``benchmarks/results/memory.json`` (``--out``).

    python benchmarks/bench_memory.py [--rows 1000000] [--columns 100] [--out PATH]
"""

import argparse
import json
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from skensemble import NeuralBaggingRegressor  # noqa: E402


def _status_kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def peak_added_mib(fn):
    """``(fn(), MiB the call added at its peak, exact)``."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before, exact = _status_kib("VmRSS"), True
    except OSError:
        before, exact = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, False
    out = fn()
    peak = _status_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return out, (peak - before) / 1024, exact


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, default=100)
    parser.add_argument("--out", default=str(HERE / "results" / "memory.json"))
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.rows, args.columns))
    y = X[:, :5].sum(1) + np.sin(X[:, 5])
    data_mib = X.nbytes / 2**20
    est = NeuralBaggingRegressor(random_state=0, max_iter=1)
    t0 = time.perf_counter()
    _, added, exact = peak_added_mib(lambda: est.fit(X, y))
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, added_predict, _ = peak_added_mib(lambda: est.predict(X))
    predict_s = time.perf_counter() - t0
    rec = {
        "rows": args.rows, "columns": args.columns, "data_mib": round(data_mib, 1),
        "estimator": "NeuralBaggingRegressor(random_state=0, max_iter=1)",
        "fit_added_peak_mib": round(added, 1), "fit_added_over_data": round(added / data_mib, 3),
        "fit_s": round(fit_s, 1), "engine": est.engine_,
        "predict_added_peak_mib": round(added_predict, 1),
        "predict_added_over_data": round(added_predict / data_mib, 3),
        "predict_s": round(predict_s, 1), "exact_peak": exact,
    }
    # issue 24, item 6: predict 1,000,000 x 20 rows after a 10,000-row default fit
    Xp = rng.standard_normal((args.rows, 20))
    small = NeuralBaggingRegressor(random_state=0).fit(Xp[:10_000], Xp[:10_000, :3].sum(1))
    t0 = time.perf_counter()
    _, added_p20, _ = peak_added_mib(lambda: small.predict(Xp))
    rec.update(predict20_rows=args.rows, predict20_data_mib=round(Xp.nbytes / 2**20, 1),
               predict20_added_peak_mib=round(added_p20, 1),
               predict20_s=round(time.perf_counter() - t0, 1))
    print(f"data {data_mib:.0f} MiB; the default fit added {added:.0f} MiB at its peak = "
          f"{added / data_mib:.2f}x the data ({fit_s:.1f} s, engine {est.engine_}); "
          f"predict on the same rows added {added_predict:.0f} MiB "
          f"({added_predict / data_mib:.2f}x, {predict_s:.1f} s); after a 10,000-row fit, "
          f"predict on {args.rows:,} x 20 rows added {added_p20:.0f} MiB "
          f"({rec['predict20_s']:.1f} s)")
    Path(args.out).write_text(json.dumps(rec, indent=1) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
