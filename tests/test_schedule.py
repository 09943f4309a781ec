"""The device schedules of the batched epoch, run on the CPU: graph replay and streaming.

Each must give what the plain epochs give: :func:`_schedule.epoch_graphed`'s static-buffer
schedule (eager here, ``capture=False``) against the reference epoch, and
:func:`_schedule.epoch_streamed` (host rows copied chunk by chunk into one reused buffer)
against the unstreamed epoch of the engine it feeds.
"""

import pytest
import torch
from engine_cases import call
from test_engine import CASES, _problem  # the engine tests' small problems

from skensemble import _engine, _schedule
from skensemble._engine import Hyper


@pytest.mark.parametrize("chunk", [1, 4, 64])
@pytest.mark.parametrize("activation, solver, loss", CASES[::6])
def test_graphed_schedule_equals_reference(activation, solver, loss, chunk):
    # The CUDA-graph engine's static-buffer schedule (chunks of steps reading the order
    # from a static buffer, the remainder eagerly), run eagerly on the CPU. Odd N and
    # batch 3 leave a short last batch and a remainder outside the whole chunks.
    X, Y, sw, layout = _problem(loss, E=4, N=29, hidden=(7, 5), O=3)
    hyper = Hyper(activation=activation, loss=loss, solver=solver[0],
                  nesterovs_momentum=solver[1], alpha=0.05, batch_size=3)
    feats = torch.tensor([[0, 2, 3, 1], [3, 3, 1, 0], [2, 1, 0, 3], [0, 1, 2, 3]])
    for features in (None, feats):
        flat = _engine.init_parameters(layout, range(4), activation)
        state, steps = _engine.init_state(flat, hyper)
        f2, s2, t2 = flat.clone(), state.clone(), steps.clone()
        for epoch in range(2):
            order = torch.argsort(torch.rand(4, 29, generator=torch.Generator().manual_seed(epoch)), 1)
            l1 = call(_engine.epoch_reference, flat, state, steps, X, Y, sw, order, 0.01, hyper,
                      layout, features)
            l2 = call(_schedule.epoch_graphed, f2, s2, t2, X, Y, sw, order, 0.01, hyper, layout,
                      features, chunk=chunk, capture=False)
            torch.testing.assert_close(l1, l2, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(flat, f2, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(state, s2, rtol=1e-5, atol=1e-6)
        assert torch.equal(steps, t2)
    assert _schedule.cached_runner_count() == 1
    _schedule.release_graphs()
    assert _schedule.cached_runner_count() == 0


@pytest.mark.parametrize("inner", ["batched", "graphed"])
@pytest.mark.parametrize("chunk_steps", [1, 3, 100])
def test_streamed_epoch_equals_resident(inner, chunk_steps):
    # Odd N, batch 3 and chunks of 1 or 3 batches: the last chunk and the last batch are
    # short. Feature subsets, per-member rates and L2 strengths, no sample weight.
    X, Y, _, layout = _problem("log_loss", E=3, N=31, hidden=(6,), O=3)
    hyper = Hyper(activation="tanh", loss="log_loss", solver="adam", alpha=0.01, batch_size=3)
    feats = torch.tensor([[0, 2, 3, 1], [3, 3, 1, 0], [2, 1, 0, 3]])
    lr, alpha = [0.01, 0.02, 0.0], [0.0, 1e-3, 0.1]
    def graphed(*a, **k):
        return _schedule.epoch_graphed(*a, **k, capture=False)

    inner_fn = _engine.epoch_batched if inner == "batched" else graphed

    def streamed(*a, **k):
        return _schedule.epoch_streamed(inner_fn, *a, **k, chunk_steps=chunk_steps)

    flat = _engine.init_parameters(layout, range(3), "tanh")
    state, steps = _engine.init_state(flat, hyper)
    f2, s2, t2 = flat.clone(), state.clone(), steps.clone()
    for e in range(2):
        order = torch.argsort(torch.rand(3, 31, generator=torch.Generator().manual_seed(e)), 1)
        l1 = call(_engine.epoch_batched, flat, state, steps, X, Y, None, order, lr, hyper,
                  layout, feats, alpha)
        l2 = call(streamed, f2, s2, t2, X, Y, None, order, lr, hyper, layout, feats, alpha)
        torch.testing.assert_close(l1, l2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(flat, f2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state, s2, rtol=1e-5, atol=1e-6)
    assert torch.equal(steps, t2)
    # the graph runner is kept for the next epoch until released (per bucket: test_gpu_readiness)
    assert _schedule.cached_runner_count() == (inner == "graphed")
    _schedule.release_graphs()
    assert _schedule.cached_runner_count() == 0


def test_a_runner_serves_up_to_a_quarter_more_members_than_train():
    # Issue 25: members were padded to a power of two (E=513 computed 1,024).
    assert _schedule._serves(513, 513) and not _schedule._serves(1024, 513)
    assert _schedule._serves(10, 8) and not _schedule._serves(11, 8)
    assert not _schedule._serves(4, 5)
