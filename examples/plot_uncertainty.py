"""Uncertainty from member disagreement: the predictive band widens away from the data.

A 1-D regression with training data only in two intervals. Every member of a
``NeuralBaggingRegressor`` fits the data, but outside it the members extrapolate
differently; ``predict(X, return_std=True)`` returns their mean and standard
deviation. The picture shows the band narrow where there is data and widening in the
gap and beyond the ends; it is written as ``uncertainty.png`` to ``--out`` (default: the
current folder), and the printed figures to ``uncertainty.json`` beside it.

    python examples/plot_uncertainty.py [--out DIR]
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from skensemble import NeuralBaggingRegressor

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--out", type=Path, default=Path("."), help="folder for the picture (default: .)")
args = parser.parse_args()

rng = np.random.RandomState(0)
x = np.concatenate([rng.uniform(-3, -1, 150), rng.uniform(1, 3, 150)])
y = np.sin(2 * x) + 0.3 * x + 0.1 * rng.normal(size=x.size)

reg = NeuralBaggingRegressor(
    n_estimators=40, hidden_layer_sizes=(64, 64), activation="relu", bootstrap=True,
    max_iter=400, learning_rate_init=0.01, batch_size=32, random_state=0,
)
reg.fit(x[:, None], y)

grid = np.linspace(-6, 6, 400)
mean, std = reg.predict(grid[:, None], return_std=True)
inside = (np.abs(grid) > 1.2) & (np.abs(grid) < 2.8)
figures = {"fit_s": reg.fit_time_, "engine": reg.engine_, "n_iter": int(reg.n_iter_),
           "std_data": float(std[inside].mean()), "std_gap": float(std[np.abs(grid) < 0.5].mean()),
           "std_beyond": float(std[np.abs(grid) > 5].mean())}
print(f"fit: {reg.fit_time_:.1f} s, engine {reg.engine_}, {reg.n_iter_} epochs")
print(f"mean std where there is data: {figures['std_data']:.3f}; in the gap |x| < 0.5: "
      f"{figures['std_gap']:.3f}; beyond |x| > 5: {figures['std_beyond']:.3f}")

fig, ax = plt.subplots(figsize=(8, 4.5))
ax.fill_between(grid, mean - 2 * std, mean + 2 * std, color="tab:blue", alpha=0.25,
                label="mean ± 2 std over members")
for member in reg.predict_members(grid[:, None])[:8]:
    ax.plot(grid, member, color="tab:blue", lw=0.6, alpha=0.5)
ax.plot(grid, mean, color="tab:blue", lw=2, label="ensemble mean")
ax.scatter(x, y, s=6, color="black", label="training data")
ax.set_ylim(-6, 6)
ax.set_xlabel("x")
ax.set_ylabel("y")
ax.set_title("NeuralBaggingRegressor: 40 members, predictive band from their disagreement")
ax.legend(loc="upper left")
fig.tight_layout()
args.out.mkdir(parents=True, exist_ok=True)
path = args.out / "uncertainty.png"
fig.savefig(path, dpi=110)
print(f"saved {path}")
# The printed figures, for the documentation's check (benchmarks/check_docs.py).
(args.out / "uncertainty.json").write_text(json.dumps(figures, indent=1) + "\n")
print(f"saved {args.out / 'uncertainty.json'}")
