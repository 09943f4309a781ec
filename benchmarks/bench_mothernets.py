"""MotherNets against independent training, Snapshot Ensembles and one network.

What it shows
-------------
Test error against total training cost, the MotherNets' own training included, for
an ensemble of ten DIFFERENT architectures,
``(64,) (64, 32) (128, 64) (128, 64, 32) (32,) (128,) (96, 48) (32, 32) (256,) (64, 64)``
(relu, adam, lr 1e-3, batch 200, alpha 1e-4), on three data sets available offline:

* ``digits``: scikit-learn's 8x8 digits, 1,797 x 64, 10 classes; error = % misclassified;
* ``breast_cancer``: 569 x 30, 2 classes; error = % misclassified;
* ``friedman1``: synthetic regression, 10,000 x 10 (``make_friedman1``, noise sd 1.0,
  five of the ten features informative); error = test RMSE (the noise floor is 1.0).

Each split is fixed (25 % test, stratified for classification, ``random_state=0``);
the seeds (0, 1, 2 by default) change only the training randomness (initialisation,
bootstrap rows, validation rows, order), so the spread is the seed-to-seed spread of
training, and every method sees the same test rows.

Methods (all skensemble fits use ``early_stopping=True``, ``n_iter_no_change=10``,
``tol=1e-4``, ``max_iter=200``: every network stops when its validation loss stops
improving and keeps its best weights):

* ``single``: one ``(128, 64)`` network (``n_estimators=1``), 10 % held out;
* ``indep bag``: independent training, ``init="random"``, ``bootstrap=True`` (each
  member validates on its out-of-bag rows);
* ``indep full``: independent training, ``bootstrap=False`` (each member holds out its
  own 10 % for validation);
* ``MN1 bag``, ``MN3 bag``, ``MN1 full``, ``MN3 full``: ``init="mothernet"`` with
  ``n_mothernets`` 1 or 3, bagged or not (the MotherNets paper trains the hatched
  members on all the data, i.e. ``full``). With these architectures one cluster gives
  the MotherNet ``(32,)``; three give ``(32,)``, ``(64, 32)`` (``(32, 32)`` on
  friedman1) and ``(128,)``. Each MotherNet trains on all training rows with 10 %
  held out for early stopping;
* ``snapshot c=10`` and ``snapshot c=40``: Snapshot Ensembles (Huang et al., ICLR
  2017) of one ``(128, 64)`` network: SGD with Nesterov momentum 0.9 from lr0 = 0.1,
  annealed per step with a cosine over cycles of ``c`` epochs,
  ``lr(t) = lr0 / 2 * (cos(pi * (t mod T_c) / T_c) + 1)`` (``T_c`` steps per cycle),
  restarted at lr0 after each cycle; the weights at the end of each cycle are one
  snapshot; the prediction averages the first m snapshots' softmax probabilities (or
  outputs), m = 1..10, so one run gives ten (cost, error) points. A fixed budget, no
  early stopping, trained on all training rows. Written here in plain torch (same
  Glorot-uniform initialisation, input/target standardisation, loss and L2 penalty as
  skensemble's MLPs), because skensemble keeps the learning rate that a member was
  created with: ``set_params(learning_rate_init=...)`` between ``partial_fit`` calls
  or warm-started fits is ignored, so the library cannot be driven along a cosine
  schedule from outside. Its seconds are plain-torch seconds of one network, an
  implementation different from skensemble's batched engine (run with the thread count
  skensemble would pick for a step of that size: one thread below ~2M multiply-adds);
  the epoch-equivalents are implementation-free.

Cost
----
* ``seconds``: the training loops only: ``fit_time_ + mothernet_fit_time_`` for
  skensemble (members, plus the MotherNets' training); the SGD loop for snapshots
  (their test predictions are not timed). Set-up, hatching and prediction are excluded
  (the JSON also has the wall time of each whole ``fit``).
* ``epoch-equivalents`` (EE), proportional to training FLOPs (one row through
  forward + backward costs about 6 P flops in a net of P parameters)::

      EE = sum over every network trained (members and MotherNets) of
           epochs_i * rows_per_epoch_i * P_i  /  (P_avg * N_train)

  ``P_i`` the parameters (weights and biases) of network i at its own architecture,
  ``P_avg`` the mean parameter count of the ten member architectures on that data set,
  ``N_train`` the training rows, ``rows_per_epoch_i`` the rows it trained on per epoch
  (N_train for bootstrap draws and snapshots, 90 % of N_train when 10 % is held out).
  So one EE is one pass of an average member over the training set; an ensemble whose
  ten members each ran 50 epochs costs about 500 EE. Validation forward passes are not
  counted (one forward pass of the 10 % held-out or ~37 % out-of-bag rows adds 3-12 %
  to each member-epoch, the same for every skensemble method). Padding inside skensemble's stacked
  groups makes its seconds grow with the widest member of a depth group, not with
  ``P_i``: EE is the algorithm's cost, seconds are this implementation's.

Targets (printed with PASS/FAIL)
--------------------------------
1. "MotherNets reaches the independent ensemble's test error (within the seed-to-seed
   spread) at at most 60 % of its training cost": for each MotherNets variant against
   the independent ensemble trained the same way (bag vs bag, full vs full):
   ``mean_err(MN) <= mean_err(indep) + sd_err(indep)`` (sd over seeds) and
   ``EE(MN) <= 0.6 * EE(indep)``; the seconds ratio (medians over seeds) is printed
   beside it.
2. "beats Snapshot Ensembles' error at equal cost": the best mean error of any snapshot
   ensemble (either cycle length, any m) whose mean EE is at most the MotherNets
   variant's mean EE; MotherNets passes if its mean error is lower.

Outputs: a table (dataset, method, test error mean +- sd over seeds, the members' own
mean error (its gap to the ensemble's error is what averaging gains: diversity),
seconds mean and median, epochs per member, EE mean, EE and seconds relative to the
matching independent ensemble), the MotherNets' share of the cost, the verdicts,
``results/mothernets[_quick].png`` (error against EE, top row, and against seconds,
bottom row; one panel per data set; markers are means over seeds, error bars one standard
deviation over seeds, and a grey staircase is the Pareto front of all the means: the
lowest error any method reached at or below each cost) and ``results/mothernets[_quick].json``
(settings, machine, every run's raw numbers).

How to run
----------
    python benchmarks/bench_mothernets.py                 # full run, 3 seeds (~4-8 minutes)
    python benchmarks/bench_mothernets.py --quick         # smoke test: 1 seed (~20-60 s)
    python benchmarks/bench_mothernets.py --seeds 5 --out DIR
    python benchmarks/bench_mothernets.py --replot        # redraw the PNG from the JSON

``--quick`` uses 800 digits rows, 2,000 synthetic rows, ``max_iter=40`` and snapshot
cycles of 3 and 8 epochs (4 snapshots): it checks that everything runs, nothing more.

Seconds are only meaningful on an otherwise idle machine (the script warns when the
load average is high, and prints medians beside means: with other processes on the
cores, a two-threaded torch fit can run 10-80x slower for a while); the
epoch-equivalents do not depend on it.
"""

import argparse
import json
import math
import os
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from _machine import machine_info  # benchmarks/_machine.py
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter
from sklearn.datasets import load_breast_cancer, load_digits, make_friedman1
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from skensemble import NeuralBaggingClassifier, NeuralBaggingRegressor, _dispatch

warnings.filterwarnings("ignore", category=ConvergenceWarning)

ARCHS = [
    (64,),
    (64, 32),
    (128, 64),
    (128, 64, 32),
    (32,),
    (128,),
    (96, 48),
    (32, 32),
    (256,),
    (64, 64),
]
N_MEMBERS = len(ARCHS)
SINGLE_ARCH = (128, 64)  # the single network and the Snapshot Ensembles' network
TEST_SIZE, SPLIT_SEED = 0.25, 0
COMMON = {  # every skensemble fit
    "activation": "relu",
    "solver": "adam",
    "learning_rate_init": 1e-3,
    "batch_size": 200,
    "alpha": 1e-4,
    "early_stopping": True,
    "validation_fraction": 0.1,
    "n_iter_no_change": 10,
    "tol": 1e-4,
    "max_iter": 200,
}
SNAPSHOT = {"lr0": 0.1, "momentum": 0.9, "cycles": (10, 40), "n_snapshots": 10}
SYNTH_ROWS = 10_000
COST_LIMIT = 0.6  # target 1: at most 60 % of the independent ensemble's cost

QUICK = {  # --quick: a smoke test of every code path, not a measurement
    "synth_rows": 2_000,
    "digits_rows": 800,
    "max_iter": 40,
    "cycles": (3, 8),
    "n_snapshots": 4,
}

# name, label, estimator parameters, the independent ensemble its cost is compared with
METHODS = [
    (
        "single",
        "single (128, 64)",
        {"n_estimators": 1, "hidden_layer_sizes": SINGLE_ARCH},
        "indep full",
    ),
    ("indep bag", "independent, bagged", {"init": "random", "bootstrap": True}, "indep bag"),
    ("indep full", "independent, not bagged", {"init": "random", "bootstrap": False}, "indep full"),
    (
        "MN1 bag",
        "MotherNets 1 cluster, bagged",
        {"init": "mothernet", "n_mothernets": 1, "bootstrap": True},
        "indep bag",
    ),
    (
        "MN3 bag",
        "MotherNets 3 clusters, bagged",
        {"init": "mothernet", "n_mothernets": 3, "bootstrap": True},
        "indep bag",
    ),
    (
        "MN1 full",
        "MotherNets 1 cluster, not bagged",
        {"init": "mothernet", "n_mothernets": 1, "bootstrap": False},
        "indep full",
    ),
    (
        "MN3 full",
        "MotherNets 3 clusters, not bagged",
        {"init": "mothernet", "n_mothernets": 3, "bootstrap": False},
        "indep full",
    ),
]
MN_METHODS = [m[0] for m in METHODS if m[0].startswith("MN")]
REFERENCE = {m[0]: m[3] for m in METHODS}


# --------------------------------------------------------------------------- data
def load_datasets(quick):
    """The three tasks, each split once (fixed test rows for every seed and method)."""
    out = []
    specs = [
        ("digits", "classification", *load_digits(return_X_y=True)),
        ("breast_cancer", "classification", *load_breast_cancer(return_X_y=True)),
        (
            "friedman1",
            "regression",
            *make_friedman1(
                QUICK["synth_rows"] if quick else SYNTH_ROWS,
                n_features=10,
                noise=1.0,
                random_state=0,
            ),
        ),
    ]
    for name, task, X, y in specs:
        if quick and name == "digits":
            X, y = X[: QUICK["digits_rows"]], y[: QUICK["digits_rows"]]
        X_tr, X_te, y_tr, y_te = train_test_split(
            X,
            y,
            test_size=TEST_SIZE,
            random_state=SPLIT_SEED,
            stratify=y if task == "classification" else None,
        )
        n_out = len(np.unique(y)) if task == "classification" else 1
        sizes = [(X.shape[1], *a, n_out) for a in ARCHS]
        out.append(
            {
                "name": name,
                "task": task,
                "X_train": X_tr,
                "X_test": X_te,
                "y_train": y_tr,
                "y_test": y_te,
                "n_features": X.shape[1],
                "n_outputs": n_out,
                "p_avg": float(np.mean([n_params(s) for s in sizes])),
                "error_name": "% misclassified" if task == "classification" else "RMSE",
            }
        )
    return out


def n_params(sizes):
    """Weights and biases of an MLP with full layer sizes ``(F, H..., O)``."""
    return int(sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True)))


def held_out_rows(n_rows, fraction):
    """Training rows left per epoch when ``fraction`` is held out (as skensemble does)."""
    return n_rows - int(math.ceil(fraction * n_rows))


def test_error(task, y_true, y_pred):
    """% misclassified, or RMSE."""
    if task == "classification":
        return 100.0 * float(np.mean(y_true != y_pred))
    return float(np.sqrt(np.mean((np.asarray(y_true) - y_pred) ** 2)))


# ---------------------------------------------------------------------- skensemble
def run_library(data, params, seed, max_iter):
    """Fit one skensemble configuration; its error, seconds, epochs and EE."""
    cls = NeuralBaggingClassifier if data["task"] == "classification" else NeuralBaggingRegressor
    est = cls(
        **{
            **COMMON,
            "max_iter": max_iter,
            "n_estimators": N_MEMBERS,
            "hidden_layer_sizes": ARCHS,
            **params,
        },
        random_state=seed,
        device="cpu",
    )
    X, y = data["X_train"], data["y_train"]
    n_train = X.shape[0]
    start = time.perf_counter()
    est.fit(X, y)
    wall = time.perf_counter() - start
    err = test_error(data["task"], data["y_test"], est.predict(data["X_test"]))
    # Mean error of the members on their own: the gap to the ensemble's error is what
    # averaging gains, i.e. how diverse the members are.
    if data["task"] == "classification":
        member_proba = est.predict_proba_members(data["X_test"])  # (E, n, K)
        member_pred = [est.classes_[p.argmax(1)] for p in member_proba]
    else:
        member_pred = list(est.predict_members(data["X_test"]))  # E x (n,)
    member_err = float(np.mean([test_error(data["task"], data["y_test"], p) for p in member_pred]))

    # Cost: every member at its own architecture, then the MotherNets (if any).
    member_p = [
        sum(W.size + b.size for W, b in zip(*est.get_member_params(e), strict=True))
        for e in range(est.n_estimators)
    ]
    member_epochs = np.asarray(est.n_iter_per_member_, dtype=np.int64)
    rows_per_epoch = est.t_ / est.n_iter_  # rows each member drew per epoch
    flops = float(np.sum(member_epochs * rows_per_epoch * np.asarray(member_p)))
    mother_seconds, mother = 0.0, None
    if params.get("init") == "mothernet":
        n_in, n_out = data["n_features"], data["n_outputs"]
        mother_p = [n_params((n_in, *a, n_out)) for a in est.mothernet_hidden_layer_sizes_]
        mother_epochs = np.asarray(est.mothernet_n_iter_, dtype=np.int64)
        # MotherNets hold out validation_fraction for early stopping when >= 2 rows.
        frac = COMMON["validation_fraction"]
        mother_rows = held_out_rows(n_train, frac) if n_train * frac >= 2 else n_train
        mother_flops = float(np.sum(mother_epochs * mother_rows * np.asarray(mother_p)))
        flops += mother_flops
        mother_seconds = float(est.mothernet_fit_time_)
        mother = {
            "archs": [list(a) for a in est.mothernet_hidden_layer_sizes_],
            "labels": est.mothernet_labels_.tolist(),
            "params": mother_p,
            "epochs": mother_epochs.tolist(),
            "seconds": mother_seconds,
            "ee": mother_flops / (data["p_avg"] * n_train),
        }
    return {
        "error": err,
        "member_error": member_err,
        "seconds": float(est.fit_time_) + mother_seconds,
        "member_seconds": float(est.fit_time_),
        "fit_wall_s": wall,
        "ee": flops / (data["p_avg"] * n_train),
        "member_epochs": member_epochs.tolist(),
        "member_params": member_p,
        "epochs_per_member": float(member_epochs.mean()),
        "rows_per_epoch": float(rows_per_epoch),
        "mothernets": mother,
        "engine": str(est.engine_),
        "load_1min": os.getloadavg()[0],
    }


# ------------------------------------------------------------------ snapshots
def _mlp(sizes, gen):
    """``nn.Sequential`` relu MLP, Glorot-uniform weights and biases (skensemble's init)."""
    layers = []
    for i, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        lin = torch.nn.Linear(fi, fo)
        bound = math.sqrt(6.0 / (fi + fo))
        with torch.no_grad():
            lin.weight.copy_((torch.rand(fo, fi, generator=gen) * 2 - 1) * bound)
            lin.bias.copy_((torch.rand(fo, generator=gen) * 2 - 1) * bound)
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def run_snapshots(data, seed, cycle_epochs, n_snapshots):
    """Snapshot Ensemble of one SINGLE_ARCH network: a (cost, error) point per snapshot.

    The ensemble of the first m snapshots is the m-cycle Snapshot Ensemble: its cost
    is m cycles of training, its prediction the mean of m snapshots' probabilities.
    """
    task = data["task"]
    X, y = data["X_train"], data["y_train"]
    mean, scale = X.mean(0), X.std(0)
    scale[scale == 0] = 1.0
    Xt = torch.as_tensor((X - mean) / scale, dtype=torch.float32)  # (N, F)
    Xte = torch.as_tensor((data["X_test"] - mean) / scale, dtype=torch.float32)  # (n, F)
    if task == "classification":
        classes = np.unique(y)
        Yt = torch.as_tensor(np.searchsorted(classes, y), dtype=torch.long)  # (N,)
    else:
        y_mean, y_scale = float(y.mean()), float(y.std())
        Yt = torch.as_tensor((y - y_mean) / y_scale, dtype=torch.float32)[:, None]  # (N, 1)
    n_rows = Xt.shape[0]
    batch = min(COMMON["batch_size"], n_rows)
    steps_per_epoch = math.ceil(n_rows / batch)
    steps_per_cycle = cycle_epochs * steps_per_epoch  # T_c
    gen = torch.Generator().manual_seed(seed)
    sizes = (data["n_features"], *SINGLE_ARCH, data["n_outputs"])
    model = _mlp(sizes, gen)
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    opt = torch.optim.SGD(
        model.parameters(), lr=SNAPSHOT["lr0"], momentum=SNAPSHOT["momentum"], nesterov=True
    )
    lr0, alpha = SNAPSHOT["lr0"], COMMON["alpha"]
    outputs, seconds, elapsed = [], [], 0.0
    # Threads as skensemble picks them for a step of the same size (one thread for tiny
    # steps): on a busy 2-core machine two threads on tiny matmuls can run 10-80x slower.
    threads = _dispatch.default_threads(n_params(sizes) * batch)
    for _ in range(n_snapshots):
        start = time.perf_counter()
        model.train()
        with _dispatch.thread_limit(threads, "batched"):
            for epoch in range(cycle_epochs):
                perm = torch.randperm(n_rows, generator=gen)
                for s in range(steps_per_epoch):
                    t = epoch * steps_per_epoch + s  # step within the cycle
                    for group in opt.param_groups:
                        group["lr"] = lr0 / 2 * (math.cos(math.pi * t / steps_per_cycle) + 1)
                    idx = perm[s * batch : (s + 1) * batch]  # (B,)
                    out = model(Xt[idx])  # (B, O)
                    if task == "classification":
                        loss = torch.nn.functional.cross_entropy(out, Yt[idx])
                    else:
                        loss = 0.5 * ((out - Yt[idx]) ** 2).sum(1).mean()
                    # skensemble's (and scikit-learn's) L2: 0.5 * alpha * ||W||^2 / batch
                    loss = loss + 0.5 * alpha / len(idx) * sum((w * w).sum() for w in weights)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
        elapsed += time.perf_counter() - start
        seconds.append(elapsed)
        model.eval()
        with torch.no_grad():
            out = model(Xte)  # (n, O)
            if task == "classification":
                outputs.append(torch.softmax(out, 1).double().numpy())
            else:
                outputs.append(out[:, 0].double().numpy() * y_scale + y_mean)
    p_snap = n_params(sizes)

    def predicted(out):  # probabilities (n, K) or values (n,) -> predictions (n,)
        return classes[out.argmax(1)] if task == "classification" else out

    single = [test_error(task, data["y_test"], predicted(o)) for o in outputs]
    points = []
    for m in range(1, n_snapshots + 1):
        pred = predicted(np.mean(outputs[:m], axis=0))
        epochs = m * cycle_epochs
        points.append(
            {
                "m": m,
                "epochs": epochs,
                "error": test_error(task, data["y_test"], pred),
                "member_error": float(np.mean(single[:m])),
                "seconds": seconds[m - 1],
                "ee": epochs * p_snap / data["p_avg"],  # all N_train rows every epoch
            }
        )
    return points


# ------------------------------------------------------------------ aggregation
def _sd(values):
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1)) if values.size > 1 else 0.0


def summarise(runs):
    """Mean / sd / median over seeds of each (dataset, method)."""
    summary = {}
    for ds, by_method in runs.items():
        summary[ds] = {}
        for method, seeds in by_method.items():
            if method.startswith("snapshot"):
                n = len(seeds[0])
                summary[ds][method] = [
                    {
                        "m": seeds[0][i]["m"],
                        "epochs": seeds[0][i]["epochs"],
                        "error_mean": float(np.mean([s[i]["error"] for s in seeds])),
                        "error_sd": _sd([s[i]["error"] for s in seeds]),
                        "member_error_mean": float(np.mean([s[i]["member_error"] for s in seeds])),
                        "seconds_mean": float(np.mean([s[i]["seconds"] for s in seeds])),
                        "seconds_median": float(np.median([s[i]["seconds"] for s in seeds])),
                        "ee_mean": float(np.mean([s[i]["ee"] for s in seeds])),
                    }
                    for i in range(n)
                ]
                continue
            err = [r["error"] for r in seeds]
            sec = [r["seconds"] for r in seeds]
            entry = {
                "error_mean": float(np.mean(err)),
                "error_sd": _sd(err),
                "member_error_mean": float(np.mean([r["member_error"] for r in seeds])),
                "seconds_mean": float(np.mean(sec)),
                "seconds_median": float(np.median(sec)),
                "ee_mean": float(np.mean([r["ee"] for r in seeds])),
                "epochs_per_member_mean": float(np.mean([r["epochs_per_member"] for r in seeds])),
                "n_seeds": len(seeds),
            }
            if seeds[0]["mothernets"] is not None:
                entry["mother_ee_mean"] = float(np.mean([r["mothernets"]["ee"] for r in seeds]))
                entry["mother_epochs_mean"] = np.mean(
                    [r["mothernets"]["epochs"] for r in seeds], axis=0
                ).tolist()
                entry["mother_seconds_mean"] = float(
                    np.mean([r["mothernets"]["seconds"] for r in seeds])
                )
            summary[ds][method] = entry
    for ds in summary:  # cost relative to the matching independent ensemble
        for method, entry in summary[ds].items():
            if method.startswith("snapshot"):
                continue
            ref = summary[ds][REFERENCE[method]]
            entry["reference"] = REFERENCE[method]
            entry["ee_rel"] = entry["ee_mean"] / ref["ee_mean"]
            entry["seconds_rel"] = entry["seconds_median"] / ref["seconds_median"]
    return summary


def snapshot_points(summary_ds):
    """Every snapshot ensemble's mean (EE, seconds, error) of one data set."""
    pts = []
    for method, points in summary_ds.items():
        if method.startswith("snapshot"):
            pts += [{**p, "method": method} for p in points]
    return pts


def check_targets(summary, datasets):
    """The two targets for every MotherNets variant and data set."""
    results = []
    for data in datasets:
        ds = data["name"]
        snaps = snapshot_points(summary[ds])
        for method in MN_METHODS:
            mn = summary[ds][method]
            ref = summary[ds][REFERENCE[method]]
            reaches = mn["error_mean"] <= ref["error_mean"] + ref["error_sd"]
            cheap = mn["ee_rel"] <= COST_LIMIT
            affordable = [p for p in snaps if p["ee_mean"] <= mn["ee_mean"]]
            best = min(affordable, key=lambda p: p["error_mean"]) if affordable else None
            affordable_s = [p for p in snaps if p["seconds_median"] <= mn["seconds_median"]]
            best_s = min(affordable_s, key=lambda p: p["error_mean"]) if affordable_s else None
            results.append(
                {
                    "dataset": ds,
                    "method": method,
                    "reference": REFERENCE[method],
                    "error_mean": mn["error_mean"],
                    "error_sd": mn["error_sd"],
                    "reference_error_mean": ref["error_mean"],
                    "reference_error_sd": ref["error_sd"],
                    "ee_rel": mn["ee_rel"],
                    "seconds_rel": mn["seconds_rel"],
                    "target1_error_reached": bool(reaches),
                    "target1_cost_ok": bool(cheap),
                    "target1_pass": bool(reaches and cheap),
                    "snapshot_at_equal_ee": best,
                    "target2_pass": bool(
                        best is not None and mn["error_mean"] < best["error_mean"]
                    ),
                    "snapshot_at_equal_seconds": best_s,
                    "target2_seconds_pass": bool(
                        best_s is not None and mn["error_mean"] < best_s["error_mean"]
                    ),
                }
            )
    return results


# ------------------------------------------------------------------------ report
def _fmt_err(mean, sd, task):
    return f"{mean:6.2f} ± {sd:4.2f}" if task == "classification" else f"{mean:6.3f} ± {sd:5.3f}"


def print_table(summary, datasets, labels):
    head = (
        f"{'dataset':<14} {'method':<37} {'test error':>15} {'member':>7} {'s mean':>7} "
        f"{'s med':>7} {'ep/memb':>7} {'EE mean':>8} {'EE rel':>6} {'s rel':>6}  vs"
    )
    print("\n" + head)
    print("-" * len(head))

    def row(ds, task, label, e, epochs, ee_rel, s_rel, ref):
        print(
            f"{ds:<14} {label:<37} {_fmt_err(e['error_mean'], e['error_sd'], task):>15} "
            f"{e['member_error_mean']:7.3g} {e['seconds_mean']:7.2f} {e['seconds_median']:7.2f} "
            f"{epochs:>7} {e['ee_mean']:8.0f} {ee_rel:6.2f} {s_rel:6.2f}  {ref}"
        )

    for data in datasets:
        ds, task = data["name"], data["task"]
        for method, entry in summary[ds].items():
            if not method.startswith("snapshot"):
                row(
                    ds,
                    task,
                    labels[method],
                    entry,
                    f"{entry['epochs_per_member_mean']:.1f}",
                    entry["ee_rel"],
                    entry["seconds_rel"],
                    entry["reference"],
                )
                continue
            ref = summary[ds]["indep full"]
            for p in entry:  # the half-way and the full snapshot ensemble
                if p["m"] in (entry[len(entry) // 2 - 1]["m"], entry[-1]["m"]):
                    row(
                        ds,
                        task,
                        f"{labels[method]}, M={p['m']}",
                        p,
                        str(p["epochs"]),
                        p["ee_mean"] / ref["ee_mean"],
                        p["seconds_median"] / ref["seconds_median"],
                        "indep full",
                    )
        print(
            f"{'':<14} (error: {data['error_name']}; P_avg = {data['p_avg']:.0f} parameters; "
            f"{len(data['y_train'])} training rows, {len(data['y_test'])} test rows)"
        )
    print(
        "test error: mean ± sd over seeds. member: mean error of the members (snapshots) on "
        "their own; its gap to the test error is what averaging gains. s mean / s med: "
        "seconds of the training loops (members + MotherNets; snapshots: plain torch), mean / "
        "median over seeds. ep/memb: mean epochs per member (snapshots: total epochs). EE: "
        "epoch-equivalents, sum_i epochs_i * rows_i * P_i / (P_avg * N_train), MotherNets "
        "included. EE rel, s rel (medians): relative to the independent ensemble named in 'vs'."
    )


def print_mothers(summary, datasets):
    print("\nMotherNets' share of the cost (mean over seeds)")
    for data in datasets:
        for method in MN_METHODS:
            e = summary[data["name"]][method]
            print(
                f"  {data['name']:<14} {method:<9} MotherNet epochs "
                f"{[round(x) for x in e['mother_epochs_mean']]}, {e['mother_ee_mean']:6.1f} EE of "
                f"{e['ee_mean']:6.1f} ({e['mother_ee_mean'] / e['ee_mean']:.0%}); "
                f"{e['mother_seconds_mean']:.2f} s of {e['seconds_mean']:.2f} s; hatched members "
                f"ran {e['epochs_per_member_mean']:.1f} epochs each"
            )


def print_targets(results, datasets):
    print(
        f"\nTarget 1: MotherNets reaches the independent ensemble's test error (within the "
        f"seed-to-seed sd) at <= {COST_LIMIT:.0%} of its training cost (EE)"
    )
    for r in results:
        ok = "PASS" if r["target1_pass"] else "FAIL"
        print(
            f"  {ok}  {r['dataset']:<14} {r['method']:<9} error {r['error_mean']:.3f} vs "
            f"{r['reference']} {r['reference_error_mean']:.3f} ± {r['reference_error_sd']:.3f} "
            f"({'reached' if r['target1_error_reached'] else 'NOT reached'}); cost "
            f"{r['ee_rel']:.0%} of its EE ({'ok' if r['target1_cost_ok'] else 'too much'}), "
            f"{r['seconds_rel']:.0%} of its seconds"
        )
    print(
        "\nTarget 2: MotherNets beats Snapshot Ensembles' error at equal cost (best snapshot "
        "ensemble whose mean cost is at most MotherNets')"
    )
    for r in results:
        ok = "PASS" if r["target2_pass"] else "FAIL"
        b, bs = r["snapshot_at_equal_ee"], r["snapshot_at_equal_seconds"]
        snap = (
            f"snapshot {b['method'][9:]} M={b['m']} {b['error_mean']:.3f} at {b['ee_mean']:.0f} EE"
            if b
            else "no snapshot ensemble that cheap"
        )
        snap_s = (
            f"{bs['error_mean']:.3f} ({bs['method'][9:]} M={bs['m']})" if bs else "none that fast"
        )
        print(
            f"  {ok}  {r['dataset']:<14} {r['method']:<9} error {r['error_mean']:.3f} vs "
            f"{snap}; in seconds: {'PASS' if r['target2_seconds_pass'] else 'FAIL'} vs {snap_s}"
        )
    print("\nSummary")
    for name, key in (
        ("target 1", "target1_pass"),
        ("target 2 (EE)", "target2_pass"),
        ("target 2 (seconds)", "target2_seconds_pass"),
    ):
        per_ds = []
        for data in datasets:
            met = [r["method"] for r in results if r["dataset"] == data["name"] and r[key]]
            per_ds.append(f"{data['name']}: {', '.join(met) if met else 'none'}")
        n_ds = sum(1 for p in per_ds if not p.endswith("none"))
        print(
            f"  {name:<19} met on {n_ds}/{len(datasets)} data sets by some MotherNets "
            f"variant ({'; '.join(per_ds)})"
        )


STYLE = {  # marker, colour
    "single": ("s", "black"),
    "indep bag": ("o", "tab:blue"),
    "indep full": ("o", "tab:cyan"),
    "MN1 bag": ("^", "tab:red"),
    "MN3 bag": ("v", "tab:red"),
    "MN1 full": ("^", "tab:orange"),
    "MN3 full": ("v", "tab:orange"),
}


def pareto_front(points):
    """The (cost, error) points no other point beats on both: sorted by cost, error falling."""
    front = []
    for x, y in sorted(points):
        if not front or y < front[-1][1]:
            front.append((x, y))
    return front


def plot(summary, datasets, labels, path, n_seeds):
    """Error against EE (top row) and seconds (bottom row), one column per data set.

    ``datasets``: dicts with ``name``, ``error_name`` and ``n_train`` (or ``y_train``).
    """
    fig, axes = plt.subplots(2, len(datasets), figsize=(5.2 * len(datasets), 8.4), squeeze=False)
    for col, data in enumerate(datasets):
        ds = data["name"]
        n_train = data["n_train"] if "n_train" in data else len(data["y_train"])
        for row, (key, xlabel) in enumerate(
            (
                ("ee_mean", "training cost (epoch-equivalents)"),
                ("seconds_median", "training seconds (median)"),
            )
        ):
            ax = axes[row, col]
            for method, entry in summary[ds].items():
                if method.startswith("snapshot"):
                    xs = [p[key] for p in entry]
                    ys = [p["error_mean"] for p in entry]
                    first = method == next(m for m in summary[ds] if m.startswith("snapshot"))
                    style = "-" if first else "--"
                    ax.plot(
                        xs, ys, style, color="tab:green", marker=".", lw=1, label=labels[method]
                    )
                    ax.annotate(
                        f"M={entry[-1]['m']}",
                        (xs[-1], ys[-1]),
                        fontsize=7,
                        color="tab:green",
                        xytext=(3, 3),
                        textcoords="offset points",
                    )
                    continue
                marker, colour = STYLE[method]
                filled = "bag" in method or method == "single"
                ax.errorbar(
                    entry[key],
                    entry["error_mean"],
                    yerr=entry["error_sd"],
                    fmt=marker,
                    color=colour,
                    mfc=colour if filled else "white",
                    ms=8,
                    capsize=3,
                    label=labels[method],
                )
            # The Pareto front over every plotted mean (each method, each snapshot ensemble):
            # the lowest error reached at or below each cost, as a staircase.
            points = [
                (p[key], p["error_mean"])
                for method, entry in summary[ds].items()
                for p in (entry if method.startswith("snapshot") else [entry])
            ]
            front = pareto_front(points)
            ax.step(
                [x for x, _ in front],
                [y for _, y in front],
                where="post",
                color="0.35",
                lw=5,
                alpha=0.25,
                zorder=0,
                solid_capstyle="round",
                label="Pareto front (no point both cheaper and better)",
            )
            ax.set_xscale("log")
            if row == 0:  # target 1 region: below ref error + sd, left of 60 % of its EE
                (x0, _), (y0, _) = ax.get_xlim(), ax.get_ylim()
                for ref in ("indep bag", "indep full"):
                    e = summary[ds][ref]
                    x1, y1 = COST_LIMIT * e["ee_mean"], e["error_mean"] + e["error_sd"]
                    ax.plot([x0, x1, x1], [y1, y1, y0], ":", color=STYLE[ref][1], lw=1.2)
                ax.set_xlim(left=x0)
                ax.set_ylim(bottom=y0)
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"test {data['error_name']}")
            ax.grid(True, which="both", alpha=0.3)
            if row == 0:
                ax.set_title(f"{ds} ({n_train} training rows)")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=6, fontsize=8, frameon=False)
    fig.suptitle(
        f"Test error vs training cost; lower-left is better. Markers: mean over {n_seeds} training"
        f" seeds; error bars: ± 1 standard deviation over those seeds (the test rows are the same"
        f" for every seed).\nGrey staircase: the Pareto front. Snapshot curves: ensembles of the"
        " first m = 1..M snapshots. Dotted corners (top row): target 1 region of each independent"
        " ensemble\n(its error + sd, 60 % of its cost), blue = bagged, cyan = not bagged",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def warm_up(datasets):
    """Untimed tiny fits: first-use costs (thread pools, kernel caches) stay out of timings."""
    for data in datasets:
        small = {**data, "X_train": data["X_train"][:200], "y_train": data["y_train"][:200]}
        run_library(small, {"init": "mothernet", "bootstrap": True}, 0, 2)
        run_snapshots(small, 0, 1, 1)


def replot(out, suffix):
    """Redraw ``mothernets{suffix}.png`` from ``mothernets{suffix}.json`` in ``out``."""
    path = out / f"mothernets{suffix}.json"
    results = json.loads(path.read_text())
    labels = {name: label for name, label, _, _ in METHODS}
    for c in results["settings"]["snapshot"]["cycles"]:
        labels[f"snapshot c={c}"] = f"Snapshot Ens. (128, 64), c={c}"
    datasets = [
        {"name": name, "n_train": d["n_train"], "error_name": d["error"]}
        for name, d in results["datasets"].items()
    ]
    png = path.with_suffix(".png")
    plot(results["summary"], datasets, labels, png, len(results["settings"]["seeds"]))
    print(f"redrew {png} from {path} (written at commit {results['machine']['git_commit']})")


# -------------------------------------------------------------------------- main
def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 1 seed, smaller data, short training"
    )
    parser.add_argument(
        "--seeds", type=int, default=None, help="training seeds 0..n-1 (default 3; 1 with --quick)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results",
        help="folder for the JSON and PNG (default: benchmarks/results)",
    )
    parser.add_argument(
        "--replot",
        action="store_true",
        help="fit nothing: redraw the PNG from the JSON in --out (with --quick: the quick one)",
    )
    args = parser.parse_args()
    if args.replot:
        replot(args.out, "_quick" if args.quick else "")
        return
    n_seeds = args.seeds if args.seeds is not None else (1 if args.quick else 3)
    if n_seeds < 1:
        parser.error("--seeds must be at least 1")
    max_iter = QUICK["max_iter"] if args.quick else COMMON["max_iter"]
    cycles = QUICK["cycles"] if args.quick else SNAPSHOT["cycles"]
    n_snapshots = QUICK["n_snapshots"] if args.quick else SNAPSHOT["n_snapshots"]
    started = time.perf_counter()

    info = machine_info()
    print(
        f"MotherNets benchmark: {n_seeds} seed(s), {info['cpu_count']} CPUs, torch "
        f"{info['torch']}" + (" -- QUICK smoke test, not a measurement" if args.quick else "")
    )
    load = os.getloadavg()[0]
    if load > 0.5:
        print(
            f"WARNING: load average {load:.1f} before the run: other processes are running, "
            "seconds will be noisy (epoch-equivalents are not affected)."
        )
    datasets = load_datasets(args.quick)
    warm_up(datasets)

    labels = {name: label for name, label, _, _ in METHODS}
    for c in cycles:
        labels[f"snapshot c={c}"] = f"Snapshot Ens. (128, 64), c={c}"
    runs = {d["name"]: {} for d in datasets}
    for data in datasets:
        for seed in range(n_seeds):
            t0 = time.perf_counter()
            for name, _, params, _ in METHODS:
                runs[data["name"]].setdefault(name, []).append(
                    run_library(data, params, seed, max_iter)
                )
            for c in cycles:
                runs[data["name"]].setdefault(f"snapshot c={c}", []).append(
                    run_snapshots(data, seed, c, n_snapshots)
                )
            errs = " ".join(
                f"{k}={v[-1]['error']:.3g}"
                if isinstance(v[-1], dict)
                else f"{k}={v[-1][-1]['error']:.3g}"
                for k, v in runs[data["name"]].items()
            )
            print(
                f"  {data['name']:<14} seed {seed}: {time.perf_counter() - t0:5.1f} s  "
                f"load {os.getloadavg()[0]:.1f}  [{errs}]",
                flush=True,
            )

    summary = summarise(runs)
    print_table(summary, datasets, labels)
    print_mothers(summary, datasets)
    targets = check_targets(summary, datasets)
    print_targets(targets, datasets)

    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    png = args.out / f"mothernets{suffix}.png"
    plot(summary, datasets, labels, png, n_seeds)
    wall = time.perf_counter() - started
    results = {
        "machine": info,
        "settings": {
            "quick": args.quick,
            "seeds": list(range(n_seeds)),
            "archs": [list(a) for a in ARCHS],
            "single_arch": list(SINGLE_ARCH),
            "skensemble_params": {**COMMON, "max_iter": max_iter},
            "methods": {name: params for name, _, params, _ in METHODS},
            "snapshot": {
                **SNAPSHOT,
                "cycles": list(cycles),
                "n_snapshots": n_snapshots,
                "batch_size": COMMON["batch_size"],
                "alpha": COMMON["alpha"],
                "schedule": "lr0/2*(cos(pi*(t mod T_c)/T_c)+1) per step",
            },
            "test_size": TEST_SIZE,
            "split_seed": SPLIT_SEED,
            "ee_formula": "sum_i epochs_i * rows_per_epoch_i * P_i / (P_avg * N_train)",
            "seconds": "fit_time_ + mothernet_fit_time_ (skensemble); SGD loop (snapshots)",
            "target1": f"err <= ref_err + ref_sd and EE <= {COST_LIMIT} * ref_EE",
            "target2": "err < best snapshot err with snapshot EE <= MotherNets EE",
        },
        "datasets": {
            d["name"]: {
                "task": d["task"],
                "n_train": len(d["y_train"]),
                "n_test": len(d["y_test"]),
                "n_features": d["n_features"],
                "n_outputs": d["n_outputs"],
                "p_avg": d["p_avg"],
                "error": d["error_name"],
            }
            for d in datasets
        },
        "runs": runs,
        "summary": summary,
        "targets": targets,
        "load_average_end": os.getloadavg(),
        "wall_s": wall,
    }
    path = args.out / f"mothernets{suffix}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {path} and {png} (whole run {wall:.0f} s)")


if __name__ == "__main__":
    main()
