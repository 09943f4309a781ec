"""MotherNets: trade a little accuracy for much less training, on an accuracy/cost plot.

An ensemble of 8 MLPs of *different* architectures on scikit-learn's digits data,
trained three ways with early stopping: independently from random initialisations,
and with MotherNets (``init="mothernet"``) using 1 and 2 clusters of architectures --
a small network per cluster is trained first, then every member is grown from it by
function-preserving widening/deepening and trained further. For each, the test error
and the total training cost (seconds and epoch-equivalents, the MotherNets' own
training included) are printed, averaged over 2 seeds, and plotted as a Pareto chart
saved to ``examples/images/mothernets_pareto.png``. benchmarks/bench_mothernets.py is
the full study (more data sets, seeds and baselines).

    python examples/mothernets_pareto.py
"""

import sys
import time
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
    "MotherNets, 2 clusters": dict(init="mothernet", n_mothernets=2),
}
results = {}
for name, kw in methods.items():
    runs = []
    for seed in (0, 1):
        est = NeuralBaggingClassifier(
            n_estimators=len(ARCHS), hidden_layer_sizes=ARCHS, early_stopping=True,
            n_iter_no_change=5, max_iter=200, batch_size=64, learning_rate_init=0.003,
            random_state=seed, **kw,
        )
        start = time.perf_counter()
        est.fit(X_train, y_train)
        wall = time.perf_counter() - start
        seconds, epochs = cost(est)
        runs.append((1 - est.score(X_test, y_test), wall, epochs))
    results[name] = np.mean(runs, axis=0), np.std(runs, axis=0)

print(f"{'method':<28}{'test error':>16}{'seconds':>9}{'epoch-equiv.':>14}{'cost vs indep.':>16}")
base = results["independent (random init)"][0][2]
for name, (mean, std) in results.items():
    print(f"{name:<28}{mean[0]:>9.4f} ± {std[0]:.4f}{mean[1]:>9.2f}{mean[2]:>14.1f}"
          f"{mean[2] / base:>15.0%}")

fig, ax = plt.subplots(figsize=(7, 4.5))
for name, (mean, std) in results.items():
    ax.errorbar(mean[2], mean[0], yerr=std[0], fmt="o", capsize=3, label=name)
ax.set_xlabel("training cost (epoch-equivalents, MotherNets included)")
ax.set_ylabel("test error")
ax.set_title("Digits, 8 members of different architectures")
ax.legend()
fig.tight_layout()
out = (Path(sys.argv[1]) if len(sys.argv) > 1
       else Path(__file__).parent / "images" / "mothernets_pareto.png")
out.parent.mkdir(parents=True, exist_ok=True)
fig.savefig(out, dpi=110)
print(f"saved {out}")
