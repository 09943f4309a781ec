"""The member-major numba kernel: what the engine contract (tests/test_contract.py) does not cover.

The contract test binds the kernel to the torch reference for every activation, solver
and loss it declares. Here: its own paths (one member, other architectures, batches in
blocks of four rows and remainders, members independent of each other), that each
configuration runs the member epoch compiled for it, and that the compiled code of a
configuration is found on disk by a new process.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from engine_cases import SOLVERS, assert_same, problem, run

pytest.importorskip("numba")

from skensemble import _engine as eng  # noqa: E402
from skensemble._kernels import numba_cpu  # noqa: E402
from skensemble._kernels.numba_cpu import epoch_numba  # noqa: E402


@pytest.mark.parametrize("batch_size", [1, 4])
def test_single_member(batch_size):
    hyper = eng.Hyper(activation="tanh", solver="adam", alpha=1e-3, batch_size=batch_size)
    case = problem((4, 6, 2), hyper, E=1, M=11)
    assert_same(run(eng.epoch_reference, case, hyper), run(epoch_numba, case, hyper))


@pytest.mark.parametrize("batch_size", [1, 3])
def test_members_are_independent(batch_size):
    # Member 1's result must not depend on what member 0 does (separate rows, separate
    # scratch, no shared accumulators), whichever threads run them.
    hyper = eng.Hyper(activation="relu", solver="sgd", alpha=1e-3, batch_size=batch_size)
    case = problem((4, 5, 6, 1), hyper, E=3, M=11)
    base, base_losses = run(epoch_numba, case, hyper)
    for order in case.orders:
        order[0] = order[0].flip(0)
    changed, losses = run(epoch_numba, case, hyper)
    assert not torch.equal(changed.flat[0], base.flat[0])
    assert torch.equal(changed.flat[1:], base.flat[1:])  # (E, P)
    assert torch.equal(changed.state[:, 1:], base.state[:, 1:])  # (S, E, P)
    assert torch.equal(changed.steps, base.steps)
    for loss, loss2 in zip(base_losses, losses, strict=True):
        assert torch.equal(loss2[1:], loss[1:])


@pytest.mark.parametrize("hidden", [(), (1,), (6, 1, 5)], ids=["linear", "width1", "deep"])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_other_architectures(hidden, batch_size):
    # No hidden layer, and a hidden layer of width one (the single-column paths with an
    # activation), three hidden layers.
    hyper = eng.Hyper(activation="tanh", solver="adam", alpha=1e-2, batch_size=batch_size)
    case = problem((4, *hidden, 2), hyper)
    assert_same(run(eng.epoch_reference, case, hyper), run(epoch_numba, case, hyper))


@pytest.mark.parametrize("solver", ["adam", "nesterov", "heavy_ball"])
@pytest.mark.parametrize("batch_size", [4, 5, 9, 17])
def test_blocked_batches(solver, batch_size):
    # Batches of more than one row run four rows at a time, then row by row for the rest:
    # N=17 gives full blocks only (4, last batch 1), blocks and remainders (5: 5,5,5,2;
    # 9: 9,8), and one batch of the whole set (17). Wider layers than the other cases.
    hyper = eng.Hyper(activation="tanh", alpha=1e-2, batch_size=batch_size, **SOLVERS[solver])
    case = problem((7, 9, 11, 2), hyper)
    got = run(epoch_numba, case, hyper)
    assert not torch.equal(got[0].flat, case.params.flat)
    assert_same(run(eng.epoch_reference, case, hyper), got)


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
        hyper = eng.Hyper(activation=activation, loss=loss, alpha=1e-2, batch_size=batch_size,
                          **SOLVERS[solver])
        n_out = 3 if loss == "log_loss" else 1
        case = problem((4, 5, n_out), hyper)
        assert_same(run(eng.epoch_reference, case, hyper), run(epoch_numba, case, hyper))
        codes = numba_cpu._ACT[activation], numba_cpu._LOSS[loss]
        steps = batch_size == 1 or 17 % batch_size == 1, batch_size > 1  # one row, more
        keys.add((*codes, numba_cpu._SOLVER[hyper.solver], *steps))
    assert len(keys) == 6
    assert len({numba_cpu._MEMBERS[key][1] for key in keys}) == len(keys)  # own code each


CACHED_PROCESS = """
import hashlib, json, sys, torch
import numba.core.event as ev
from skensemble import _engine as eng
from skensemble._kernels import numba_cpu
layout = eng.Layout((3, 6, 4, 1))  # one output: the single-column backward path
g = torch.Generator().manual_seed(0)
X, Y = torch.randn(23, 3, generator=g), torch.randn(23, 1, generator=g)
order = torch.randint(0, 23, (2, 23), generator=g)
recorder = ev.RecordingListener()
trained = {}
with ev.install_listener("numba:compile", recorder):
    for activation in sys.argv[1:]:
        # batches of 5 over 23 rows: blocks of four rows, remainders, a short last batch
        hyper = eng.Hyper(activation=activation, batch_size=5)
        flat = eng.init_parameters(layout, [0, 1], hyper.activation)
        state, steps = eng.init_state(flat, hyper)
        for _ in range(2):
            numba_cpu.epoch_numba(eng.Params(flat, state, steps, layout), eng.Data(X, Y),
                                  order, eng.Member.of([0.01, 0.01]), hyper)
        trained[activation] = hashlib.md5(flat.numpy().tobytes()).hexdigest()
print(json.dumps({
    "compiled": len(recorder.buffer) // 2,
    "member_hits": [sum(fn.stats.cache_hits.values()) for fn, _ in numba_cpu._MEMBERS.values()],
    "kernel_hits": sum(numba_cpu._epoch_kernel.stats.cache_hits.values()),
    "trained": trained,
}))
"""


def test_member_epoch_cache_is_found_by_a_new_process_and_computes_the_same(tmp_path):
    # Member epochs are closures: numba keys their disk cache on the closure's cell
    # contents (the configuration's codes), which must be the same in every process.
    # A second configuration goes into the same cache index without replacing the first
    # (numba reads the index from disk before each save) and does not load the first's
    # code. The code loaded from the cache must compute what the code compiled in the
    # process computed, bit for bit: a new environment's first fit equals later ones (with
    # reassociation in the remainder rows' backward, tanh differed in the last bits).
    # Two processes: the first compiles both configurations, the second loads both.
    def run(*activations):
        out = subprocess.run(
            [sys.executable, "-c", CACHED_PROCESS, *activations], capture_output=True,
            text=True, timeout=300,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path),
                 "NUMBA_CACHE_DIR": str(tmp_path)},
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    first = run("relu", "tanh")
    # the second configuration compiled, not loaded from the first's entry
    assert first["compiled"] > 0 and first["member_hits"] == [0, 0]
    both = run("relu", "tanh")
    assert {k: both[k] for k in ("compiled", "member_hits", "kernel_hits")} == {
        "compiled": 0, "member_hits": [1, 1], "kernel_hits": 1}
    assert both["trained"] == first["trained"]
