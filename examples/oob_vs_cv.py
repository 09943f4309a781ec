"""Out-of-bag scores: an estimate of held-out R² for the price of one fit.

With ``bootstrap=True`` every member leaves out about a third of the rows; predicting
each row with only the members that did not draw it gives ``oob_score_``, an estimate
of the score on new data that needs no held-out data and no refitting. This example
fits ``NeuralBaggingRegressor`` on scikit-learn's diabetes data (442 rows) for growing
ensembles and puts ``oob_score_`` beside 5-fold cross-validation on the same training
rows (five more fits) and the R² on held-out test rows, with the time each took.

One 75/25 split is not enough to check the estimate: its 111 test rows give an R² that
moves from split to split by more than the gap one wants to see. The first split here,
the one ``train_test_split(..., random_state=0)`` draws, scores far below the others on
its test rows, and its out-of-bag R² is among the highest: the 442 rows are a fixed pool,
so a split that puts hard rows in the test set leaves easy ones for training, and the two
scores move in opposite directions. So the example repeats everything over ``--splits``
random splits (10 by default) and shows the mean over splits, with the splits' standard
deviation as bars, and each split's held-out R² against its out-of-bag R². The picture
``oob_vs_cv.png`` is written to ``--out`` (default: the current folder), and the printed
figures to ``oob_vs_cv.json`` beside it.

    python examples/oob_vs_cv.py [--out DIR] [--splits N]
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
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, ShuffleSplit, cross_val_score

from skensemble import NeuralBaggingRegressor

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--out", type=Path, default=Path("."), help="folder for the picture (default: .)")
parser.add_argument("--splits", type=int, default=10, help="random 75/25 splits (default: 10)")
args = parser.parse_args()

warnings.filterwarnings("ignore", category=ConvergenceWarning)
# With 5-10 members a few rows were drawn by every member and have no OOB estimate;
# they are left out of oob_score_ (scikit-learn warns about that, and so do we).
warnings.filterwarnings("ignore", message="Some inputs do not have OOB scores")
X, y = load_diabetes(return_X_y=True)
# Split 0 is the split train_test_split(X, y, test_size=0.25, random_state=0) makes.
splits = ShuffleSplit(n_splits=args.splits, test_size=0.25, random_state=0).split(X)

sizes = [5, 10, 20, 40]
# scores[s, i, :] = (OOB R², 5-fold CV R², test R², OOB seconds, CV seconds) for split s, size i
scores = np.zeros((args.splits, len(sizes), 5))
for s, (train, test) in enumerate(splits):
    for i, n in enumerate(sizes):
        est = NeuralBaggingRegressor(n_estimators=n, hidden_layer_sizes=(32,), alpha=1.0,
                                     bootstrap=True, oob_score=True, max_iter=150,
                                     batch_size=32, learning_rate_init=0.003, random_state=0)
        start = time.perf_counter()
        est.fit(X[train], y[train])
        oob_time = time.perf_counter() - start
        start = time.perf_counter()
        cv = cross_val_score(est.set_params(oob_score=False), X[train], y[train],
                             cv=KFold(5, shuffle=True, random_state=0))
        cv_time = time.perf_counter() - start
        scores[s, i] = est.oob_score_, cv.mean(), est.score(X[test], y[test]), oob_time, cv_time
mean, sd = scores.mean(axis=0), scores.std(axis=0)

print(f"diabetes, {args.splits} random 75/25 splits ({len(train)} training, {len(test)} test "
      "rows); mean (sd) over splits")
print(f"{'members':>8}{'OOB R^2':>16}{'5-fold CV R^2':>16}{'test R^2':>16}{'OOB s':>8}{'CV s':>8}")
for i, n in enumerate(sizes):
    cells = "".join(f"{mean[i, k]:>9.3f} ({sd[i, k]:.3f})" for k in range(3))
    print(f"{n:>8}{cells}{mean[i, 3]:>8.2f}{mean[i, 4]:>8.2f}")
gap = scores[:, -1, 2] - scores[:, -1, 0]  # test - OOB, per split, largest ensemble
print(f"{sizes[-1]} members, test R^2 - OOB R^2 per split: mean {gap.mean():+.3f}, "
      f"sd {gap.std():.3f}, from {gap.min():+.3f} to {gap.max():+.3f}; "
      f"split 0 (train_test_split's random_state=0): OOB {scores[0, -1, 0]:.3f}, "
      f"test {scores[0, -1, 2]:.3f}")

fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.6), gridspec_kw={"width_ratios": [3, 2]})
style = [("out-of-bag R² (1 fit)", "o-", -0.04), ("5-fold CV R² on the training rows (5 fits)",
                                                 "s--", 0.0), (f"held-out test R² ({len(test)} rows)", "^:", 0.04)]
for k, (label, fmt, shift) in enumerate(style):
    xs = np.array(sizes) * 2.0**shift  # side by side, so that the bars do not overlap
    ax.errorbar(xs, mean[:, k], sd[:, k], fmt=fmt, capsize=3, label=label)
ax.set_xscale("log", base=2)
ax.set_xticks(sizes, [str(s) for s in sizes])
ax.set_xlabel("members")
ax.set_ylabel("R²")
ax.set_title(f"Mean over {args.splits} random 75/25 splits; bars: sd over splits", fontsize=10)

ax2.scatter(scores[:, -1, 0], scores[:, -1, 2], color="tab:green", marker="^",
            label="one split")
ax2.scatter(scores[0, -1, 0], scores[0, -1, 2], s=120, facecolors="none",
            edgecolors="black", label="split 0 (train_test_split, random_state=0)")
lo = min(scores[:, -1, [0, 2]].min(), 0.3) - 0.02
hi = max(scores[:, -1, [0, 2]].max(), 0.6) + 0.02
ax2.plot([lo, hi], [lo, hi], color="gray", lw=1, label="held-out = out-of-bag")
ax2.set_xlim(lo, hi)
ax2.set_ylim(lo, hi)
ax2.set_aspect("equal")
ax2.set_xlabel(f"out-of-bag R² ({sizes[-1]} members)")
ax2.set_ylabel(f"held-out test R² ({sizes[-1]} members)")
ax2.set_title("Each split: hard test rows leave easy training rows", fontsize=10)
fig.suptitle("Diabetes: out-of-bag R² from one fit vs cross-validation and held-out R²")
# The legends go below the axes, where they cover no data.
for a in (ax, ax2):
    a.legend(loc="upper center", bbox_to_anchor=(0.5, -0.17), fontsize=8, frameon=False)
fig.tight_layout()
args.out.mkdir(parents=True, exist_ok=True)
path = args.out / "oob_vs_cv.png"
fig.savefig(path, dpi=110, bbox_inches="tight")
print(f"saved {path}")
# The printed figures, for the documentation's check (benchmarks/check_docs.py).
figures = {
    "splits": args.splits, "n_train": len(train), "n_test": len(test),
    "sizes": {str(n): {name: {"mean": float(mean[i, k]), "sd": float(sd[i, k])}
                       for k, name in enumerate(["oob_r2", "cv_r2", "test_r2", "oob_s", "cv_s"])}
              for i, n in enumerate(sizes)},
    "gap": {"mean": float(gap.mean()), "sd": float(gap.std()), "min": float(gap.min()),
            "max": float(gap.max())},
    "split0": {"oob_r2": float(scores[0, -1, 0]), "test_r2": float(scores[0, -1, 2])},
}
(args.out / "oob_vs_cv.json").write_text(json.dumps(figures, indent=1) + "\n")
print(f"saved {args.out / 'oob_vs_cv.json'}")
