"""Small data (150-178 rows): which schedule when members have too few rows to validate on.

Below 200 rows ``early_stopping="auto"`` holds out nothing (a member's validation set
would have fewer than 20 rows), so members train on all their rows and stop on the
training loss. This compares, by 5-fold cross-validation (shuffled, seed 0; stratified for
classification), four ways to run those fits:

* ``constant_200``: a constant rate for up to 200 epochs (the defaults before
  ``learning_rate="auto"``; they warn when members reach ``max_iter``);
* ``constant_50``: the same for up to 50 epochs;
* ``warmup_cosine_200`` and ``warmup_cosine_50``: a warm-up then a half cosine to 0 over
  200 or 50 epochs (``warmup_cosine_50`` is what ``learning_rate="auto"`` and
  ``max_iter="auto"`` resolve to here).

Data sets: scikit-learn's bundled iris (150 rows) and wine (178), diabetes and breast
cancer subsampled to 150 rows, and 150-row subsamples of the six original tuning-half sets
of ``bench_quality.py`` (bikeshare, fair, chile, cps1988, hotel_rates, wage; their
sources are named there). Only tuning-half data: the held-out half never chose a default.
Regression targets standardised (RMSE in standard deviations); classification scored by
log loss. Other parameters at their defaults, ``random_state=0``.

    python benchmarks/bench_small.py [--out benchmarks/results/small.json]
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

VARIANTS = {"constant_200": ("constant", 200), "constant_50": ("constant", 50),
            "warmup_cosine_200": ("warmup_cosine", 200), "warmup_cosine_50": ("warmup_cosine", 50)}
TUNING_SETS = ["bikeshare", "fair", "chile", "cps1988", "hotel_rates", "wage"]
N_ROWS = 150


def datasets():
    """``{name: (X, y, "reg" | "clf", source)}``."""
    import bench_quality as bq
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine

    rng = np.random.default_rng(0)
    out = {}
    X, y = load_iris(return_X_y=True)
    out["iris"] = (X, y, "clf", "sklearn.datasets.load_iris")
    X, y = load_wine(return_X_y=True)
    out["wine"] = (X, y, "clf", "sklearn.datasets.load_wine")
    X, y = load_diabetes(return_X_y=True)
    i = rng.choice(len(X), N_ROWS, replace=False)
    out["diabetes150"] = (X[i], y[i], "reg", "sklearn.datasets.load_diabetes, 150 rows")
    X, y = load_breast_cancer(return_X_y=True)
    i = rng.choice(len(X), N_ROWS, replace=False)
    out["cancer150"] = (X[i], y[i], "clf", "sklearn.datasets.load_breast_cancer, 150 rows")
    for name in TUNING_SETS:
        spec = bq.DATASETS[name]
        X, y = spec.loader()
        i = rng.choice(len(X), N_ROWS, replace=False)
        Xi = X.iloc[i] if hasattr(X, "iloc") else np.asarray(X)[i]
        kind = "reg" if spec.task == "regression" else "clf"
        out[name + "150"] = (Xi, np.asarray(y)[i], kind, spec.source + ", 150 rows")
    return out


def score(X, y, kind, schedule, max_iter):
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score

    from skensemble import NeuralBaggingClassifier, NeuralBaggingRegressor

    if kind == "reg":
        y = (y - y.mean()) / y.std()
        est = NeuralBaggingRegressor(random_state=0, learning_rate=schedule, max_iter=max_iter)
        cv, metric = KFold(5, shuffle=True, random_state=0), "neg_root_mean_squared_error"
    else:
        est = NeuralBaggingClassifier(random_state=0, learning_rate=schedule, max_iter=max_iter)
        cv, metric = StratifiedKFold(5, shuffle=True, random_state=0), "neg_log_loss"
    t0 = time.perf_counter()
    s = cross_val_score(est, X, y, cv=cv, scoring=metric)
    return float(-s.mean()), time.perf_counter() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(HERE / "results" / "small.json"))
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    res = {"variants": {k: {"learning_rate": s, "max_iter": m} for k, (s, m) in VARIANTS.items()},
           "protocol": __doc__.split("\n\n")[1], "datasets": {}, "results": {}}
    for name, (X, y, kind, source) in datasets().items():
        res["datasets"][name] = {"source": source, "task": kind, "n_rows": int(len(y))}
        row = {}
        for v, (schedule, max_iter) in VARIANTS.items():
            loss, secs = score(X, y, kind, schedule, max_iter)
            row[v] = {"loss": round(loss, 4), "cv_seconds": round(secs, 1)}
        res["results"][name] = row
        print(f"{name:14s} " + "  ".join(f"{v} {r['loss']:.4f}" for v, r in row.items()),
              flush=True)
    ranks = {v: [] for v in VARIANTS}
    for row in res["results"].values():
        order = sorted(VARIANTS, key=lambda v: row[v]["loss"])
        for r, v in enumerate(order, 1):
            ranks[v].append(r)
    res["mean_rank"] = {v: round(float(np.mean(r)), 2) for v, r in ranks.items()}
    res["wins_over_constant_200"] = {
        v: int(sum(row[v]["loss"] < row["constant_200"]["loss"] for row in res["results"].values()))
        for v in VARIANTS if v != "constant_200"}
    print("mean rank:", res["mean_rank"])
    print("sets better than constant_200 (of", len(res["results"]), "):",
          res["wins_over_constant_200"])
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
