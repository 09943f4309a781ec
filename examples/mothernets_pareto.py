"""MotherNets: similar accuracy for less training, on an error/cost plot with its Pareto front.

An ensemble of 8 MLPs of *different* architectures on scikit-learn's digits data,
trained three ways with early stopping: independently from random initialisations,
and with MotherNets (``init="mothernet"``) using 1 and 3 clusters of architectures --
a small network per cluster is trained first, then every member is grown from it by
function-preserving widening/deepening and trained further. For each, the test error
and the total training cost (seconds, and epoch-equivalents: epochs weighted by each
network's parameters, the MotherNets' own training included) are printed, as the mean
and standard deviation over ``--seeds`` training seeds (2 by default; the test rows are
the same for every seed). The picture shows each method's mean, its standard deviation
over seeds as error bars, every seed as a small dot, and the Pareto front: the lowest
error reached at or below each cost. It is written as ``mothernets_pareto.png`` to
``--out`` (default: the current folder), and the printed figures to
``mothernets_pareto.json`` beside it.

The settings are those of benchmarks/bench_mothernets.py (adam at lr 1e-3, batch 200,
patience 10), under which independently initialised members train for many epochs and
hatched members start close to a solution. Savings depend on that: with a faster
schedule (lr 3e-3, batch 64, patience 5) the independent members here stopped after
about 16 epochs each, and MotherNets with 1 and 2 clusters cost 109% and 119% of
independent training (epoch-equivalents), not less.
benchmarks/bench_mothernets.py is the full study (more data sets, seeds and baselines).

    python examples/mothernets_pareto.py [--out DIR] [--seeds N] [--max-iter N]
"""

import argparse
import json
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from skensemble import NeuralBaggingClassifier

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--out", type=Path, default=Path("."), help="folder for the picture (default: .)")
parser.add_argument("--seeds", type=int, default=2, help="training seeds 0..N-1 (default: 2)")
parser.add_argument("--max-iter", type=int, default=200, help="epoch cap per network (default: 200)")
args = parser.parse_args()

warnings.filterwarnings("ignore", category=ConvergenceWarning)
X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0,
                                                    stratify=y)
ARCHS = [(64,), (96,), (64, 32), (128, 64), (96, 48), (128,), (64, 64), (128, 64, 32)]
F, K = X.shape[1], 10


def n_params(arch):
    sizes = (F, *arch, K)
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def cost(est):
    """Seconds and epoch-equivalents (epochs x parameters / mean member parameters)."""
    member_p = np.array([n_params(a) for a in est.hidden_layer_sizes_])
    work = float((est.n_iter_per_member_ * member_p).sum())
    seconds = est.fit_time_
    if hasattr(est, "mothernet_n_iter_"):
        mother_p = np.array([n_params(a) for a in est.mothernet_hidden_layer_sizes_])
        work += float((est.mothernet_n_iter_ * mother_p).sum())
        seconds += est.mothernet_fit_time_
    return seconds, work / member_p.mean()


methods = {
    "independent (random init)": dict(init="random"),
    "MotherNets, 1 cluster": dict(init="mothernet", n_mothernets=1),
    "MotherNets, 3 clusters": dict(init="mothernet", n_mothernets=3),
}
runs = {}  # name -> (seeds, 3): test error, training seconds, epoch-equivalents
for name, kw in methods.items():
    rows = []
    for seed in range(args.seeds):
        est = NeuralBaggingClassifier(
            n_estimators=len(ARCHS), hidden_layer_sizes=ARCHS, early_stopping=True,
            n_iter_no_change=10, max_iter=args.max_iter, batch_size=200,
            learning_rate_init=1e-3, random_state=seed, **kw,
        )
        est.fit(X_train, y_train)
        seconds, epochs = cost(est)
        rows.append((1 - est.score(X_test, y_test), seconds, epochs))
    runs[name] = np.array(rows)

print(f"digits: {len(y_train)} training, {len(y_test)} test rows; mean ± sd over "
      f"{args.seeds} seed(s)")
print(f"{'method':<28}{'test error':>18}{'seconds':>9}{'epoch-equiv.':>14}{'cost vs indep.':>16}")
base = runs["independent (random init)"][:, 2].mean()
for name, r in runs.items():
    mean, sd = r.mean(axis=0), r.std(axis=0)
    print(f"{name:<28}{mean[0]:>10.4f} ± {sd[0]:.4f}{mean[1]:>9.2f}{mean[2]:>14.1f}"
          f"{mean[2] / base:>15.0%}")


def pareto_front(points):
    """The (cost, error) points no other point beats on both: sorted by cost, error falling."""
    front = []
    for x, err in sorted(points):
        if not front or err < front[-1][1]:
            front.append((x, err))
    return front


fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharey=True)
for ax, (k, xlabel) in zip(axes, [(2, "training cost (epoch-equivalents, MotherNets included)"),
                                  (1, "training seconds (MotherNets included)")]):
    for colour, (name, r) in zip(["tab:blue", "tab:red", "tab:orange"], runs.items()):
        mean, sd = r.mean(axis=0), r.std(axis=0)
        ax.scatter(r[:, k], r[:, 0], s=12, color=colour, alpha=0.45)
        ax.errorbar(mean[k], mean[0], yerr=sd[0], fmt="o", ms=8, capsize=4, color=colour,
                    label=f"{name}: mean ± sd")
    front = pareto_front([(r[:, k].mean(), r[:, 0].mean()) for r in runs.values()])
    ax.step([x for x, _ in front], [e for _, e in front], where="post", color="0.35", lw=5,
            alpha=0.25, zorder=0, label="Pareto front of the means")
    ax.scatter([], [], s=12, color="0.5", label="one seed")
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)
axes[0].set_ylabel("test error (fraction misclassified)")
fig.suptitle(f"Digits, 8 members of different architectures. Markers: mean over {args.seeds} "
             f"training seeds; error bars: ± 1 sd over those seeds (same test rows);\n"
             "small dots: single seeds; grey staircase: Pareto front (lowest error at or below "
             "each cost). Lower-left is better.", fontsize=10)
# One legend below the axes, where it covers no data.
handles, labels = axes[0].get_legend_handles_labels()
fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
fig.tight_layout(rect=(0, 0.1, 1, 1))
args.out.mkdir(parents=True, exist_ok=True)
path = args.out / "mothernets_pareto.png"
fig.savefig(path, dpi=110)
print(f"saved {path}")
# The printed figures, for the documentation's check (benchmarks/check_docs.py).
figures = {"seeds": args.seeds, "n_train": len(y_train), "n_test": len(y_test), "methods": {}}
for name, r in runs.items():
    mean, sd = r.mean(axis=0), r.std(axis=0)
    figures["methods"][name] = {
        "test_error": {"mean": float(mean[0]), "sd": float(sd[0])},
        "seconds": float(mean[1]), "epoch_equivalents": float(mean[2]),
        "cost_vs_independent": float(mean[2] / base),
    }
(args.out / "mothernets_pareto.json").write_text(json.dumps(figures, indent=1) + "\n")
print(f"saved {args.out / 'mothernets_pareto.json'}")
