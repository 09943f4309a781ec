"""A hyperparameter ensemble in one fit: members draw their own settings, selection keeps some.

Every member of a ``NeuralBaggingRegressor`` draws its own learning rate, L2 strength,
architecture and activation from ``member_params`` (a search space, as
``RandomizedSearchCV`` takes one); all of them train at once, each stopping on its own
hold-out rows. Ensemble selection (``ensemble_selection``: greedy forward selection,
Caruana et al. 2004, bagged over resamples of the rows) then weighs the members on those
rows. The picture shows every member by its learning
rate and L2 strength, its marker by architecture, its colour by activation and its size
by the weight selection gave it (crosses: weight 0), and is written as
``hyperparameter_ensemble.png``
to ``--out`` (default: the current folder), and the printed figures to
``hyperparameter_ensemble.json`` beside it. The data are scikit-learn's Friedman #1
regression problem (generated, nothing downloaded).

    python examples/hyperparameter_ensemble.py [--out DIR] [--members N] [--max-iter N]
"""

# The gallery's thumbnail (a static picture: the documentation build does not run this example)
# sphinx_gallery_thumbnail_path = "../examples/images/hyperparameter_ensemble.png"

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import loguniform
from sklearn.datasets import make_friedman1
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split

from skensemble import NeuralBaggingRegressor

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--out", type=Path, default=Path("."), help="folder for the picture (default: .)")
parser.add_argument("--members", type=int, default=48, help="ensemble size (default: 48)")
parser.add_argument("--max-iter", type=int, default=200, help="epochs at most (default: 200)")
args = parser.parse_args()

X, y = make_friedman1(n_samples=3000, noise=1.0, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)

# A wide space on purpose: some corners (strong L2, slow rates, logistic units) are
# clearly worse here, which is what the selection can find on its own rows.
space = {
    "learning_rate_init": loguniform(1e-4, 1e-2),
    "alpha": loguniform(1e-6, 1e-1),
    "hidden_layer_sizes": [(32,), (64,), (64, 64)],
    "activation": ["relu", "tanh", "logistic"],
}
reg = NeuralBaggingRegressor(n_estimators=args.members, member_params=space,
                             ensemble_selection=50, max_iter=args.max_iter, random_state=0)
reg.fit(X_train, y_train)

weights = reg.ensemble_weights_
members = reg.predict_members(X_test)  # (n_members, n_test): every member, unweighted
uniform = members.mean(axis=0)
print(f"{args.members} members, {int((weights > 0).sum())} kept by selection")
print(f"validation MSE (standardised targets): selected {reg.selection_score_:.4f}, "
      f"uniform average {reg.uniform_score_:.4f}")
test_selected, test_uniform = r2_score(y_test, reg.predict(X_test)), r2_score(y_test, uniform)
print(f"test R^2: selected {test_selected:.4f}, uniform average {test_uniform:.4f}")
figures = {"members": args.members, "kept": int((weights > 0).sum()),
           "selection_score": float(reg.selection_score_), "uniform_score": float(reg.uniform_score_),
           "test_r2_selected": float(test_selected), "test_r2_uniform": float(test_uniform),
           "activations": {}}

params = reg.member_params_
lr = np.array([p["learning_rate_init"] for p in params])
alpha = np.array([p["alpha"] for p in params])
archs = [p["hidden_layer_sizes"] for p in params]
acts = [p["activation"] for p in params]
markers = dict(zip(sorted(set(archs), key=lambda a: (len(a), a)), "os^Dv<>ph"))
colours = {"relu": "tab:blue", "tanh": "tab:orange", "logistic": "tab:green"}

fig, ax = plt.subplots(figsize=(7.5, 4.8))
for arch, marker in markers.items():
    for act, colour in colours.items():
        mine = np.array([a == arch and f == act for a, f in zip(archs, acts)])
        kept = mine & (weights > 0)
        ax.scatter(lr[kept], alpha[kept], s=40 + 1500 * weights[kept], marker=marker,
                   color=colour, alpha=0.7, label=f"{arch}, {act}")
        dropped = mine & (weights == 0)
        ax.scatter(lr[dropped], alpha[dropped], marker="x", color="grey", s=25)
ax.scatter([], [], marker="x", color="grey", label="weight 0")
for act in colours:
    kept = [w for w, f in zip(weights, acts) if f == act]
    print(f"{act}: {len(kept)} members, total selection weight {sum(kept):.2f}")
    figures["activations"][act] = {"members": len(kept), "weight": float(sum(kept))}
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("learning_rate_init")
ax.set_ylabel("alpha (L2)")
ax.set_title("Members by drawn hyperparameters; marker area = selection weight")
legend = ax.legend(title="hidden layers, activation", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
for handle in legend.legend_handles:  # one marker size in the legend, not the first weight
    handle.set_sizes([40])
fig.tight_layout()
args.out.mkdir(parents=True, exist_ok=True)
fig.savefig(args.out / "hyperparameter_ensemble.png", dpi=110)
print(f"saved {args.out / 'hyperparameter_ensemble.png'}")
# The printed figures, for the documentation's check (benchmarks/check_docs.py).
(args.out / "hyperparameter_ensemble.json").write_text(json.dumps(figures, indent=1) + "\n")
print(f"saved {args.out / 'hyperparameter_ensemble.json'}")
