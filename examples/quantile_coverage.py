"""Quantile regression: do the predicted quantiles cover what they claim on new data?

``NeuralBaggingRegressor(loss="quantile", quantile=[...])`` trains every member on the
pinball loss of each level, one output per level, and predicts the mean of the members'
quantiles, sorted per row. This example simulates a heteroscedastic problem, where the
noise grows with ``|x_0|`` (so a quantile is not the mean plus a constant), fits the
ensemble on 2,000 rows for three seeds and measures on 5,000 new rows:

- the empirical coverage of each level, the share of new targets at or below the
  predicted quantile (it should be the level);
- the 5%-95% interval's coverage (90% claimed) and mean width, where the noise is low
  (``|x_0| < 0.5``) and where it is high (``|x_0| > 1.5``): a model that learnt the spread
  covers about 90% in both, with a wider interval where the noise is;
- the same coverage, and the pinball loss, for the other way to aggregate the members'
  quantiles: their median instead of their mean.

It prints the figures, writes them to ``quantile_coverage.json`` and draws the intervals
on a slice of the data in ``quantile_coverage.png``, both in ``--out`` (default: the
current folder). About 10 s on two cores.

    python examples/quantile_coverage.py [--out DIR]
"""

import argparse
import json
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import mean_pinball_loss

from skensemble import NeuralBaggingRegressor

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--out", type=Path, default=Path("."), help="folder for the outputs")
args = parser.parse_args()

LEVELS = [0.05, 0.25, 0.5, 0.75, 0.95]
SEEDS = [0, 1, 2]
N_TRAIN, N_TEST = 2000, 5000


def simulate(n, seed):
    """``y = sin(x0) + x1 / 2 + (0.2 + 0.8 |x0|) * noise``: the spread grows with |x0|."""
    rng = np.random.RandomState(seed)
    X = rng.uniform(-2, 2, size=(n, 3))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] + (0.2 + 0.8 * np.abs(X[:, 0])) * rng.normal(size=n)
    return X, y


def interval(pred, y, rows):
    """Coverage of [5%, 95%] and its mean width on ``rows``."""
    lo, hi = pred[rows, 0], pred[rows, -1]
    return float(np.mean((y[rows] >= lo) & (y[rows] <= hi))), float(np.mean(hi - lo))


start = time.perf_counter()
runs = []
for seed in SEEDS:
    X, y = simulate(N_TRAIN, 100 + seed)
    Xt, yt = simulate(N_TEST, 200 + seed)
    reg = NeuralBaggingRegressor(n_estimators=8, hidden_layer_sizes=(32,), loss="quantile",
                                 quantile=LEVELS, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, y)
    mean = reg.predict(Xt)  # (n, 5): the members' mean, sorted per row
    median = np.sort(np.median(reg.predict_members(Xt), axis=0), axis=1)
    low, high = np.abs(Xt[:, 0]) < 0.5, np.abs(Xt[:, 0]) > 1.5
    run = {"seed": seed}
    for name, pred in (("mean", mean), ("median", median)):
        run[name] = {
            "coverage": [float(c) for c in (yt[:, None] <= pred).mean(0)],
            "pinball": float(np.mean([mean_pinball_loss(yt, pred[:, j], alpha=a)
                                      for j, a in enumerate(LEVELS)])),
            "interval_low_noise": interval(pred, yt, low),
            "interval_high_noise": interval(pred, yt, high),
        }
    run["d2_pinball"] = reg.score(Xt, yt)
    runs.append(run)
    if seed == SEEDS[0]:
        picture = (reg, Xt, yt)


def average(key, field, index=None):
    values = [r[key][field] if index is None else r[key][field][index] for r in runs]
    return float(np.mean(values))


summary = {
    "levels": LEVELS,
    "seeds": SEEDS,
    "n_train": N_TRAIN,
    "n_test": N_TEST,
    "runs": runs,
}
for key in ("mean", "median"):
    summary[key] = {
        "coverage": [round(average(key, "coverage", j), 4) for j in range(len(LEVELS))],
        "pinball": round(average(key, "pinball"), 4),
        "interval_low_noise": [round(float(np.mean([r[key]["interval_low_noise"][k]
                                                     for r in runs])), 4) for k in (0, 1)],
        "interval_high_noise": [round(float(np.mean([r[key]["interval_high_noise"][k]
                                                      for r in runs])), 4) for k in (0, 1)],
    }
summary["d2_pinball"] = round(float(np.mean([r["d2_pinball"] for r in runs])), 4)
summary["seconds"] = round(time.perf_counter() - start, 1)

print(f"{N_TRAIN} training rows, {N_TEST} new rows, mean over seeds {SEEDS}")
print("level      " + "".join(f"{a:>8.2f}" for a in LEVELS))
for key in ("mean", "median"):
    s = summary[key]
    print(f"{key:<11}" + "".join(f"{c:>8.3f}" for c in s["coverage"])
          + f"   pinball {s['pinball']:.4f}")
for key in ("mean", "median"):
    s = summary[key]
    lo_cov, lo_w = s["interval_low_noise"]
    hi_cov, hi_w = s["interval_high_noise"]
    print(f"{key}: 5%-95% interval covers {lo_cov:.3f} (width {lo_w:.2f}) where |x0| < 0.5, "
          f"{hi_cov:.3f} (width {hi_w:.2f}) where |x0| > 1.5")
print(f"D^2 pinball score (score): {summary['d2_pinball']:.3f}; {summary['seconds']} s")

args.out.mkdir(parents=True, exist_ok=True)
path = args.out / "quantile_coverage.json"
path.write_text(json.dumps(summary, indent=1) + "\n")
print(f"saved {path}")

reg, Xt, yt = picture
rows = np.abs(Xt[:, 1]) < 0.15  # new rows where x1 is near 0: y against x0
grid = np.linspace(-2, 2, 200)
pp = reg.predict(np.c_[grid, np.zeros((200, 2))])  # (200, 5) at x1 = x2 = 0
true_05, true_95 = (np.sin(grid) + z * (0.2 + 0.8 * np.abs(grid)) for z in (-1.645, 1.645))
fig, ax = plt.subplots(figsize=(6.4, 3.6))
ax.scatter(Xt[rows, 0], yt[rows], s=6, color="0.6", label="new rows (|x1| < 0.15)")
ax.fill_between(grid, pp[:, 0], pp[:, -1], alpha=0.25, label="predicted 5%-95%")
ax.fill_between(grid, pp[:, 1], pp[:, 3], alpha=0.35, label="predicted 25%-75%")
ax.plot(grid, pp[:, 2], lw=1.5, label="predicted median")
ax.plot(grid, true_05, "k--", lw=0.8, label="true 5% and 95%")
ax.plot(grid, true_95, "k--", lw=0.8)
ax.set_xlabel("x0")
ax.set_ylabel("y")
ax.legend(loc="upper left", fontsize=8)
ax.set_title("Quantiles of a heteroscedastic target (seed 0)")
fig.tight_layout()
picture_path = args.out / "quantile_coverage.png"
fig.savefig(picture_path, dpi=100)
print(f"saved {picture_path}")
