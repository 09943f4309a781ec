"""What the piecewise-linear encoding costs per epoch at 200,000 x 50, against none.

Issue 24's target: a default epoch with the encoding on costs at most 2x the epoch with
``numeric_encoding="none"``. Synthetic regression (seed 0: 50 standard normal columns, y a
smooth function of six of them plus noise), ``NeuralBaggingRegressor(random_state=0)`` with
every other parameter at its default (at 200,000 rows: batch 256, 24 bins per feature,
the numba engine on the CPU) and one of:

* ``none``: ``numeric_encoding="none"``;
* ``bins_24``: the defaults (24 bins per feature);
* ``bins_8``: ``n_bins=8``.

An epoch's seconds are those of a fit with ``max_iter=2`` less those of one with
``max_iter=1`` (the same set-up, scaling and quantiles, and one more epoch of training and
validation), best of two repeats. Run it on an otherwise idle core:
``taskset -c 1 python benchmarks/bench_encoding.py``. Writes
``benchmarks/results/encoding.json``.
"""

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from skensemble import NeuralBaggingRegressor  # noqa: E402

VARIANTS = {"none": {"numeric_encoding": "none"}, "bins_24": {}, "bins_8": {"n_bins": 8}}


def fit_seconds(X, y, max_iter, **kw):
    est = NeuralBaggingRegressor(random_state=0, max_iter=max_iter, early_stopping=True, **kw)
    t0 = time.perf_counter()
    est.fit(X, y)
    return time.perf_counter() - t0, est


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--columns", type=int, default=50)
    parser.add_argument("--out", default=str(HERE / "results" / "encoding.json"))
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.rows, args.columns))
    y = (np.sin(X[:, 0]) + X[:, 1] * X[:, 2] + np.abs(X[:, 3]) + 0.5 * X[:, 4]
         - X[:, 5] ** 2 / 4 + 0.1 * rng.standard_normal(args.rows))
    fit_seconds(X[:2000], y[:2000], 1)  # compile or load the kernels once, untimed
    res = {"rows": args.rows, "columns": args.columns, "load_average_1m": os.getloadavg()[0],
           "variants": {}}
    for name, kw in VARIANTS.items():
        epochs = []
        for _ in range(2):
            one, _ = fit_seconds(X, y, 1, **kw)
            two, est = fit_seconds(X, y, 2, **kw)
            epochs.append(two - one)
        res["variants"][name] = {"params": kw, "epoch_s": round(min(epochs), 2),
                                 "engine": est.engine_}
        print(f"{name:10s} epoch {min(epochs):6.2f} s  (engine {est.engine_})", flush=True)
    base = res["variants"]["none"]["epoch_s"]
    for v in res["variants"].values():
        v["vs_none"] = round(v["epoch_s"] / base, 2)
    print("epoch over none:", {k: v["vs_none"] for k, v in res["variants"].items()})
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
