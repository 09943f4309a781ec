"""A grid of fits whose predictions must not change when the code is only reorganised.

``python tests/bitwise_grid.py --write`` fits every configuration of :data:`GRID` on tiny
data and stores the predictions in ``tests/data/bitwise_predictions.npz``;
``tests/test_bitwise.py`` refits them and compares. The file was written at commit
0f0dba2 (before the fit pipeline, optimizer and hyperparameter registry were reorganised,
issue 23), from a worktree of that commit, with one change applied there: the numba
kernel's ``_backward_accumulate_layer`` compiled without reassociation. Without it a
freshly compiled kernel and one loaded from numba's disk cache gave different last bits
for tanh (tests/test_kernels_numba.py now checks that they agree), so no fixture could
hold for both. The test shows that the reorganisation left every prediction bit for bit
as it was on the CPU.

Each entry: name -> (task, estimator kwargs, how to fit). ``how`` is one of ``"fit"``,
``"warm_more"`` (fit, then ``warm_start`` with more members), ``"warm_same"`` (fit, then
``warm_start`` with the same members: resumed training), ``"partial"`` (three
``partial_fit`` calls) or ``"weighted"`` (fit with sample weights).
"""

import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "data" / "bitwise_predictions.npz"

# learning_rate="constant" and n_bins=8: the defaults then. The size-aware default
# learning_rate="auto" that came later anneals small data (tests/test_size_defaults.py binds
# it to the explicit values it resolves to), and n_bins became 24; pinned here, the grid
# keeps checking what it was written for.
BASE = dict(n_estimators=3, hidden_layer_sizes=(8,), max_iter=6, random_state=0,
            learning_rate="constant", n_bins=8)

GRID = {
    "reg_default": ("reg", {}, "fit"),
    "clf_default": ("clf", {}, "fit"),
    "reg_none_standard": ("reg", dict(numeric_encoding="none", input_scaling="standard"), "fit"),
    "clf_none": ("clf", dict(numeric_encoding="none"), "fit"),
    "reg_bins4": ("reg", dict(n_bins=4), "fit"),
    "reg_batched": ("reg", dict(engine="batched"), "fit"),
    "clf_batched": ("clf", dict(engine="batched"), "fit"),
    "reg_reference": ("reg", dict(engine="reference"), "fit"),
    "reg_batch1": ("reg", dict(batch_size=1, max_iter=2), "fit"),
    "reg_batch200": ("reg", dict(batch_size=200), "fit"),
    "reg_sgd_adaptive": ("reg", dict(solver="sgd", learning_rate="adaptive",
                                     learning_rate_init=0.01, n_iter_no_change=2), "fit"),
    "reg_sgd_invscaling": ("reg", dict(solver="sgd", learning_rate="invscaling",
                                       learning_rate_init=0.05, nesterovs_momentum=False), "fit"),
    "reg_cosine": ("reg", dict(learning_rate="warmup_cosine"), "fit"),
    "reg_plateau": ("reg", dict(plateau_decays=2, n_iter_no_change=2, max_iter=12,
                                early_stopping=True), "fit"),
    "reg_tanh_wd": ("reg", dict(activation="tanh", weight_decay=0.01, alpha=0.0), "fit"),
    "clf_logistic": ("clf", dict(activation="logistic", label_smoothing=0.1), "fit"),
    "reg_two_layers": ("reg", dict(hidden_layer_sizes=(8, 5)), "fit"),
    "reg_hetero": ("reg", dict(hidden_layer_sizes=[(8,), (5, 4), (6,)]), "fit"),
    "reg_bootstrap_oob": ("reg", dict(bootstrap=True, oob_score=True, n_estimators=4), "fit"),
    "clf_bootstrap_oob": ("clf", dict(bootstrap=True, oob_score=True, n_estimators=4), "fit"),
    "reg_max_features": ("reg", dict(max_features=0.5, max_samples=0.7), "fit"),
    "reg_bootstrap_features": ("reg", dict(max_features=3, bootstrap_features=True), "fit"),
    "reg_early": ("reg", dict(early_stopping=True, n_iter_no_change=2, max_iter=10), "fit"),
    "clf_early": ("clf", dict(early_stopping=True, n_iter_no_change=2, max_iter=10), "fit"),
    "reg_selection": ("reg", dict(n_estimators=5, early_stopping=True, ensemble_selection=10),
                      "fit"),
    "clf_selection_boot": ("clf", dict(n_estimators=5, bootstrap=True, ensemble_selection=10),
                           "fit"),
    "reg_prune": ("reg", dict(n_estimators=6, early_stopping=True, prune="halving",
                              n_iter_no_change=2, max_iter=10), "fit"),
    "reg_member_auto": ("reg", dict(n_estimators=5, member_params="auto"), "fit"),
    "clf_member_all": ("clf", dict(n_estimators=6, member_params={
        "learning_rate_init": [1e-3, 3e-3], "alpha": [1e-5, 1e-3],
        "hidden_layer_sizes": [(6,), (8, 4)], "activation": ["relu", "tanh"],
        "weight_decay": [0.0, 0.01], "label_smoothing": [0.0, 0.1],
        "max_samples": [0.6, 1.0]}), "fit"),
    "reg_member_inputs": ("reg", dict(n_estimators=5, member_params={
        "numeric_encoding": ["none", "piecewise_linear"], "n_bins": [4, 8]}), "fit"),
    "reg_member_inputs_batched": ("reg", dict(n_estimators=5, engine="batched", member_params={
        "numeric_encoding": ["none", "piecewise_linear"], "n_bins": [4, 8]},
        max_features=0.75), "fit"),
    "reg_mothernet": ("reg", dict(n_estimators=4, init="mothernet",
                                  hidden_layer_sizes=[(8,), (10,)], n_mothernets=1), "fit"),
    "reg_warm_more": ("reg", dict(), "warm_more"),
    "clf_warm_more": ("clf", dict(member_params="auto"), "warm_more"),
    "reg_warm_same": ("reg", dict(), "warm_same"),
    "reg_partial": ("reg", dict(), "partial"),
    "clf_partial": ("clf", dict(), "partial"),
    "reg_weighted": ("reg", dict(), "weighted"),
    "clf_weighted_boot": ("clf", dict(bootstrap=True), "weighted"),
    "reg_multi_output": ("reg2", dict(), "fit"),
    "reg_n_jobs": ("reg", dict(n_estimators=4, n_jobs=2), "fit"),
}
# The same machinery on the scaled values alone (numeric_encoding="none"): since the first
# layers compute the bins from the values (issue 24), only these stay bit for bit; the
# encoded entries above agree to float32 rounding (tests/test_bitwise.py).
NONE = dict(numeric_encoding="none")
GRID.update({
    f"{name}_none": (task, {**kwargs, **NONE}, how)
    for name, (task, kwargs, how) in list(GRID.items())
    if "numeric_encoding" not in kwargs and "member_params" not in kwargs
    or name in ("reg_member_auto", "clf_member_all")
})


def data(task):
    """Tiny data (train X, train y, test X) of a task: 'reg', 'reg2' (two outputs) or 'clf'."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(160, 5))
    X[:, 3] = rng.randint(0, 2, size=160)  # a binary feature (gets no bins)
    X[:, 4] = np.exp(X[:, 4])  # a heavy tail
    Xt = rng.normal(size=(40, 5))
    Xt[:, 3] = rng.randint(0, 2, size=40)
    Xt[:, 4] = np.exp(Xt[:, 4])
    if task == "clf":
        y = np.where(X[:, 0] + 0.5 * X[:, 1] > 0, "yes", "no").astype(object)
        y[X[:, 2] > 1.0] = "maybe"
        return X, y, Xt
    y = X[:, 0] - 2 * X[:, 1] + 0.3 * np.sin(3 * X[:, 2]) + X[:, 3]
    if task == "reg2":
        y = np.stack([y, X[:, 4] - X[:, 0]], axis=1)
    return X, y, Xt


def run(name):
    """Fit configuration ``name`` and return its predictions on the test rows (float64)."""
    from skensemble import NeuralBaggingClassifier, NeuralBaggingRegressor

    task, kwargs, how = GRID[name]
    X, y, Xt = data(task)
    cls = NeuralBaggingClassifier if task == "clf" else NeuralBaggingRegressor
    est = cls(**{**BASE, **kwargs})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if how == "fit":
            est.fit(X, y)
        elif how == "weighted":
            sw = np.random.RandomState(1).uniform(0.0, 2.0, size=len(y))
            est.fit(X, y, sample_weight=sw)
        elif how == "warm_more":
            est.fit(X, y)
            est.set_params(warm_start=True, n_estimators=est.n_estimators + 2).fit(X, y)
        elif how == "warm_same":
            est.fit(X, y)
            est.set_params(warm_start=True, max_iter=3).fit(X, y)
        elif how == "partial":
            extra = {"classes": np.unique(y)} if task == "clf" else {}
            est.partial_fit(X, y, **extra)
            est.partial_fit(X[:100], y[:100])
            est.partial_fit(X, y)
    out = est.predict_proba(Xt) if task == "clf" else est.predict(Xt)
    return np.asarray(out, dtype=np.float64)


def main():
    if "--write" not in sys.argv:
        print(__doc__)
        return
    import torch

    torch.set_num_threads(1)
    results = {name: run(name) for name in GRID}
    FIXTURE.parent.mkdir(exist_ok=True)
    np.savez_compressed(FIXTURE, **results)
    print(f"wrote {len(results)} predictions to {FIXTURE}")


if __name__ == "__main__":
    main()
