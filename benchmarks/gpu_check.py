"""One command for the first minutes on a GPU: correctness of every CUDA engine, then speed.

What it does, in order (each section is timed, guarded, and written to the results file as
soon as it ends, so that a run cut short still keeps what it measured):

1. **machine**: GPU, torch, triton, CUDA versions; a float32 matmul peak measured here
   (the yardstick for the GFLOP/s below).
2. **equivalence**: every CUDA engine (``batched``, ``graphed`` with real graph capture,
   ``triton``, and ``graphed`` streamed from host memory in chunks of 2 batches; also
   ``graphed`` with per-member learning rates and feature subsets) against the CPU
   reference (``engine="reference"``, plain autograd) on the same initial weights and the
   same per-member orders, 2 epochs (``graphed`` and ``triton`` also with per-member
   learning rates and L2 strengths), for all 4 activations x 3 solvers (adam, sgd with
   Nesterov, sgd heavy-ball) x 2 losses, at batch 1 (Triton's fused update) and batch 5
   (its accumulated one, with a short last batch). Pass: the largest parameter
   difference is below ``1e-4`` of the largest parameter.
3. **estimators**: ``NeuralBaggingRegressor`` and ``NeuralBaggingClassifier`` with early
   stopping (per member, on out-of-bag rows) and the adaptive sgd schedule, fitted on
   the GPU with each engine and on the CPU; predictions compared, ``engine_`` recorded.
   Then two fits at once in two threads on the GPU (graph capture while another thread
   uses CUDA), compared with the same fits one at a time; and the number of graph
   captures of one early-stopping fit (bounded by ``log2(E) + 1``).
4. **timings**: the seed scenario (10,000 x 30 rows, two tanh hidden layers of width
   w, sgd) at batch 1, 32 and 256 for E in {5, 50, 1000} and w in {10, 100}, per engine,
   then Triton against the graphed engine over batch sizes 1-64 (where ``MAX_BATCH``
   should sit). Per row: steps/s, GFLOP/s (``6 * P`` flops per row and member, as in
   ``bench_training.py``), fraction of the matmul peak, first-call seconds (compile or
   capture), peak GPU memory, and the engine ``engine="auto"`` chooses.
5. **user**: what a user runs (issue 25): the default estimators, fit and predict, on
   100K and 1M rows of realistic synthetic sets, the classifier with early stopping,
   device memory at E=1,000, and ``n_jobs`` over every visible GPU when there are two
   or more (:func:`user`).
6. **hyperparameters**: members with their own hyperparameters (``member_params``) in
   padded groups on the device against the CPU, then one fit of a hyperparameter
   ensemble against ``RandomizedSearchCV`` over the same space on digits (issue 13's
   comparison; :func:`hyperparameters`).
7. **tests**: the CUDA tests of the test suite (``tests/test_kernels_triton.py``, the
   CUDA tests of ``tests/test_estimators.py``, the fall-back and compile-argument tests),
   when pytest is installed.

Results: ``benchmarks/results/gpu.json`` (``--out``; with ``--smoke`` a temporary file
unless ``--out`` is given, so that a smoke run never overwrites the GPU results); a
table is printed at the end.
The exit status is 1 if any equivalence or estimator check failed or a section raised.

How to run
----------
    PYTHONPATH=. python benchmarks/gpu_check.py            # on the GPU machine, ~5-8 min
    python benchmarks/gpu_check.py --smoke   # on the CPU: tiny sizes, Triton's interpreter,
                                             # results in a temporary file

``--smoke`` runs every section but the test suite on the CPU (``graphed`` runs its
static-buffer schedule eagerly, Triton under its interpreter, numba beside them) at tiny
sizes, so that CI keeps this script working (``tests/test_gpu_check.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from pathlib import Path

SMOKE = "--smoke" in sys.argv
if SMOKE:
    # Triton reads this when it is first imported; on a CPU the kernel then runs in its
    # interpreter. Must precede every import that may import triton.
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from skensemble import (  # noqa: E402
    NeuralBaggingClassifier,
    NeuralBaggingRegressor,
    _dispatch,
    _engine,
    _engines,
    _schedule,
)
from skensemble._engine import Hyper, Layout  # noqa: E402
from skensemble._inputs import Encoding  # noqa: E402

try:
    from skensemble._kernels import triton_gpu
except ImportError:  # pragma: no cover - triton missing
    triton_gpu = None

ACTIVATIONS = ("identity", "logistic", "tanh", "relu")
SOLVERS = {"adam": ("adam", True), "sgd-nesterov": ("sgd", True), "sgd-heavy": ("sgd", False)}
LOSSES = ("squared_error", "log_loss")
TOL = 1e-4
# --smoke's equivalence cases (indices into activation x solver x loss): every activation,
# solver and loss once; Triton's interpreter runs two of them, and numba (compared on the
# CPU only) the defaults' configuration (relu, adam, squared error), whose kernels the
# test suite builds anyway: a kernel takes seconds to build in a new environment.
SMOKE_CASES, SMOKE_TRITON, SMOKE_NUMBA = (0, 5, 10, 15, 18), (0, 18), (18,)


# ------------------------------------------------------------------------ helpers
def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def problem(E, N, F, hidden, loss, O, seed):
    """Data, initial parameters and two epochs of orders, all on the CPU."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, F, generator=g)
    if loss == "log_loss":
        Y = torch.nn.functional.one_hot(torch.randint(0, O, (N,), generator=g), O).float()
    else:
        Y = torch.randn(N, O, generator=g)
    sw = torch.rand(N, generator=g) + 0.5
    layout = Layout((F, *hidden, O))
    orders = [torch.argsort(torch.rand(E, N, generator=g), 1) for _ in range(2)]
    return X, Y, sw, layout, orders


def epoch_call(fn, flat, state, steps, X, Y, sw, order, lr, hyper, layout, features=None,
               alpha=None, **kwargs):
    """One epoch of ``fn`` on loose tensors (the engine contract's dataclasses built here)."""
    E = flat.shape[0]
    lr = np.full(E, lr) if np.ndim(lr) == 0 else np.asarray(lr)
    member = _engine.Member.of(lr, flat.device, alpha=alpha)
    first = None
    if features is not None:  # each member's columns of X, as a first-layer map
        first = Encoding.plain(X.shape[1]).first_layer(
            features.cpu().numpy(), flat.shape[0], layout.sizes[0]).to(flat.device)
    return fn(_engine.Params(flat, state, steps, layout), _engine.Data(X, Y, sw, first),
              order, member, hyper, **kwargs)


def auto_engine(hyper, layout, device):
    """What ``engine="auto"`` picks for one group of ``layout``."""
    return _dispatch.select_engine("auto", _engines.Request(hyper, layout.sizes), device)


def run_epochs(name, device, flat0, hyper, layout, X, Y, sw, orders, lr, features=None,
               alpha=None):
    """Two epochs of engine ``name`` on ``device``; final parameters on the CPU."""
    flat = flat0.clone().to(device)
    state, steps = _engine.init_state(flat, hyper)
    feats = None if features is None else features.to(device)
    kw = {} if feats is None else {"features": feats}
    if alpha is not None:
        kw["alpha"] = alpha
    if name == "streamed":
        fn = _dispatch.epoch_function("graphed" if device.type == "cuda" else "batched")
        Xd, Yd, swd = X, Y, sw  # stay on the host
        for order in orders:
            epoch_call(lambda *a, **k: _schedule.epoch_streamed(fn, *a, **k, chunk_steps=2),
                       flat, state, steps, Xd, Yd, swd, order, lr, hyper, layout, **kw)
    else:
        fn = _dispatch.epoch_function(name)
        Xd, Yd, swd = X.to(device), Y.to(device), sw.to(device)
        for order in orders:
            epoch_call(fn, flat, state, steps, Xd, Yd, swd, order.to(device), lr, hyper, layout,
                       **kw)
    sync(device)
    _schedule.release_graphs()
    return flat.cpu()


class Report:
    """The results dict, written to disk after every section."""

    def __init__(self, out, info):
        self.out, self.data, self.failed = out, {"machine": info, "sections": {}}, False
        self.t0 = time.perf_counter()

    def section(self, name, fn, *args):
        print(f"\n== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            result = fn(*args)
            status = "ok"
        except Exception:  # noqa: BLE001 - record, go on with the next section
            result, status = {"error": traceback.format_exc()}, "error"
            print(result["error"], flush=True)
            self.failed = True
        self.data["sections"][name] = {"status": status, "seconds": round(
            time.perf_counter() - t0, 2), "result": result}
        self.write()
        return result

    def write(self):
        self.data["seconds"] = round(time.perf_counter() - self.t0, 2)
        self.data["failed"] = self.failed
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.data, indent=1, default=str))


# ----------------------------------------------------------------------- sections
def machine(device, commit):
    info = {"device": str(device), "python": sys.version.split()[0], "torch": torch.__version__,
            "smoke": SMOKE, "git_commit": commit}
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    info["triton_mode"] = None if triton_gpu is None else triton_gpu._build_mode()
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, sm_count=props.multi_processor_count,
                    memory_gib=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda,
                    tf32_matmul=torch.backends.cuda.matmul.allow_tf32)
    else:
        info["cpu_threads"] = torch.get_num_threads()
    return info


def matmul_peak(device):
    """Best-of-5 float32 GFLOP/s of one square matmul (TF32 as torch's default leaves it)."""
    n = 256 if SMOKE else 8192
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    best = min(timed(lambda: a @ b, device)[0] for _ in range(5))
    return {"n": n, "gflops": round(2 * n**3 / best / 1e9, 1)}


def equivalence(device, only=None):
    """``only="rates"``: just the per-member rates and feature subsets case."""
    engines = ["batched", "graphed", "streamed"]
    if triton_gpu is not None and triton_gpu._build_mode() is not None:
        engines.append("triton")
    if device.type == "cpu":
        engines.append("numba")
    cases = [(a, s, loss) for a in ACTIVATIONS for s in SOLVERS for loss in LOSSES]
    rows = []
    for i, (act, solver_name, loss) in enumerate(cases):
        if SMOKE and i not in SMOKE_CASES:
            continue  # smoke: 5 of the 24 cases, every activation, solver and loss (the
            # test suite's contract tests bind every engine to the reference case by case)
        solver, nesterov = SOLVERS[solver_name]
        O = 3 if loss == "log_loss" else 2
        hidden = (6, 5) if SMOKE else (16, 12)
        E, N = (2, 11) if SMOKE else (4, 64)
        X, Y, sw, layout, orders = problem(E, N, 5, hidden, loss, O, seed=i)
        for batch in (1, 5):
            hyper = Hyper(activation=act, loss=loss, solver=solver, nesterovs_momentum=nesterov,
                          alpha=1e-3, batch_size=batch)
            lr = 0.01 if solver == "sgd" else 0.003
            flat0 = _engine.init_parameters(layout, range(E), act)
            ref = run_epochs("reference", torch.device("cpu"), flat0, hyper, layout, X, Y, sw,
                             orders, lr)
            scale = float(ref.abs().max())
            for name in (engines if only is None else []):
                if name == "triton" and (SMOKE and i not in SMOKE_TRITON
                                         or not triton_gpu.supports(hyper, layout, device)):
                    continue  # the interpreter is slow: 2 of the smoke's cases
                if name == "numba" and SMOKE and i not in SMOKE_NUMBA:
                    continue  # (CPU only) the kernels of the defaults, which the suite builds
                got = run_epochs(name, device, flat0, hyper, layout, X, Y, sw, orders, lr)
                err = float((got - ref).abs().max()) / scale
                rows.append({"activation": act, "solver": solver_name, "loss": loss,
                             "batch": batch, "engine": name, "rel_err": err,
                             "ok": bool(err < TOL)})
            # per-member rates and feature subsets (the torch engines only)
            rates = np.linspace(0.5, 1.0, E) * lr  # up to lr: 1.5x diverged once (identity)
            feats = torch.stack([torch.randperm(5, generator=torch.Generator().manual_seed(e))[:3]
                                 for e in range(E)])
            layout_k = Layout((3, *hidden, O))
            flat_k = _engine.init_parameters(layout_k, range(E), act)
            alphas = np.linspace(0.0, 0.01, E)  # and per-member L2 strengths
            ref = run_epochs("reference", torch.device("cpu"), flat_k, hyper, layout_k, X, Y, sw,
                             orders, rates, feats, alphas)
            got = run_epochs("graphed", device, flat_k, hyper, layout_k, X, Y, sw, orders, rates,
                             feats, alphas)
            err = float((got - ref).abs().max()) / float(ref.abs().max())
            rows.append({"activation": act, "solver": solver_name, "loss": loss, "batch": batch,
                         "engine": "graphed+rates+features", "rel_err": err,
                         "ok": bool(err < TOL)})
            if ("triton" in engines and not (SMOKE and i not in SMOKE_TRITON)
                    and triton_gpu.supports(hyper, layout, device)):
                ref = run_epochs("reference", torch.device("cpu"), flat0, hyper, layout, X, Y,
                                 sw, orders, rates, alpha=alphas)
                got = run_epochs("triton", device, flat0, hyper, layout, X, Y, sw, orders,
                                 rates, alpha=alphas)
                err = float((got - ref).abs().max()) / float(ref.abs().max())
                rows.append({"activation": act, "solver": solver_name, "loss": loss,
                             "batch": batch, "engine": "triton+rates+alphas", "rel_err": err,
                             "ok": bool(err < TOL)})
    bad = [r for r in rows if not r["ok"]]
    print(f"{len(rows)} comparisons, {len(bad)} over {TOL}; largest relative difference "
          f"{max(r['rel_err'] for r in rows):.2e}", flush=True)
    for r in bad:
        print("  FAIL", r, flush=True)
    return {"tolerance": TOL, "rows": rows, "failed": len(bad)}


def estimators(device):
    rng = np.random.RandomState(0)
    n = 160 if SMOKE else 600
    X = rng.normal(size=(n, 6))
    y = X[:, 0] - 2 * np.tanh(X[:, 1]) + 0.3 * rng.normal(size=n)
    labels = np.digitize(y, [-1.0, 1.0])
    base = dict(n_estimators=6, hidden_layer_sizes=(16,), max_iter=12 if SMOKE else 40,
                early_stopping=True, n_iter_no_change=3, bootstrap=True, random_state=0,
                solver="sgd", learning_rate="adaptive", learning_rate_init=0.005)
    rows = []
    engines = ["auto", "batched", "graphed"]
    if device.type == "cuda" and triton_gpu is not None and triton_gpu._build_mode():
        engines.append("triton")
    for Est, target in ((NeuralBaggingRegressor, y), (NeuralBaggingClassifier, labels)):
        for batch in (1, 16):
            kw = dict(base, batch_size=batch)
            cpu = Est(**kw, device="cpu", engine="batched").fit(X, target)
            want = (cpu.predict(X) if Est is NeuralBaggingRegressor else cpu.predict_proba(X))
            for engine in engines:
                if device.type == "cpu" and engine in ("graphed", "triton"):
                    continue  # needs CUDA (the equivalence section runs their schedules)
                t, est = timed(lambda: Est(**kw, device=str(device), engine=engine).fit(
                    X, target), device)
                got = (est.predict(X) if Est is NeuralBaggingRegressor else est.predict_proba(X))
                err = float(np.max(np.abs(got - want)))
                same_iters = bool(np.array_equal(est.n_iter_per_member_, cpu.n_iter_per_member_))
                rows.append({"estimator": Est.__name__, "batch": batch, "engine": engine,
                             "engine_": str(est.engine_), "fit_s": round(t, 3),
                             "max_abs_diff": err, "same_epochs": same_iters,
                             "ok": bool(err < 1e-3 or not same_iters and err < 5e-2)})
                print(rows[-1], flush=True)
    return {"rows": rows, "failed": sum(not r["ok"] for r in rows)}


def graphs(device):
    """Graph capture with other threads on the device, and captures per fit."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(600, 6))
    y = X[:, 0] - 2 * np.tanh(X[:, 1]) + 0.3 * rng.normal(size=600)
    out = {"threads": threads(device, X, y), "captures": captures(device, X, y),
           "memory": memory(device, X, y)}
    out["failed"] = sum(not out[k]["ok"] for k in ("threads", "captures", "memory"))
    return out


def memory(device, X, y, n=8):
    """Live device memory after one graphed fit and after ``n`` more: a fit keeps none."""
    kw = dict(n_estimators=16, hidden_layer_sizes=(32,), max_iter=10, early_stopping=True,
              n_iter_no_change=2, engine="graphed", device=str(device), batch_size=8,
              random_state=0)
    NeuralBaggingRegressor(**kw).fit(X, y)
    sync(device)
    after_one = torch.cuda.memory_allocated(device)
    for i in range(n):
        NeuralBaggingRegressor(**dict(kw, random_state=i + 1)).fit(X, y)
    sync(device)
    growth = torch.cuda.memory_allocated(device) - after_one
    result = {"after_one_fit_mb": round(after_one / 2**20, 1), "fits": n,
              "growth_mb": round(growth / 2**20, 1), "ok": growth < 64 * 2**20}
    print("memory:", result, flush=True)
    return result


def threads(device, X, y, n=3):
    """``n`` graphed fits at once, with early stopping (several captures each)."""
    kw = dict(n_estimators=16, hidden_layer_sizes=(32,), max_iter=30, early_stopping=True,
              n_iter_no_change=2, engine="graphed", device=str(device), batch_size=8,
              random_state=0)
    targets = [y * (1 + i) for i in range(n)]
    alone = [NeuralBaggingRegressor(**kw).fit(X, t).predict(X) for t in targets]
    out, errors = [None] * n, []
    barrier = threading.Barrier(n)

    def work(i):
        try:
            barrier.wait()
            out[i] = NeuralBaggingRegressor(**kw).fit(X, targets[i]).predict(X)
        except Exception:  # noqa: BLE001
            errors.append(traceback.format_exc())

    pool = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    diff = None if errors else max(float(np.max(np.abs(a - b))) for a, b in zip(out, alone))
    result = {"threads": n, "errors": errors, "max_abs_diff": diff,
              "ok": not errors and diff < 1e-5}
    print("threads:", result, flush=True)
    return result


def captures(device, X, y):
    """Graph runners made by one early-stopping fit of 64 members."""
    made = []
    real = _schedule._ChunkRunner.__init__

    def spy(self, C, *args, **kwargs):
        t0 = time.perf_counter()
        real(self, C, *args, **kwargs)
        made.append((C, round(time.perf_counter() - t0, 4)))

    _schedule._ChunkRunner.__init__ = spy
    try:
        est = NeuralBaggingRegressor(n_estimators=64, hidden_layer_sizes=(32,), max_iter=60,
                                     early_stopping=True, n_iter_no_change=2, engine="graphed",
                                     device=str(device), batch_size=16, random_state=0).fit(X, y)
    finally:
        _schedule._ChunkRunner.__init__ = real
    result = {"runners": made, "epochs": int(est.n_iter_per_member_.max()),
              "distinct_member_counts": len(set(est.n_iter_per_member_)),
              "ok": len(made) <= 7}
    print("captures:", result, flush=True)
    return result


def time_engine(name, device, E, width, batch, X, Y, target_s):
    """Steps/s and friends of one engine on one configuration."""
    N = X.shape[0]
    hyper = Hyper(activation="tanh", solver="sgd", batch_size=batch, alpha=1e-4)
    layout = Layout((X.shape[1], width, width, 1))
    if name == "triton" and not triton_gpu.supports(hyper, layout, device):
        return None
    flat = _engine.init_parameters(layout, range(E), "tanh").to(device)
    state, steps = _engine.init_state(flat, hyper)
    fn = _dispatch.epoch_function(name)
    g = torch.Generator().manual_seed(0)
    full = torch.stack([torch.randperm(N, generator=g) for _ in range(E)]).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    m0 = min(N, (2 if SMOKE else 64) * batch)  # smoke: the interpreter is slow
    first, _ = timed(lambda: epoch_call(fn, flat, state, steps, X, Y, None,
                                        full[:, :m0].contiguous(), 1e-3, hyper, layout), device)
    again, _ = timed(lambda: epoch_call(fn, flat, state, steps, X, Y, None,
                                        full[:, :m0].contiguous(), 1e-3, hyper, layout), device)
    m = int(min(N, max(m0, m0 * target_s / max(again, 1e-6))))
    m = m0 if SMOKE else max(batch, m // batch * batch)
    t, _ = timed(lambda: epoch_call(fn, flat, state, steps, X, Y, None,
                                    full[:, :m].contiguous(), 1e-3, hyper, layout), device)
    peak_mb = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
               else None)
    _schedule.release_graphs()
    n_steps = math.ceil(m / batch)
    flops = 6 * layout.n_params * E * m
    return {"engine": name, "rows_timed": m, "seconds": round(t, 4),
            "steps_per_s": round(n_steps / t, 1), "gflops": round(flops / t / 1e9, 3),
            "first_call_s": round(first, 3), "first_minus_steady_s": round(first - again, 3),
            "peak_mb": None if peak_mb is None else round(peak_mb, 1)}


def timings(device, peak_gflops, budget_s):
    t_start = time.perf_counter()
    g = torch.Generator().manual_seed(0)
    N, F = (200, 5) if SMOKE else (10_000, 30)
    X = torch.randn(N, F, generator=g).to(device)
    Y = (torch.sin(X[:, :1]) + 0.1 * torch.randn(N, 1, generator=g).to(device)).contiguous()
    members = (2, 4) if SMOKE else (5, 50, 1000)
    widths = (4,) if SMOKE else (10, 100)
    batches = (1, 8) if SMOKE else (1, 32, 256)
    target = 0.02 if SMOKE else 0.4
    engines = ["batched", "graphed", "triton"] if device.type == "cuda" else [
        "batched", "graphed", "numba", "triton"]
    rows = []

    def add(E, width, batch, name, sweep=False):
        if time.perf_counter() - t_start > budget_s:
            rows.append({"E": E, "width": width, "batch": batch, "engine": name,
                         "skipped": "time budget"})
            return
        if name == "triton" and (triton_gpu is None or not triton_gpu._build_mode()):
            return
        try:
            r = time_engine(name, device, E, width, batch, X, Y, target)
        except Exception as exc:  # noqa: BLE001 - record, go on
            r = {"engine": name, "error": f"{type(exc).__name__}: {exc}"[:500]}
        if r is None:
            return
        hyper = Hyper(activation="tanh", solver="sgd", batch_size=batch)
        r.update(E=E, width=width, batch=batch, sweep=sweep,
                 auto=auto_engine(hyper, Layout((F, width, width, 1)), device))
        if "gflops" in r:
            r["peak_fraction"] = round(r["gflops"] / peak_gflops, 5)
        rows.append(r)
        print({k: r.get(k) for k in ("E", "width", "batch", "engine", "steps_per_s", "gflops",
                                     "first_call_s", "peak_mb", "auto", "error")}, flush=True)

    for E in members:
        for width in widths:
            for batch in batches:
                for name in engines:
                    if name in ("graphed", "triton") and device.type == "cpu" and batch > 1:
                        continue
                    add(E, width, batch, name)
    variants = None
    if triton_gpu is not None and triton_gpu._build_mode() == "compiled":
        variants = len(triton_gpu.COMPILED_VARIANTS)
    return {"rows": rows, "triton_compiled_variants": variants, "N": N, "F": F}


def sweep(device, peak_gflops):
    """Where should Triton's batch limit sit? Triton (allowed past its limit) against the
    graphed engine over batch sizes, for three widths and two ensemble sizes."""
    if triton_gpu is None or not triton_gpu._build_mode():
        return {"skipped": "no triton"}
    g = torch.Generator().manual_seed(0)
    N, F = (200, 5) if SMOKE else (10_000, 30)
    X = torch.randn(N, F, generator=g).to(device)
    Y = torch.randn(N, 1, generator=g).to(device)
    rows = []
    try:
        for E in ((4,) if SMOKE else (50, 1000)):
            for width in ((4,) if SMOKE else (10, 30, 100)):
                for batch in ((2,) if SMOKE else (2, 4, 8, 16, 32)):
                    for name in (("triton",) if device.type == "cpu" else ("triton", "graphed")):
                        try:
                            r = time_engine(name, device, E, width, batch, X, Y,
                                            0.02 if SMOKE else 0.25)
                        except Exception as exc:  # noqa: BLE001 - record, go on
                            r = {"engine": name, "error": f"{type(exc).__name__}: {exc}"[:500]}
                        r.update(E=E, width=width, batch=batch, sweep=True,
                                 params=Layout((F, width, width, 1)).n_params)
                        if "gflops" in r:
                            r["peak_fraction"] = round(r["gflops"] / peak_gflops, 5)
                        r["auto"] = auto_engine(
                            Hyper(activation="tanh", solver="sgd", batch_size=batch),
                            Layout((F, width, width, 1)), device)
                        rows.append(r)
                        print({k: r.get(k) for k in ("E", "width", "batch", "engine",
                                                     "steps_per_s", "auto", "error")}, flush=True)
    finally:
        _schedule.release_graphs()
    return {"rows": rows}


def streaming(device):
    """Streamed from host memory against resident, graphed engine, E=50, (100, 100), B=32."""
    N, F = (200, 5) if SMOKE else (10_000, 30)
    E, width, batch = (4, 4, 8) if SMOKE else (50, 100, 32)
    g = torch.Generator().manual_seed(0)
    X, Y = torch.randn(N, F, generator=g), torch.randn(N, 1, generator=g)
    hyper = Hyper(activation="tanh", solver="sgd", batch_size=batch)
    layout = Layout((F, width, width, 1))
    name = "graphed" if device.type == "cuda" else "batched"
    fn = _dispatch.epoch_function(name)
    order = torch.stack([torch.randperm(N, generator=g) for _ in range(E)])
    out = {}
    for mode in ("resident", "streamed"):
        flat = _engine.init_parameters(layout, range(E), "tanh").to(device)
        state, steps = _engine.init_state(flat, hyper)
        if mode == "resident":
            args = (X.to(device), Y.to(device), None, order.to(device))

            def run(args=args, flat=flat, state=state, steps=steps):
                return epoch_call(fn, flat, state, steps, *args[:3], args[3], 1e-3, hyper,
                                  layout)
        else:
            def run(flat=flat, state=state, steps=steps):
                return epoch_call(
                    lambda *a, **k: _schedule.epoch_streamed(fn, *a, **k, chunk_steps=64),
                    flat, state, steps, X, Y, None, order, 1e-3, hyper, layout)
        first, _ = timed(run, device)
        t, _ = timed(run, device)
        _schedule.release_graphs()
        out[mode] = {"first_s": round(first, 3), "epoch_s": round(t, 4), "params": flat.cpu()}
    diff = float((out["resident"].pop("params") - out["streamed"].pop("params")).abs().max())
    out.update(engine=name, E=E, width=width, batch=batch, max_abs_diff=diff,
               ok=bool(diff < 1e-4))
    print(out, flush=True)
    return out


def tests(timeout_s):
    try:
        import pytest  # noqa: F401
    except ImportError:
        return {"skipped": "pytest is not installed"}
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs",
           "tests/test_kernels_triton.py",
           "tests/test_estimators.py::test_cuda_fit_pickles_to_cpu",
           "tests/test_estimators.py::test_cuda_matches_cpu",
           "tests/test_gpu_readiness.py::test_compile_time_arguments_leave_data_and_exact_"
           "widths_to_run_time",
           "tests/test_gpu_readiness.py::test_auto_falls_back_from_a_failing_triton_kernel",
           "tests/test_gpu_readiness.py::test_explicit_triton_still_raises_the_kernel_error"]
    try:
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        return {"returncode": None, "timeout_s": timeout_s,
                "tail": (exc.stdout or "")[-3000:] if isinstance(exc.stdout, str) else ""}
    tail = (done.stdout + done.stderr)[-4000:]
    print(tail, flush=True)
    return {"returncode": done.returncode, "tail": tail, "ok": done.returncode == 0}


# ------------------------------------------------------------ what a user runs
def user(device):
    """The rows a user needs (issue 25, item 4): defaults at size, early stopping, memory.

    - The default estimators (batch 64, one hidden layer of 100, adam, relu, encoded
      inputs), fit and predict, on 100K and 1M rows of realistic synthetic sets
      (Friedman #1 with 10 columns for regression; a 20-column, 5-class problem with
      informative, redundant and noise columns for classification). The 1M-row fits run
      3 epochs (their seconds per epoch are the figure); the 100K-row ones 20.
    - The classifier with early stopping (its default, ``"auto"``) on the 100K rows.
    - Device memory at E=1,000 members of width 100 (peak allocated during the fit).
    - ``n_jobs`` over every visible GPU when there are two or more (member chunks on
      ``cuda:0``, ``cuda:1``, ...), against one GPU.

    64 members with ``member_params`` and selection against ``RandomizedSearchCV`` is
    :func:`hyperparameters`.
    """
    from sklearn.datasets import make_classification, make_friedman1

    dev = str(device)
    sizes = (2_000, 4_000) if SMOKE else (100_000, 1_000_000)
    rows = []
    for n in sizes:
        Xr, yr = make_friedman1(n_samples=n, n_features=10, noise=1.0, random_state=0)
        Xc, yc = make_classification(n_samples=n, n_features=20, n_informative=10,
                                     n_redundant=4, n_classes=5, random_state=0)
        epochs = 3 if n == sizes[1] else (4 if SMOKE else 20)
        for Est, X, y, kw in (
                (NeuralBaggingRegressor, Xr, yr, dict(early_stopping=False)),
                (NeuralBaggingClassifier, Xc, yc, dict(early_stopping=False)),
                (NeuralBaggingClassifier, Xc, yc, dict(early_stopping="auto"))):
            if kw["early_stopping"] == "auto" and n == sizes[1]:
                continue  # early stopping: the 100K rows
            est = Est(max_iter=epochs, random_state=0, device=dev, **kw)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter
                fit_s, est = timed(lambda est=est, X=X, y=y: est.fit(X, y), device)
            pred_s, _ = timed(lambda est=est, X=X: est.predict(X), device)
            n_iter = int(est.n_iter_per_member_.max())
            rows.append({"estimator": Est.__name__, "rows": n,
                         "early_stopping": kw["early_stopping"], "epochs": n_iter,
                         "engine_": str(est.engine_), "device_": str(est.device_),
                         "fit_s": round(fit_s, 3), "s_per_epoch": round(fit_s / n_iter, 4),
                         "predict_s": round(pred_s, 3),
                         "predict_rows_per_s": round(n / max(pred_s, 1e-9))})
            print(rows[-1], flush=True)
    return {"fits": rows, "memory": memory_at_scale(device), "gpus": across_gpus(device)}


def memory_at_scale(device):
    """Peak device memory of a fit of E=1,000 members of width 100 (the CPU: E=20)."""
    E, n = (20, 500) if SMOKE else (1000, 10_000)
    rng = np.random.RandomState(0)
    X = rng.normal(size=(n, 20))
    y = X[:, 0] - 2 * np.tanh(X[:, 1]) + 0.3 * rng.normal(size=n)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    t, est = timed(lambda: NeuralBaggingRegressor(
        n_estimators=E, hidden_layer_sizes=(100,), max_iter=2, early_stopping=False,
        random_state=0, device=str(device)).fit(X, y), device)
    out = {"E": E, "rows": n, "width": 100, "engine_": str(est.engine_), "fit_s": round(t, 3)}
    if device.type == "cuda":
        out["peak_mb"] = round((torch.cuda.max_memory_allocated(device) - base) / 2**20, 1)
        out["free_mb"] = round(torch.cuda.mem_get_info(device)[0] / 2**20, 1)
    print("memory at scale:", out, flush=True)
    return out


def across_gpus(device):
    """``n_jobs`` = every visible GPU (chunks of members spread over them) against one."""
    n_gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if n_gpus < 2:
        return {"gpus": n_gpus, "skipped": "fewer than two GPUs visible"}
    rng = np.random.RandomState(0)
    X = rng.normal(size=(20_000, 20))
    y = X[:, 0] - 2 * np.tanh(X[:, 1]) + 0.3 * rng.normal(size=20_000)
    kw = dict(n_estimators=64, hidden_layer_sizes=(100,), max_iter=10, early_stopping=False,
              random_state=0, device="cuda")
    one_s, one = timed(lambda: NeuralBaggingRegressor(**kw, n_jobs=1).fit(X, y), device)
    all_s, spread = timed(lambda: NeuralBaggingRegressor(**kw, n_jobs=n_gpus).fit(X, y),
                          device)
    diff = float(np.max(np.abs(one.predict(X) - spread.predict(X))))
    out = {"gpus": n_gpus, "one_gpu_s": round(one_s, 3), "all_gpus_s": round(all_s, 3),
           "speedup": round(one_s / all_s, 2), "max_abs_diff": diff,
           "devices": str(spread.device_), "ok": diff < 1e-3}
    print("across GPUs:", out, flush=True)
    return out


# -------------------------------------------------------------------------- table
def hyperparameters(device):
    """Members with their own hyperparameters (issue 13) on the device.

    First the padded groups: one classifier whose members draw rates, L2 strengths,
    architectures, activations and bin counts, fitted on the device (members of one
    depth in one group padded to the widest input and hidden widths) and on the CPU
    (one group per exact architecture, activation and input width); probabilities
    compared, as in :func:`estimators`. Then the issue's comparison on scikit-learn's
    digits (bundled, 1,797 rows, 75/25 split): one fit of ``E`` members drawing from the
    space, with ``ensemble_selection=50``, against ``RandomizedSearchCV`` over the same
    space of plain 10-member ensembles (``n_iter=3, cv=2``: 3 x 2 x 10 + 10 = 70 member
    fits, about the one fit's 64): test log-loss, accuracy and wall seconds of each.
    """
    from scipy.stats import loguniform
    from sklearn.datasets import load_digits
    from sklearn.metrics import accuracy_score, log_loss
    from sklearn.model_selection import RandomizedSearchCV, train_test_split

    space = {"learning_rate_init": loguniform(3e-4, 3e-3), "alpha": loguniform(1e-6, 1e-2),
             "hidden_layer_sizes": [(64,), (128,), (64, 64)], "activation": ["relu", "tanh"],
             "n_bins": [4, 8, 16]}
    X, y = load_digits(return_X_y=True)
    if SMOKE:
        X, y = X[:300], y[:300]
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0,
                                              stratify=y)
    dev = str(device)
    small = dict(n_estimators=8, max_iter=5 if SMOKE else 20, random_state=0,
                 member_params=space, early_stopping=True, ensemble_selection=10)
    cpu = NeuralBaggingClassifier(**small, device="cpu", engine="batched").fit(X_tr, y_tr)
    t, est = timed(lambda: NeuralBaggingClassifier(**small, device=dev).fit(X_tr, y_tr), device)
    err = float(np.max(np.abs(est.predict_proba(X_te) - cpu.predict_proba(X_te))))
    same = bool(np.array_equal(est.n_iter_per_member_, cpu.n_iter_per_member_))
    padded = {"check": "padded groups against the CPU", "engine_": str(est.engine_),
              "groups_device": len(est._fitted.groups), "groups_cpu": len(cpu._fitted.groups),
              "fit_s": round(t, 3), "max_abs_diff": err, "same_epochs": same,
              "ok": bool(err < 1e-3 or not same and err < 5e-2)}
    print(padded, flush=True)

    E = 12 if SMOKE else 64
    n_iter, cv = 2 if SMOKE else 3, 2
    epochs = dict(max_iter=5) if SMOKE else {}
    one = NeuralBaggingClassifier(n_estimators=E, member_params=space, ensemble_selection=50,
                                  random_state=0, device=dev, **epochs)
    search = RandomizedSearchCV(
        NeuralBaggingClassifier(n_estimators=10, random_state=0, device=dev, **epochs), space,
        n_iter=n_iter, cv=cv, scoring="neg_log_loss", random_state=0)
    runs = []
    for name, model, fits in (("one fit", one, E), ("search", search, n_iter * cv * 10 + 10)):
        t, fitted = timed(lambda model=model: model.fit(X_tr, y_tr), device)
        proba = fitted.predict_proba(X_te)
        runs.append({"method": name, "member_fits": fits, "fit_s": round(t, 3),
                     "log_loss": float(log_loss(y_te, proba, labels=fitted.classes_)),
                     "accuracy": float(accuracy_score(y_te, fitted.predict(X_te)))})
        if name == "one fit":
            runs[-1]["members_kept"] = int((fitted.ensemble_weights_ > 0).sum())
        print(runs[-1], flush=True)
    target = (runs[0]["log_loss"] <= runs[1]["log_loss"]
              and runs[0]["fit_s"] <= runs[1]["fit_s"] / 5)
    return {"padded": padded, "runs": runs, "time_ratio": runs[0]["fit_s"] / runs[1]["fit_s"],
            "target_met": bool(target), "failed": int(not padded["ok"])}


def table(data):
    lines = []
    sec = data["sections"]
    m = data["machine"]
    lines.append(f"{m.get('gpu', m['device'])}  torch {m['torch']}  triton {m.get('triton')}  "
                 f"matmul peak {sec.get('peak', {}).get('result', {}).get('gflops')} GFLOP/s")
    eq = sec.get("equivalence", {}).get("result", {})
    if "rows" in eq:
        worst = {}
        for r in eq["rows"]:
            worst[r["engine"]] = max(worst.get(r["engine"], 0.0), r["rel_err"])
        lines.append("equivalence (largest relative difference to the CPU reference): " +
                     ", ".join(f"{k} {v:.1e}" for k, v in worst.items()) +
                     f"; {eq['failed']} failed")
    tm = {"rows": sec.get("timings", {}).get("result", {}).get("rows", []) +
          sec.get("sweep", {}).get("result", {}).get("rows", [])}
    if tm["rows"]:
        lines.append(f"{'E':>5} {'w':>4} {'B':>4} {'engine':>8} {'auto':>8} {'steps/s':>10} "
                     f"{'GFLOP/s':>9} {'%peak':>6} {'first s':>8} {'MB':>7}")
        for r in tm["rows"]:
            if "steps_per_s" not in r:
                lines.append(f"{r['E']:>5} {r['width']:>4} {r['batch']:>4} {r['engine']:>8} "
                             f"{r.get('skipped') or r.get('error', '')[:60]}")
                continue
            lines.append(
                f"{r['E']:>5} {r['width']:>4} {r['batch']:>4} {r['engine']:>8} {r['auto']:>8} "
                f"{r['steps_per_s']:>10.0f} {r['gflops']:>9.2f} "
                f"{100 * r['peak_fraction']:>6.2f} {r['first_call_s']:>8.2f} "
                f"{'' if r['peak_mb'] is None else r['peak_mb']:>7}"
                + ("  (batch sweep)" if r.get("sweep") else ""))
    hp = sec.get("hyperparameters", {}).get("result", {})
    for r in hp.get("runs", []):
        lines.append(f"hyperparameters, digits: {r['method']:>8} {r['member_fits']:>4} member "
                     f"fits {r['fit_s']:>8.2f} s  log-loss {r['log_loss']:.4f}  "
                     f"accuracy {r['accuracy']:.4f}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny sizes, interpreter")
    parser.add_argument("--out", default=None,
                        help="results file (default: benchmarks/results/gpu.json; with "
                             "--smoke a temporary file, so the committed GPU results stay)")
    parser.add_argument("--commit", default=None, help="git commit to record (no .git there)")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="seconds for the timings section before it skips the rest")
    parser.add_argument("--tests-timeout-s", type=float, default=180.0)
    parser.add_argument("--skip", default="", help="comma-separated sections to skip")
    parser.add_argument("--only", default="", help="comma-separated sections to run")
    parser.add_argument("--equivalence-only", default=None, choices=["rates"],
                        help="equivalence: just the per-member rates and features case")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = (os.path.join(tempfile.mkdtemp(prefix="gpu_check_"), "gpu.json")
                    if args.smoke else str(REPO / "benchmarks" / "results" / "gpu.json"))
    if args.smoke:
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        parser.error("no CUDA device: run on a GPU machine, or pass --smoke")
    else:
        device = torch.device("cuda")
    commit = args.commit
    if commit is None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                    text=True, timeout=10).stdout.strip() or None
    report = Report(Path(args.out), machine(device, commit))
    skip = set(filter(None, args.skip.split(",")))
    only = set(filter(None, args.only.split(",")))

    def wanted(name):
        return name not in skip and (not only or name in only)

    peak = report.section("peak", matmul_peak, device)
    peak_gflops = peak.get("gflops") or 1.0
    if wanted("equivalence"):
        eq = report.section("equivalence", equivalence, device, args.equivalence_only)
        report.failed |= bool(eq.get("failed"))
    if wanted("estimators"):
        est = report.section("estimators", estimators, device)
        report.failed |= bool(est.get("failed"))
    if wanted("graphs") and device.type == "cuda":
        gr = report.section("graphs", graphs, device)
        report.failed |= bool(gr.get("failed"))
    if wanted("timings"):
        report.section("timings", timings, device, peak_gflops, args.budget_s)
    if wanted("sweep"):
        report.section("sweep", sweep, device, peak_gflops)
    if wanted("streaming"):
        st = report.section("streaming", streaming, device)
        report.failed |= not st.get("ok", False)
    if wanted("user"):
        us = report.section("user", user, device)
        report.failed |= us.get("gpus", {}).get("ok") is False
    if wanted("hyperparameters"):
        hp = report.section("hyperparameters", hyperparameters, device)
        report.failed |= bool(hp.get("failed"))
    if not args.smoke and wanted("tests"):
        tr = report.section("tests", tests, args.tests_timeout_s)
        report.failed |= tr.get("ok") is False
    report.write()
    print("\n" + table(report.data), flush=True)
    print(f"\nwrote {args.out}; {'FAILED' if report.failed else 'all checks passed'} "
          f"in {report.data['seconds']:.0f} s", flush=True)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
