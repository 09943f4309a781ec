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

from engine_cases import assert_same, problem, run  # noqa: E402

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


def _assert_same(sizes, hyper, epochs=1, lr=0.01, block_k=None, start_steps=None, **kw):
    """Run ``epochs`` epochs with both engines from the same start; compare everything."""
    case = problem(sizes, hyper, E=2, N=7, epochs=epochs, device=DEVICE, **kw)
    if start_steps is not None:
        case.params.steps += torch.tensor(start_steps, device=DEVICE)
    extra = {} if block_k is None else {"_block_k": block_k}
    assert_same(run(eng.epoch_reference, case, hyper, lr),
                run(triton_gpu.epoch_triton, case, hyper, lr, **extra))


# The grid of activations, solvers and losses is tests/test_contract.py's.
def test_heavy_ball_momentum_with_three_outputs():
    hyper = eng.Hyper(
        activation="tanh", solver="sgd", nesterovs_momentum=False, alpha=0.1, batch_size=1
    )
    _assert_same((3, *HIDDEN, 3), hyper)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
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
    assert not triton_gpu.supports(eng.Hyper(solver="lion", batch_size=1),
                                   eng.Layout((3, 4, 1)), DEVICE)
    other = torch.device("cuda" if DEVICE.type == "cpu" else "cpu")
    assert not triton_gpu.supports(hyper, eng.Layout((3, 4, 1)), other)


def test_refuses_a_solver_it_does_not_declare():
    # never a substitute: before the declarations, any solver but adam ran as sgd here
    hyper = eng.Hyper(solver="lion", batch_size=1)
    case = problem((3, 4, 1), eng.Hyper(batch_size=1), E=2, N=7, device=DEVICE)
    with pytest.raises(ValueError, match="solver='lion'"):
        run(triton_gpu.epoch_triton, case, hyper)


def test_rejects_non_contiguous_parameters():
    hyper = eng.Hyper(batch_size=1)
    case = problem((3, 4, 1), hyper, E=2, N=7, device=DEVICE)
    case.params.flat = case.params.flat.t().contiguous().t()  # same values, column-major
    with pytest.raises(ValueError, match="contiguous"):
        triton_gpu.epoch_triton(case.params, case.data, case.orders[0],
                                eng.Member.of([0.01, 0.01], DEVICE), hyper)
