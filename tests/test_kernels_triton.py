"""The member-major Triton kernel equals the torch reference epoch.

Without CUDA the kernel runs under the Triton interpreter: ``TRITON_INTERPRET=1`` is set
here before triton and the kernel module are imported (triton reads it when it decorates
functions, its own library included), and numpy then executes each member's program on
the CPU. That is slow, so the problems are tiny (E=2, N=7, hidden widths of a few units).
If another module imported triton first, this module is skipped. With CUDA the same tests
compile and run the real kernel on the GPU, the reference running there too.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # before triton and the kernels are imported

pytest.importorskip("triton")

from skensemble import _engine as eng  # noqa: E402
from skensemble._kernels import triton_gpu  # noqa: E402

_MODE = triton_gpu._build_mode()
if _MODE is None or (_MODE == "compiled" and not torch.cuda.is_available()):
    # Triton decorates its own library at import: too late once another module imported it.
    pytest.skip(
        "triton was imported before TRITON_INTERPRET=1 was set; run this file in its own "
        "process or set TRITON_INTERPRET=1 in conftest.py",
        allow_module_level=True,
    )
DEVICE = torch.device("cuda" if _MODE == "compiled" else "cpu")

HIDDEN = (4, 5)


def _problem(sizes, hyper, E=2, N=7, M=None, weighted=True, seed=0):
    """Initial parameters, zero state, data and per-member orders on DEVICE."""
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
    sw = torch.rand(N, generator=g) + 0.5 if weighted else None
    order = torch.randint(0, N, (E, M or N), generator=g)
    params = [flat.to(DEVICE), state.to(DEVICE), steps.to(DEVICE)]
    sw = None if sw is None else sw.to(DEVICE)
    return layout, params, X.to(DEVICE), Y.to(DEVICE), sw, order.to(DEVICE)


def _assert_same(sizes, hyper, epochs=1, lr=0.01, block_k=None, start_steps=None, **kw):
    """Run ``epochs`` epochs with both engines from the same start; compare everything."""
    layout, params, X, Y, sw, order = _problem(sizes, hyper, **kw)
    if start_steps is not None:
        params[2] += torch.tensor(start_steps, device=DEVICE)
    ref = [t.clone() for t in params]
    tri = [t.clone() for t in params]
    for epoch in range(epochs):
        order_e = order.roll(epoch, dims=1)
        loss_ref = eng.epoch_reference(*ref, X, Y, sw, order_e, lr, hyper, layout)
        loss_tri = triton_gpu.epoch_triton(
            *tri, X, Y, sw, order_e, lr, hyper, layout, _block_k=block_k
        )
        names = ("flat", "state", "steps", "loss")
        for name, a, b in zip(names, tri + [loss_tri], ref + [loss_ref], strict=True):
            torch.testing.assert_close(
                a, b, rtol=1e-5, atol=1e-5, msg=lambda m, n=name, e=epoch: f"{n}, epoch {e}: {m}"
            )


# ------------------------------------------------------------------- the full grid
@pytest.mark.parametrize("n_outputs", [1, 3])
@pytest.mark.parametrize("loss", eng.LOSSES)
@pytest.mark.parametrize("solver", eng.SOLVERS)
@pytest.mark.parametrize("activation", eng.ACTIVATIONS)
def test_matches_reference(activation, solver, loss, n_outputs):
    hyper = eng.Hyper(activation=activation, loss=loss, solver=solver, alpha=0.1, batch_size=1)
    _assert_same((3, *HIDDEN, n_outputs), hyper)


# ------------------------------------------------------------- beyond the grid
def test_heavy_ball_momentum():
    hyper = eng.Hyper(
        activation="tanh", solver="sgd", nesterovs_momentum=False, alpha=0.1, batch_size=1
    )
    _assert_same((3, *HIDDEN, 2), hyper)


@pytest.mark.parametrize("solver", eng.SOLVERS)
def test_batches_accumulate_gradients(solver):
    # M=7 rows in batches of 3: the last batch has one row and its own 1/b and alpha/b.
    hyper = eng.Hyper(
        activation="logistic", loss="log_loss", solver=solver, alpha=0.1, batch_size=3
    )
    _assert_same((3, *HIDDEN, 3), hyper, weighted=False)


@pytest.mark.parametrize("hidden", [(6,), (6, 5, 7)])
def test_one_and_three_hidden_layers(hidden):
    hyper = eng.Hyper(activation="relu", solver="adam", alpha=0.1, batch_size=1)
    _assert_same((3, *hidden, 2), hyper)


def test_several_blocks_and_padding():
    # Input and hidden widths that are not powers of two, walked in blocks of 4 rows.
    hyper = eng.Hyper(activation="tanh", loss="log_loss", solver="adam", alpha=0.1, batch_size=2)
    _assert_same((9, 11, 6, 3), hyper, block_k=4)


def test_epochs_continue_state_and_step_counts():
    # Adam's bias correction reads each member's own step count; members out of step.
    hyper = eng.Hyper(
        activation="relu", loss="squared_error", solver="adam", alpha=0.1, batch_size=1
    )
    _assert_same((3, *HIDDEN, 2), hyper, epochs=2, start_steps=[0, 5], M=5)


def test_supports():
    hyper = eng.Hyper(batch_size=1)
    assert triton_gpu.supports(hyper, eng.Layout((3, 4, 5, 1)), DEVICE)
    assert triton_gpu.supports(hyper, eng.Layout((3, 4, 1)), DEVICE)
    assert triton_gpu.supports(hyper, eng.Layout((3, 4, 5, 6, 1)), DEVICE)
    assert not triton_gpu.supports(hyper, eng.Layout((3, 1)), DEVICE)
    assert not triton_gpu.supports(hyper, eng.Layout((3, 4, 4, 4, 4, 1)), DEVICE)
    assert not triton_gpu.supports(hyper, eng.Layout((3, triton_gpu.MAX_WIDTH + 1, 1)), DEVICE)
    big = eng.Hyper(batch_size=triton_gpu.MAX_BATCH + 1)
    assert not triton_gpu.supports(big, eng.Layout((3, 4, 1)), DEVICE)
    other = torch.device("cuda" if DEVICE.type == "cpu" else "cpu")
    assert not triton_gpu.supports(hyper, eng.Layout((3, 4, 1)), other)


def test_rejects_non_contiguous_parameters():
    hyper = eng.Hyper(batch_size=1)
    layout, (flat, state, steps), X, Y, sw, order = _problem((3, 4, 1), hyper)
    flat_t = flat.t().contiguous().t()  # same values, column-major
    with pytest.raises(ValueError, match="contiguous"):
        triton_gpu.epoch_triton(flat_t, state, steps, X, Y, sw, order, 0.01, hyper, layout)


def test_rejects_feature_subsets():
    hyper = eng.Hyper(batch_size=1)
    layout, (flat, state, steps), X, Y, sw, order = _problem((3, 4, 1), hyper)
    features = torch.zeros(2, 3, dtype=torch.int64, device=DEVICE)
    with pytest.raises(ValueError, match="feature subsets"):
        triton_gpu.epoch_triton(flat, state, steps, X, Y, sw, order, 0.01, hyper, layout, features)
