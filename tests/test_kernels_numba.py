"""The member-major numba kernel equals the torch reference epoch.

Every activation x solver x loss runs from the same start through both engines for two
epochs; parameters, optimizer state, step counts and returned losses must agree. The
remaining axes (sample weights or none, one or two hidden layers, batch 1 or 3 with a
short last batch) are covered pairwise, four cases per triple, to keep the module fast;
compilation is cached on disk (``cache=True``), so only the first run pays for it.

Each (activation, loss, solver) has its own compiled member epoch with its codes as
constants; the tests at the end check that configurations do not share one by mistake,
and that the compiled code of a configuration is found on disk by a new process.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("numba")

from skensemble import _engine as eng  # noqa: E402
from skensemble._kernels import numba_cpu  # noqa: E402
from skensemble._kernels.numba_cpu import epoch_numba  # noqa: E402

SOLVERS = {
    "adam": dict(solver="adam"),
    "nesterov": dict(solver="sgd", nesterovs_momentum=True),
    "heavy_ball": dict(solver="sgd", nesterovs_momentum=False),
}
# (weighted, hidden, batch_size): every pair of values of these three axes occurs once.
# N=17 rows: batch 3 leaves a last batch of 2.
CASES = [(False, (5,), 1), (True, (5, 6), 1), (False, (5, 6), 3), (True, (5,), 3)]

# On these problems the float32 reference itself is up to ~7e-6 away from a float64 run
# of it (rounding, amplified by adam's normalisation); the kernel is as close or closer.
RTOL = ATOL = 1e-5


def _problem(sizes, hyper, E=3, N=17, M=None, weighted=True, seed=0):
    """Initial parameters, zero state, data and per-member orders (two epochs' worth)."""
    g = torch.Generator().manual_seed(seed)
    layout = eng.Layout(sizes)
    flat = eng.init_parameters(layout, [seed + e for e in range(E)], hyper.activation)
    state, steps = eng.init_state(flat, hyper)
    n_in, n_out = sizes[0], sizes[-1]
    X = torch.randn(N, n_in, generator=g)
    if hyper.loss == "log_loss":
        Y = torch.nn.functional.one_hot(torch.randint(0, n_out, (N,), generator=g), n_out).float()
    else:
        Y = torch.randn(N, n_out, generator=g)
    sw = torch.rand(N, generator=g) * 1.5 + 0.25 if weighted else None
    orders = [torch.randint(0, N, (E, M or N), generator=g) for _ in range(2)]
    return layout, (flat, state, steps), X, Y, sw, orders


def _run(epoch, layout, params, X, Y, sw, orders, hyper, lr):
    """Copies of ``params`` after one epoch per order, and the per-epoch losses."""
    flat, state, steps = (t.clone() for t in params)
    losses = [epoch(flat, state, steps, X, Y, sw, order, lr, hyper, layout) for order in orders]
    return flat, state, steps, losses


def _assert_same(ref, got):
    flat, state, steps, losses = ref
    flat2, state2, steps2, losses2 = got
    torch.testing.assert_close(flat2, flat, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(state2, state, rtol=RTOL, atol=ATOL)
    assert torch.equal(steps2, steps)
    for loss, loss2 in zip(losses, losses2, strict=True):
        assert loss2.shape == loss.shape
        torch.testing.assert_close(loss2, loss, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("weighted, hidden, batch_size", CASES)
@pytest.mark.parametrize("loss", eng.LOSSES)
@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("activation", eng.ACTIVATIONS)
def test_matches_reference(activation, solver, loss, weighted, hidden, batch_size):
    # Regression: one output with one hidden layer (the kernel's single-column path),
    # two with two; classification: three classes.
    n_out = 3 if loss == "log_loss" else len(hidden)
    hyper = eng.Hyper(
        activation=activation, loss=loss, alpha=1e-2, batch_size=batch_size, **SOLVERS[solver]
    )
    # lr small enough that training is stable: in a diverging run float32 rounding
    # differences grow without bound and no tolerance is meaningful.
    lr = 0.01
    layout, params, X, Y, sw, orders = _problem((4, *hidden, n_out), hyper, weighted=weighted)
    ref = _run(eng.epoch_reference, layout, params, X, Y, sw, orders, hyper, lr)
    got = _run(epoch_numba, layout, params, X, Y, sw, orders, hyper, lr)
    assert not torch.equal(got[0], params[0])  # it trained
    _assert_same(ref, got)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_single_member(batch_size):
    hyper = eng.Hyper(activation="tanh", solver="adam", alpha=1e-3, batch_size=batch_size)
    layout, params, X, Y, sw, orders = _problem((4, 6, 2), hyper, E=1, M=11)
    ref = _run(eng.epoch_reference, layout, params, X, Y, sw, orders, hyper, 0.01)
    got = _run(epoch_numba, layout, params, X, Y, sw, orders, hyper, 0.01)
    _assert_same(ref, got)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_members_are_independent(batch_size):
    # Member 1's result must not depend on what member 0 does (separate rows, separate
    # scratch, no shared accumulators), whichever threads run them.
    hyper = eng.Hyper(activation="relu", solver="sgd", alpha=1e-3, batch_size=batch_size)
    layout, params, X, Y, sw, orders = _problem((4, 5, 6, 1), hyper, E=3, M=11)
    base = _run(epoch_numba, layout, params, X, Y, sw, orders, hyper, 0.01)
    changed_orders = [order.clone() for order in orders]
    for order in changed_orders:
        order[0] = order[0].flip(0)
    changed = _run(epoch_numba, layout, params, X, Y, sw, changed_orders, hyper, 0.01)
    (flat, state, steps, losses), (flat2, state2, steps2, losses2) = base, changed
    assert not torch.equal(flat2[0], flat[0])
    assert torch.equal(flat2[1:], flat[1:])  # (E, P)
    assert torch.equal(state2[:, 1:], state[:, 1:])  # (S, E, P)
    assert torch.equal(steps2, steps)
    for loss, loss2 in zip(losses, losses2, strict=True):
        assert torch.equal(loss2[1:], loss[1:])


@pytest.mark.parametrize("hidden", [(), (1,), (6, 1, 5)], ids=["linear", "width1", "deep"])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_other_architectures(hidden, batch_size):
    # No hidden layer, and a hidden layer of width one (the single-column paths with an
    # activation), three hidden layers.
    hyper = eng.Hyper(activation="tanh", solver="adam", alpha=1e-2, batch_size=batch_size)
    layout, params, X, Y, sw, orders = _problem((4, *hidden, 2), hyper)
    ref = _run(eng.epoch_reference, layout, params, X, Y, sw, orders, hyper, 0.01)
    got = _run(epoch_numba, layout, params, X, Y, sw, orders, hyper, 0.01)
    _assert_same(ref, got)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_feature_subsets(batch_size):
    # Member e sees only the columns features[e] of X; its first layer has k inputs.
    hyper = eng.Hyper(activation="relu", solver="sgd", alpha=1e-2, batch_size=batch_size)
    layout, params, X, Y, sw, orders = _problem((3, 5, 1), hyper)
    X = torch.randn(X.shape[0], 6, generator=torch.Generator().manual_seed(1))
    features = torch.tensor([[0, 1, 2], [5, 3, 1], [4, 4, 0]])
    runs = []
    for epoch in (eng.epoch_reference, epoch_numba):
        flat, state, steps = (t.clone() for t in params)
        losses = [
            epoch(flat, state, steps, X, Y, sw, order, 0.01, hyper, layout, features=features)
            for order in orders
        ]
        runs.append((flat, state, steps, losses))
    _assert_same(*runs)


@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("batch_size", [4, 5, 9, 17])
def test_blocked_batches(solver, batch_size):
    # Batches of more than one row run four rows at a time, then row by row for the rest:
    # N=17 gives full blocks only (4, last batch 1), blocks and remainders (5: 5,5,5,2;
    # 9: 9,8), and one batch of the whole set (17). Wider layers than the other cases.
    hyper = eng.Hyper(activation="tanh", alpha=1e-2, batch_size=batch_size, **SOLVERS[solver])
    layout, params, X, Y, sw, orders = _problem((7, 9, 11, 2), hyper)
    ref = _run(eng.epoch_reference, layout, params, X, Y, sw, orders, hyper, 0.01)
    got = _run(epoch_numba, layout, params, X, Y, sw, orders, hyper, 0.01)
    assert not torch.equal(got[0], params[0])
    _assert_same(ref, got)


def test_configurations_have_their_own_member_epochs():
    # Configurations interleaved in one process: each must run the member epoch compiled
    # for its own (activation, loss, solver) and step sizes, so each still matches the
    # reference (one built for another configuration would not; one without the path for
    # steps of one row would skip the last batch of one). Nesterov is read at run time,
    # so both sgd variants share one member epoch.
    configs = [
        ("relu", "log_loss", "adam", 3),  # 17 rows: batches of 3 and a last one of 2
        ("tanh", "squared_error", "nesterov", 3),
        ("relu", "log_loss", "heavy_ball", 3),
        ("relu", "log_loss", "adam", 4),  # 4, 4, 4, 4 and a last batch of one row
        ("logistic", "log_loss", "adam", 3),
        ("relu", "log_loss", "nesterov", 3),
        ("relu", "log_loss", "adam", 1),
        ("relu", "log_loss", "adam", 3),
    ]
    keys = set()
    for activation, loss, solver, batch_size in configs:
        hyper = eng.Hyper(
            activation=activation, loss=loss, alpha=1e-2, batch_size=batch_size,
            **SOLVERS[solver],
        )
        n_out = 3 if loss == "log_loss" else 1
        layout, params, X, Y, sw, orders = _problem((4, 5, n_out), hyper)
        ref = _run(eng.epoch_reference, layout, params, X, Y, sw, orders, hyper, 0.01)
        got = _run(epoch_numba, layout, params, X, Y, sw, orders, hyper, 0.01)
        _assert_same(ref, got)
        codes = numba_cpu._ACT[activation], numba_cpu._LOSS[loss]
        steps = batch_size == 1 or 17 % batch_size == 1, batch_size > 1  # one row, more
        keys.add((*codes, numba_cpu._SOLVER[hyper.solver], *steps))
    assert len(keys) == 6
    assert len({numba_cpu._MEMBERS[key][1] for key in keys}) == len(keys)  # own code each


CACHED_PROCESS = """
import json, sys, torch
import numba.core.event as ev
from skensemble import _engine as eng
from skensemble._kernels import numba_cpu
layout = eng.Layout((3, 4, 2))
X, Y = torch.randn(6, 3), torch.eye(2)[torch.tensor([0, 1, 0, 1, 1, 0])]
recorder = ev.RecordingListener()
with ev.install_listener("numba:compile", recorder):
    for activation in sys.argv[1:]:
        hyper = eng.Hyper(activation=activation, loss="log_loss", batch_size=2)
        flat = eng.init_parameters(layout, [0, 1], hyper.activation)
        state, steps = eng.init_state(flat, hyper)
        numba_cpu.epoch_numba(flat, state, steps, X, Y, None,
                              torch.zeros(2, 4, dtype=torch.long), 0.01, hyper, layout)
print(json.dumps({
    "compiled": len(recorder.buffer) // 2,
    "member_hits": [sum(fn.stats.cache_hits.values()) for fn, _ in numba_cpu._MEMBERS.values()],
    "kernel_hits": sum(numba_cpu._epoch_kernel.stats.cache_hits.values()),
}))
"""


def test_member_epoch_cache_is_found_by_a_new_process(tmp_path):
    # Member epochs are closures: numba keys their disk cache on the closure's cell
    # contents (the configuration's codes), which must be the same in every process.
    # A second configuration goes into the same cache index without replacing the first.
    def run(*activations):
        out = subprocess.run(
            [sys.executable, "-c", CACHED_PROCESS, *activations], capture_output=True,
            text=True, timeout=300,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path),
                 "NUMBA_CACHE_DIR": str(tmp_path)},
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    first = run("relu")
    assert first["compiled"] > 0 and first["member_hits"] == [0]
    assert run("tanh")["member_hits"] == [0]  # another configuration: compiled, not loaded
    assert run("relu", "tanh") == {"compiled": 0, "member_hits": [1, 1], "kernel_hits": 1}
