"""Training and prediction speed of skensemble beside the loops it replaces.

What it shows
-------------
One run, side by side, on a synthetic 10,000 x 30 regression (fixed seed; y a smooth
nonlinear function of a few features plus noise), for every combination of
E in {5, 50} members, two tanh hidden layers of width w in {10, 100}, batch size
B in {1, 32}, SGD (lr 1e-3, Nesterov momentum 0.9, alpha 1e-4):

* skensemble ``NeuralBaggingRegressor(engine="auto")``: seconds per epoch
  (``fit_time_ / n_iter_`` over 1-3 epochs, best of 2 repeats), the engine it chose,
  steps/s, achieved GFLOP/s and its fraction of a measured float32 matmul peak;
* (a) the per-member PyTorch loop a competent user writes: E separate
  ``nn.Sequential(Linear, Tanh, Linear, Tanh, Linear)`` models, each with its own
  ``torch.optim.SGD``, trained one after another, each over its own shuffled rows with
  a manual batching loop (one gather per epoch, then slices: no DataLoader);
* (b) scikit-learn ``BaggingRegressor(MLPRegressor(max_iter=1), bootstrap=False)``;
* (c) skensemble's own plain-autograd path, ``engine="reference"``;

then pass/fail lines against the CPU targets, a ``GridSearchCV`` with ``n_jobs=2``
against ``n_jobs=1`` (parallel fits must not be serialised by the engine's threads),
and prediction throughput and peak memory growth on 1,000,000 rows against
``BaggingRegressor(MLPRegressor)``.

Busy machine (CPU): ``engine="auto"`` beside every CPU engine forced, on two small-batch
fits (E=16, (16,), B=64, 10 epochs; E=50, (100, 100), B=32, 2 epochs; 4,000 x 30 rows),
first on the machine as it is, then while one ``while True: pass`` process per core
(started and killed by this script) saturates the cores. Seconds per fit (wall clock
of ``fit``), median and best of 5 repeats taken in turn across engines; ``auto`` must
stay within 1.2x of the fastest engine in both conditions.

Baselines estimated to need more than ~20 s for one epoch are timed over part of an
epoch (fewer members first, since members train one after another; then fewer rows)
and scaled linearly to the full epoch: such entries carry a ``*`` in the table and the
JSON records the fraction actually timed. The batched reference path is only ever cut
in rows (its cost is not linear in members).

Counting: one member-step of forward + backward costs ``6 * P`` flops per row
(2 for the forward multiply-adds, 4 for the two backward products), so an epoch costs
``6 * E * N * P`` flops, P = parameters of one member; the optimizer update
(O(E * P) per step) and the activations are not counted. ``steps/s`` is batches per
second of the whole member set, ``(N / B) / seconds``.

How to run
----------
    python benchmarks/bench_training.py                    # CPU, full run (~5-10 minutes)
    python benchmarks/bench_training.py --quick            # smoke test (~1-2 minutes)
    python benchmarks/bench_training.py --device cuda
    python benchmarks/bench_training.py --busy-only        # busy-machine section only (~2 min)

Results go to ``benchmarks/results/training_<device>[_quick].json``, the busy-machine
section (also part of the full CPU run) to ``training_cpu_busy.json`` as well, so that
``--busy-only`` leaves the main results alone. Timings other than the busy section's are
only meaningful on an otherwise idle machine.
"""

import argparse
import contextlib
import gc
import json
import math
import os
import resource
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _machine import machine_info  # benchmarks/_machine.py
from sklearn.ensemble import BaggingRegressor
from sklearn.model_selection import GridSearchCV
from sklearn.neural_network import MLPRegressor

from skensemble import NeuralBaggingRegressor, _dispatch, _engine

warnings.filterwarnings("ignore")  # ConvergenceWarning: every fit here stops after 1-3 epochs

N_ROWS, N_FEATURES, SEED = 10_000, 30, 0
LR, ALPHA = 1e-3, 1e-4
MEMBERS, WIDTHS, BATCHES = (5, 50), (10, 100), (1, 32)

# (E, w, B) -> seconds per epoch that skensemble must not exceed (2-core CPU).
CPU_TARGETS = {(50, 100, 1): 2.0, (50, 10, 1): 0.3, (5, 10, 1): 0.05, (50, 100, 32): 0.6}

FULL_EPOCH_MAX_S = 20.0  # a baseline estimated slower than this is timed over part of an epoch
PART_TARGET_S = 5.0  # ... over a part sized to take about this long
REPEAT_MAX_S = 10.0  # a timed piece up to this long is repeated (best of 2)
PROBE_ROWS = 256  # rows of the probe that estimates a baseline's epoch (and warms it up)

QUICK = {  # --quick: small data, E=5 only, every baseline timed over a small part
    "rows": 2_000,
    "members": (5,),
    "part_target_s": 0.4,
    "predict_rows": 100_000,
}
PREDICT_ROWS = 1_000_000
PREDICT_SLICE_ROWS = 100_000  # sklearn predicts on this slice (scaled) when 1M is too slow
PREDICT_E, PREDICT_W, PREDICT_FIT_ROWS = 50, 100, 2_000
GRID = {"alpha": [1e-4, 1e-3, 1e-2, 1e-1]}

# Busy machine: small-batch fits (auto picks the numba kernel) with the cores saturated.
BUSY_SCENARIOS = (
    {"E": 16, "hidden": (16,), "B": 64, "rows": 4_000, "epochs": 10},
    {"E": 50, "hidden": (100, 100), "B": 32, "rows": 4_000, "epochs": 2},
)
BUSY_ENGINES = ("auto", "numba", "batched")
BUSY_REPEATS = 5
BUSY_TARGET = 1.2  # auto's median within this factor of the fastest engine's


# --------------------------------------------------------------------------- data
def make_data(n_rows, seed=SEED):
    """Synthetic regression: X (n, 30) standard normal, y smooth nonlinear + noise."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_rows, N_FEATURES))
    y = (
        np.sin(X[:, 0])
        + 0.5 * X[:, 1] * X[:, 2]
        + np.tanh(X[:, 3] - X[:, 4])
        + 0.1 * (X[:, 5:10] ** 2).sum(1)
        + 0.1 * rng.standard_normal(n_rows)
    )
    return X, y


def n_params(w):
    """P: parameters of one member with two hidden layers of width w and one output."""
    return _engine.Layout((N_FEATURES, w, w, 1)).n_params


# ----------------------------------------------------------------- measurement tools
def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_matmul_gflops(device, repeats=5):
    """Best GFLOP/s of a large float32 matmul with torch's default threads."""
    n = 2048 if device.type == "cpu" else 8192
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b  # warm-up: thread pool / cuBLAS handle
    sync(device)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return {"n": n, "seconds": best, "gflops": 2 * n**3 / best / 1e9}


def partial_epoch(run, n_members, n_rows, batch, *, per_member, opts):
    """Seconds for one full epoch, timed over the whole epoch or a part scaled linearly.

    ``run(m, r)`` trains ``m`` members over ``r`` rows each and returns the seconds it
    took. A probe (1 member, or all for batched paths; ``PROBE_ROWS`` rows) warms the
    code up and estimates the full epoch; slow baselines are then cut to about
    ``part_target_s``: members first where they train one after another
    (``per_member``), then rows (whole batches).
    """
    m0 = 1 if per_member else n_members
    r0 = min(n_rows, max(PROBE_ROWS // batch, 4) * batch)
    probe = run(m0, r0)
    estimate = probe * (n_members / m0) * (n_rows / r0)
    m, r = n_members, n_rows
    if estimate > FULL_EPOCH_MAX_S or opts["force_partial"]:
        share = opts["part_target_s"] / estimate  # affordable fraction of the epoch
        if per_member:
            m = min(n_members, max(1, int(n_members * share)))
            share *= n_members / m
        r_min = min(n_rows, max(4 * batch, PROBE_ROWS))
        r = min(n_rows, max(r_min, int(n_rows * share) // batch * batch))
        if opts["force_partial"]:
            r = min(r, max(batch, n_rows // 2 // batch * batch))
    fraction = (m / n_members) * (r / n_rows)
    repeats = 2 if estimate * fraction <= REPEAT_MAX_S else 1
    measured = [run(m, r) for _ in range(repeats)]
    return {
        "seconds_per_epoch": min(measured) / fraction,
        "partial": fraction < 1.0,
        "fraction_timed": fraction,
        "members_timed": m,
        "rows_timed": r,
        "measured_seconds": measured,
        "probe_estimate_s": estimate,
    }


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextlib.contextmanager
def peak_rss_growth(result, interval_s=0.001):
    """Record in ``result`` the peak growth of resident memory while the block runs.

    A background thread polls ``/proc/self/statm`` (numpy, torch and BLAS release the
    GIL during the work, so it keeps sampling); ``ru_maxrss`` is recorded beside it.
    """
    gc.collect()
    base = _rss_bytes()
    peak = [base]
    done = threading.Event()

    def poll():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(interval_s)

    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sampler = threading.Thread(target=poll, daemon=True)
    sampler.start()
    try:
        yield
    finally:
        done.set()
        sampler.join()
        peak[0] = max(peak[0], _rss_bytes())
        result["rss_growth_mb"] = (peak[0] - base) / 2**20
        maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result["ru_maxrss_growth_mb"] = (maxrss_after - maxrss_before) / 1024  # KiB on Linux


# --------------------------------------------------------------------- skensemble
def make_skensemble(E, w, B, *, epochs, engine="auto", device="cpu", **params):
    """The estimator under test: runs exactly ``epochs`` epochs (no early stop)."""
    return NeuralBaggingRegressor(
        n_estimators=E,
        hidden_layer_sizes=(w, w),
        activation="tanh",
        solver="sgd",
        alpha=ALPHA,
        batch_size=B,
        max_iter=epochs,
        learning_rate_init=LR,
        shuffle=True,
        random_state=SEED,
        device=device,
        engine=engine,
        # the same networks as the baselines: none of the estimator's own recipe
        early_stopping=False, input_scaling="standard", numeric_encoding="none",
        tol=0.0,
        n_iter_no_change=epochs,
        **params,
    )


def warm_up(device):
    """One tiny fit per engine: numba compiles (or loads its disk cache) on first use."""
    X, y = make_data(64, seed=1)
    for engine in _dispatch.available_engines(device):
        for B in (1, 4):
            make_skensemble(2, 4, B, epochs=1, engine=engine, device=str(device)).fit(X, y)


def time_skensemble(X, y, E, w, B, device):
    """Seconds per epoch of ``engine="auto"``: probe 1 epoch, then best of 2 fits of 1-3."""
    probe = make_skensemble(E, w, B, epochs=1, device=str(device)).fit(X, y)
    epochs = 3 if 3 * probe.fit_time_ <= REPEAT_MAX_S else 1
    per_epoch = []
    for _ in range(2):
        est = make_skensemble(E, w, B, epochs=epochs, device=str(device)).fit(X, y)
        per_epoch.append(est.fit_time_ / est.n_iter_)
    return {
        "engine": est.engine_,
        "epochs_timed": epochs,
        "seconds_per_epoch": min(per_epoch),
        "repeats": per_epoch,
    }


# ---------------------------------------------------------------------- baselines
def torch_loop_runner(X, y, w, B, device):
    """(a) ``run(m, r)``: m ``nn.Sequential`` members, one after another, r rows each."""
    Xt = torch.as_tensor(X, dtype=torch.float32, device=device)  # (N, F)
    Yt = torch.as_tensor(y, dtype=torch.float32, device=device).unsqueeze(1)  # (N, 1)
    n_rows = Xt.shape[0]

    def run(m, r):
        torch.manual_seed(SEED)
        members = []
        for _ in range(m):  # set-up, not timed: built once, trained for many epochs
            model = torch.nn.Sequential(
                torch.nn.Linear(N_FEATURES, w),
                torch.nn.Tanh(),
                torch.nn.Linear(w, w),
                torch.nn.Tanh(),
                torch.nn.Linear(w, 1),
            ).to(device)
            opt = torch.optim.SGD(
                model.parameters(), lr=LR, momentum=0.9, nesterov=True, weight_decay=ALPHA
            )
            members.append((model, opt))
        sync(device)
        start = time.perf_counter()
        for model, opt in members:
            perm = torch.randperm(n_rows, device=device)[:r]  # this member's own order
            Xp, Yp = Xt[perm], Yt[perm]  # one gather per epoch, then contiguous slices
            for s in range(0, r, B):
                opt.zero_grad()
                loss = torch.nn.functional.mse_loss(model(Xp[s : s + B]), Yp[s : s + B])
                loss.backward()
                opt.step()
        sync(device)
        return time.perf_counter() - start

    return run


def sklearn_runner(X, y, w, B):
    """(b) ``run(m, r)``: ``BaggingRegressor(MLPRegressor(max_iter=1))``, m members, r rows."""

    def run(m, r):
        bag = BaggingRegressor(
            MLPRegressor(
                hidden_layer_sizes=(w, w),
                activation="tanh",
                solver="sgd",
                alpha=ALPHA,
                batch_size=B,
                learning_rate_init=LR,
                max_iter=1,
                shuffle=True,
                random_state=SEED,
            ),
            n_estimators=m,
            bootstrap=False,
            n_jobs=1,
            random_state=SEED,
        )
        start = time.perf_counter()
        bag.fit(X[:r], y[:r])
        return time.perf_counter() - start

    return run


def reference_runner(X, y, E, w, B, device):
    """(c) ``run(E, r)``: skensemble ``engine="reference"``, one epoch over r rows."""

    def run(m, r):
        est = make_skensemble(m, w, B, epochs=1, engine="reference", device=str(device))
        return est.fit(X[:r], y[:r]).fit_time_

    return run


# ----------------------------------------------------------------------- sections
def bench_training(X, y, device, opts):
    """One row of results per (E, w, B): skensemble and the three baselines."""
    n_rows = X.shape[0]
    rows = []
    for E in opts["members"]:
        for w in WIDTHS:
            for B in BATCHES:
                print(f"  E={E:<3} w={w:<4} B={B:<3}", end="", flush=True)
                t0 = time.perf_counter()
                res = {"E": E, "w": w, "B": B, "P": n_params(w), "N": n_rows}
                res["skensemble"] = time_skensemble(X, y, E, w, B, device)
                res["torch_loop"] = partial_epoch(
                    torch_loop_runner(X, y, w, B, device),
                    E,
                    n_rows,
                    B,
                    per_member=True,
                    opts=opts,
                )
                res["sklearn"] = partial_epoch(
                    sklearn_runner(X, y, w, B), E, n_rows, B, per_member=True, opts=opts
                )
                res["reference"] = partial_epoch(
                    reference_runner(X, y, E, w, B, device),
                    E,
                    n_rows,
                    B,
                    per_member=False,
                    opts=opts,
                )
                sk = res["skensemble"]
                sec = sk["seconds_per_epoch"]
                flops = 6 * E * n_rows * res["P"]
                sk["steps_per_s"] = (n_rows / B) / sec
                sk["gflops"] = flops / sec / 1e9
                sk["fraction_of_peak"] = sk["gflops"] / opts["peak"]["gflops"]
                res["ratios"] = {
                    name: res[name]["seconds_per_epoch"] / sec
                    for name in ("torch_loop", "sklearn", "reference")
                }
                print(f" {sk['engine']:<9} {sec:.3g} s/epoch  ({time.perf_counter() - t0:.0f} s)")
                rows.append(res)
    return rows


def bench_grid_search(X, y, device):
    """Wall time of a small GridSearchCV with n_jobs=1 and n_jobs=2 (pool warmed first)."""

    def search(n_jobs):
        gs = GridSearchCV(
            make_skensemble(5, 10, 1, epochs=3, device=str(device)), GRID, cv=2, n_jobs=n_jobs
        )
        start = time.perf_counter()
        gs.fit(X, y)
        return time.perf_counter() - start

    cold = search(2)  # starts the worker pool: imports, numba cache load
    t1 = min(search(1) for _ in range(2))
    t2 = min(search(2) for _ in range(2))
    return {
        "rows": X.shape[0],
        "n_fits": 2 * len(GRID["alpha"]),
        "n_jobs_1_s": t1,
        "n_jobs_2_s": t2,
        "n_jobs_2_cold_pool_s": cold,
        "speedup": t1 / t2,
    }


def bench_prediction(device, n_predict):
    """Rows/s and peak RSS growth of predict on n_predict rows, E=50 (100, 100)."""
    X_fit, y_fit = make_data(PREDICT_FIT_ROWS, seed=2)
    X, _ = make_data(n_predict, seed=3)
    out = {"rows": n_predict, "E": PREDICT_E, "w": PREDICT_W}

    est = make_skensemble(PREDICT_E, PREDICT_W, "auto", epochs=1, device=str(device))
    est.fit(X_fit, y_fit)
    est.predict(X[:1000])  # warm-up
    sk = {}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    with peak_rss_growth(sk):
        start = time.perf_counter()
        est.predict(X)
        sk["seconds"] = time.perf_counter() - start
    if device.type == "cuda":
        sk["cuda_peak_growth_mb"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    sk["rows_timed"] = n_predict
    sk["rows_per_s"] = n_predict / sk["seconds"]
    sk["rss_growth_full_mb"] = sk["rss_growth_mb"]
    out["skensemble"] = sk

    bag = BaggingRegressor(
        MLPRegressor(
            hidden_layer_sizes=(PREDICT_W, PREDICT_W),
            activation="tanh",
            solver="sgd",
            max_iter=1,
            random_state=SEED,
        ),
        n_estimators=PREDICT_E,
        bootstrap=False,
        n_jobs=1,
        random_state=SEED,
    ).fit(X_fit, y_fit)
    rows = min(n_predict, PREDICT_SLICE_ROWS)
    if n_predict > rows:
        start = time.perf_counter()
        bag.predict(X[:10_000])  # estimate the full predict
        if (time.perf_counter() - start) * n_predict / 10_000 <= FULL_EPOCH_MAX_S:
            rows = n_predict
    skl = {}
    with peak_rss_growth(skl):
        start = time.perf_counter()
        bag.predict(X[:rows])
        skl["seconds"] = time.perf_counter() - start
    skl["rows_timed"] = rows
    skl["partial"] = rows < n_predict
    skl["rows_per_s"] = rows / skl["seconds"]
    # sklearn's MLP holds every row's activations at once: memory is linear in rows.
    skl["rss_growth_full_mb"] = skl["rss_growth_mb"] * n_predict / rows
    out["sklearn"] = skl
    out["throughput_ratio"] = sk["rows_per_s"] / skl["rows_per_s"]
    return out


@contextlib.contextmanager
def saturated_cores(n):
    """Run the block with ``n`` busy-looping processes competing for the cores."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(1.0)  # let them start and the scheduler settle
        yield
    finally:
        for p in hogs:
            p.kill()
        for p in hogs:
            p.wait()


def bench_busy(device):
    """``auto`` beside each CPU engine, idle and with every core saturated by a busy loop."""
    cores = len(os.sched_getaffinity(0))
    engines = [e for e in BUSY_ENGINES if e == "auto" or e in _dispatch.available_engines(device)]
    out = {"hog_processes": cores, "repeats": BUSY_REPEATS, "target": BUSY_TARGET, "rows": []}

    def fit_seconds(sc, X, y, engine):
        est = NeuralBaggingRegressor(
            n_estimators=sc["E"], hidden_layer_sizes=sc["hidden"], activation="tanh",
            solver="sgd", alpha=ALPHA, batch_size=sc["B"], max_iter=sc["epochs"],
            learning_rate_init=LR, random_state=SEED, device=str(device), engine=engine,
            tol=0.0, n_iter_no_change=sc["epochs"], early_stopping=False,
            input_scaling="standard", numeric_encoding="none",
        )
        start = time.perf_counter()
        est.fit(X, y)
        return time.perf_counter() - start, est.engine_

    for sc in BUSY_SCENARIOS:
        X, y = make_data(sc["rows"])
        for engine in engines:  # warm-up: compile / load caches, size thread pools
            fit_seconds(sc, X, y, engine)
        for condition in ("idle", "busy"):
            ctx = saturated_cores(cores) if condition == "busy" else contextlib.nullcontext()
            times = {e: [] for e in engines}
            chosen = set()
            with ctx:
                load = os.getloadavg()
                for _ in range(BUSY_REPEATS):  # engines in turn: noise hits them alike
                    for engine in engines:
                        sec, ran = fit_seconds(sc, X, y, engine)
                        times[engine].append(sec)
                        if engine == "auto":
                            chosen.add(ran)
            row = {**sc, "hidden": list(sc["hidden"]), "condition": condition,
                   "load_average_at_start": load, "auto_engine": "/".join(sorted(chosen))}
            row["seconds"] = {
                e: {"median": float(np.median(t)), "best": min(t), "all": t}
                for e, t in times.items()
            }
            forced = [e for e in engines if e != "auto"]
            fastest = min(forced, key=lambda e: row["seconds"][e]["median"])
            row["fastest_engine"] = fastest
            row["auto_over_fastest"] = (
                row["seconds"]["auto"]["median"] / row["seconds"][fastest]["median"]
            )
            row["pass"] = row["auto_over_fastest"] <= BUSY_TARGET
            out["rows"].append(row)
            print(
                f"  E={sc['E']:<3} {str(sc['hidden']):<10} B={sc['B']:<3} {condition:<5} "
                f"load {load[0]:4.1f}: "
                + "  ".join(f"{e} {row['seconds'][e]['median']:.3f}" for e in engines)
                + f"  (auto ran {row['auto_engine']}; auto/fastest "
                f"{row['auto_over_fastest']:.2f})",
                flush=True,
            )
    return out


# ------------------------------------------------------------------------ report
def _cell(entry):
    """Seconds per epoch, ``*`` when timed over part of an epoch and scaled."""
    mark = "*" if entry.get("partial") else " "
    return f"{entry['seconds_per_epoch']:9.3g}{mark}"


def print_training_table(rows, peak, n_rows):
    print(
        f"\nSeconds per epoch ({n_rows:,} rows x {N_FEATURES}, tanh, SGD); ratio = "
        "baseline s / skensemble s; * = part of an epoch timed, scaled linearly"
    )
    head = (
        f"{'E':>3} {'w':>4} {'B':>3}  {'engine':<9}{'s/epoch':>10} {'steps/s':>9} "
        f"{'GFLOP/s':>8} {'of peak':>8} | {'(a) torch':>10} {'ratio':>7} | "
        f"{'(b) sklearn':>10} {'ratio':>7} | {'(c) ref':>10} {'ratio':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        sk = r["skensemble"]
        cells = "".join(
            f" | {_cell(r[name])} {r['ratios'][name]:6.1f}x"
            for name in ("torch_loop", "sklearn", "reference")
        )
        print(
            f"{r['E']:>3} {r['w']:>4} {r['B']:>3}  {sk['engine']:<9}"
            f"{sk['seconds_per_epoch']:10.3g} {sk['steps_per_s']:9.3g} {sk['gflops']:8.2f} "
            f"{sk['fraction_of_peak']:8.2%}{cells}"
        )
    print(
        f"GFLOP/s = 6 * E * N * P / seconds per epoch (forward + backward; optimizer update "
        f"not counted); P = {n_params(10)} (w=10), {n_params(100)} (w=100). Peak: "
        f"{peak['n']}x{peak['n']} float32 matmul, {peak['gflops']:.1f} GFLOP/s."
    )


def check_targets(rows):
    by_config = {(r["E"], r["w"], r["B"]): r for r in rows}
    results = []
    print("\nCPU targets (2-core machine)")
    for (E, w, B), limit in CPU_TARGETS.items():
        sec = by_config[(E, w, B)]["skensemble"]["seconds_per_epoch"]
        ok = sec <= limit
        results.append({"E": E, "w": w, "B": B, "limit_s": limit, "seconds": sec, "pass": ok})
        print(
            f"  {'PASS' if ok else 'FAIL'}  E={E}, ({w}, {w}), B={B}: "
            f"{sec:.3g} s/epoch (target <= {limit} s)"
        )
    return results


def print_grid_search(g):
    print(
        f"\nGridSearchCV: {g['n_fits']} fits of E=5 (10, 10), B=1, 3 epochs on "
        f"{g['rows']:,} rows, cv=2"
    )
    print(
        f"  n_jobs=1: {g['n_jobs_1_s']:.2f} s   n_jobs=2: {g['n_jobs_2_s']:.2f} s   "
        f"speed-up {g['speedup']:.2f}x ({'faster' if g['speedup'] > 1 else 'NOT faster'})"
        f"   [n_jobs=2 with a cold worker pool: {g['n_jobs_2_cold_pool_s']:.2f} s]"
    )


def print_prediction(p):
    note = ""
    if p["sklearn"]["partial"]:
        note = f"; * = timed on {p['sklearn']['rows_timed']:,} rows, scaled linearly"
    print(
        f"\nPrediction: {p['rows']:,} rows x {N_FEATURES}, E={p['E']}, ({p['w']}, {p['w']}){note}"
    )
    for name, label in (("skensemble", "skensemble"), ("sklearn", "sklearn Bagging(MLP)")):
        e = p[name]
        mark = "*" if e.get("partial") else " "
        print(
            f"  {label:<21} {e['rows_per_s']:12,.0f} rows/s{mark}  peak RSS growth "
            f"{e['rss_growth_full_mb']:8.1f} MB{mark}"
            + (f"  (CUDA {e['cuda_peak_growth_mb']:.1f} MB)" if "cuda_peak_growth_mb" in e else "")
        )
    print(f"  throughput ratio skensemble / sklearn: {p['throughput_ratio']:.1f}x")


def run_busy(device, out_dir):
    """The busy-machine section: time it, print it, write ``training_cpu_busy.json``."""
    started = time.perf_counter()
    info = machine_info(device)
    print(
        f"\nBusy machine: seconds per fit (median of {BUSY_REPEATS}), engine='auto' beside each "
        f"CPU engine forced; 'busy' = {info['cpu_affinity']} busy-loop processes on "
        f"{info['cpu_affinity']} CPUs; load = 1-min load average as the timing starts"
    )
    busy = bench_busy(device)
    ok = all(r["pass"] for r in busy["rows"])
    print(
        f"  {'PASS' if ok else 'FAIL'}  auto within {BUSY_TARGET}x of the fastest engine "
        "in every row"
    )
    busy["machine"] = info
    busy["wall_s"] = time.perf_counter() - started
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "training_cpu_busy.json"
    path.write_text(json.dumps(busy, indent=2) + "\n")
    print(f"wrote {path}")
    return busy


# -------------------------------------------------------------------------- main
def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 2,000 rows, E=5 only, partial baselines"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results",
        help="folder for the JSON results (default: benchmarks/results)",
    )
    parser.add_argument(
        "--busy-only",
        action="store_true",
        help="only the busy-machine section (CPU): auto vs each engine, idle and saturated",
    )
    args = parser.parse_args()
    device = _dispatch.resolve_device(args.device)
    started = time.perf_counter()
    if args.busy_only:
        if device.type != "cpu":
            parser.error("--busy-only times CPU engines; use --device cpu")
        run_busy(device, args.out)
        return

    opts = {
        "members": QUICK["members"] if args.quick else MEMBERS,
        "part_target_s": QUICK["part_target_s"] if args.quick else PART_TARGET_S,
        "force_partial": args.quick,
    }
    n_rows = QUICK["rows"] if args.quick else N_ROWS
    n_predict = QUICK["predict_rows"] if args.quick else PREDICT_ROWS
    X, y = make_data(n_rows)

    info = machine_info(device)
    print(
        f"skensemble training benchmark on {device} ({info['cpu_count']} CPUs, torch "
        f"{info['torch']} with {info['torch_threads']} threads)"
        + (" -- QUICK smoke test, not a measurement" if args.quick else "")
    )
    load = os.getloadavg()[0]
    if load > 0.5:
        print(
            f"WARNING: load average {load:.1f} on {info['cpu_affinity']} CPUs before the run: "
            "other processes are running, timings will be noisy (threaded torch ops suffer "
            "most)."
        )
    warm_up(device)
    opts["peak"] = peak_matmul_gflops(device)
    print(f"peak float32 matmul: {opts['peak']['gflops']:.1f} GFLOP/s")

    print("training:")
    rows = bench_training(X, y, device, opts)
    print_training_table(rows, opts["peak"], n_rows)
    targets = None
    if not args.quick and device.type == "cpu":
        targets = check_targets(rows)
    grid = bench_grid_search(X, y, device)
    print_grid_search(grid)
    prediction = bench_prediction(device, n_predict)
    print_prediction(prediction)
    busy = None
    if not args.quick and device.type == "cpu":
        busy = run_busy(device, args.out)

    wall = time.perf_counter() - started
    results = {
        "machine": info,
        "settings": {
            "quick": args.quick,
            "rows": n_rows,
            "features": N_FEATURES,
            "seed": SEED,
            "lr": LR,
            "alpha": ALPHA,
            "activation": "tanh",
            "solver": "sgd",
            "full_epoch_max_s": FULL_EPOCH_MAX_S,
            "part_target_s": opts["part_target_s"],
            "flops_per_epoch": "6 * E * N * P",
        },
        "peak_matmul": opts["peak"],
        "training": rows,
        "targets": targets,
        "grid_search": grid,
        "prediction": prediction,
        "busy": busy,
        "wall_s": wall,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"training_{device.type}{'_quick' if args.quick else ''}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {path} (whole run {wall:.0f} s)")


if __name__ == "__main__":
    main()
