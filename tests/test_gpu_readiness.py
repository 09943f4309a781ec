"""Issue 11's fixes for the CUDA paths, checked on the CPU.

The graph runner (captures per fit, per thread), the Triton kernel's compile-time
arguments (one compiled kernel for many data sets), and the fall-back from a Triton
kernel that fails on the device to the graphed engine.
"""

import threading

import numpy as np
import pytest
import torch
from engine_cases import call
from fake_cuda import fake_cuda

from skensemble import NeuralBaggingRegressor, _dispatch, _engine, _schedule, _training
from skensemble._engine import Hyper, Layout

# n_bins=8 and a constant rate: members that stop at many different epochs (what these
# tests need), as the defaults of the time gave
SETTINGS = dict(n_estimators=8, hidden_layer_sizes=(8,), max_iter=30, early_stopping=True,
                n_iter_no_change=2, random_state=0, batch_size=8, n_bins=8,
                learning_rate="constant")


@pytest.fixture(autouse=True)
def keyed_orders(monkeypatch):
    """Fits on the CPU draw the keyed orders a CUDA device draws, so that they compare."""
    monkeypatch.setattr(_training, "KEYED_ORDER", True)


@pytest.fixture
def noise_data():
    rng = np.random.RandomState(0)
    return rng.normal(size=(160, 4)), rng.normal(size=160)


@pytest.fixture
def count_runners(monkeypatch):
    """Record the member capacity of every graph runner made."""
    made = []
    real = _schedule._ChunkRunner.__init__

    def spy(self, C, *args, **kwargs):
        made.append(C)
        real(self, C, *args, **kwargs)

    monkeypatch.setattr(_schedule._ChunkRunner, "__init__", spy)
    monkeypatch.setattr(_schedule, "CAPTURE_GRAPHS", False)  # the static-buffer schedule, eager
    return made


@pytest.mark.parametrize("stream", [None, 2])
def test_graphs_are_made_per_member_bucket_not_per_epoch_or_chunk(
        noise_data, count_runners, monkeypatch, stream):
    # Before: the runner was keyed on the data pointers of the active members' gathered
    # parameters, so once members stopped every epoch captured a new graph, and every
    # streamed chunk too. Now one per fall of the active members below C / SLACK.
    X, y = noise_data
    monkeypatch.setattr(_schedule, "STREAM_CHUNK_STEPS", stream)
    with fake_cuda():
        est = NeuralBaggingRegressor(**SETTINGS, engine="graphed", device="cuda").fit(X, y)
        pred = est.predict(X)
    n_iter = est.n_iter_per_member_
    assert len(set(n_iter)) > 2 and n_iter.max() > 6  # many epochs on changing subsets
    # the first runner for exactly the 8 members; a new one only once the active members
    # are fewer than C / SLACK (issue 25: no padding to a power of two)
    assert count_runners[0] == 8
    assert all(b * _schedule.SLACK < a for a, b in zip(count_runners, count_runners[1:]))
    assert len(count_runners) <= 1 + np.log(8) / np.log(_schedule.SLACK)
    assert _schedule.cached_runner_count() == 0  # released when the fit ended
    monkeypatch.setattr(_schedule, "STREAM_CHUNK_STEPS", None)
    cpu = NeuralBaggingRegressor(**SETTINGS, engine="batched", device="cpu").fit(X, y)
    np.testing.assert_array_equal(n_iter, cpu.n_iter_per_member_)
    np.testing.assert_allclose(pred, cpu.predict(X), rtol=1e-5, atol=1e-6)


def test_adaptive_rates_train_in_one_call_on_the_graphed_engine(noise_data, count_runners,
                                                                monkeypatch):
    # Members at different rates (adaptive schedule) no longer split the epoch into one
    # call (and one graph) per rate: the graphed engine takes a rate per member.
    X, y = noise_data
    kw = dict(SETTINGS, solver="sgd", learning_rate="adaptive", learning_rate_init=0.05,
              max_iter=15)
    calls = []
    real = _training._epoch_subset

    def spy(epoch_fn, members, *args):
        calls.append(np.unique(args[-3]).size)  # distinct rates in this call
        return real(epoch_fn, members, *args)

    monkeypatch.setattr(_training, "_epoch_subset", spy)
    with fake_cuda():
        est = NeuralBaggingRegressor(**kw, engine="graphed", device="cuda").fit(X, y)
        pred = est.predict(X)
    assert len(calls) == est.n_iter_per_member_.max()  # one call per epoch
    assert max(calls) > 1  # ... with members at different rates
    assert len(count_runners) <= 4
    cpu = NeuralBaggingRegressor(**kw, engine="batched", device="cpu").fit(X, y)
    np.testing.assert_allclose(pred, cpu.predict(X), rtol=1e-5, atol=1e-6)


def test_graph_runners_are_per_thread(count_runners):
    # Two fits' epochs interleaved in two threads: each thread keeps its own runner
    # (before, one global cache: each fit dropped the other's and recaptured every
    # epoch), and both equal the same epochs run one thread at a time.
    layout = Layout((4, 6, 1))
    hyper = Hyper(activation="tanh", solver="adam", batch_size=4)
    rng = np.random.RandomState(0)
    data = [(torch.from_numpy(rng.normal(size=(40, 4)).astype(np.float32)),
             torch.from_numpy(rng.normal(size=(40, 1)).astype(np.float32))) for _ in range(2)]
    order = torch.argsort(torch.rand(3, 40, generator=torch.Generator().manual_seed(0)), 1)

    def epochs(i, barrier=None):
        flat = _engine.init_parameters(layout, [i, i + 1, i + 2], "tanh")
        state, steps = _engine.init_state(flat, hyper)
        for _ in range(3):
            if barrier is not None:
                barrier.wait()  # the other thread's epoch runs between two of ours
            call(_schedule.epoch_graphed, flat, state, steps, *data[i], None, order, 0.01,
                 hyper, layout, chunk=2)
        kept = _schedule.cached_runner_count()
        _schedule.release_graphs()
        return flat, kept

    alone = [epochs(i)[0] for i in range(2)]
    assert len(count_runners) == 2
    out, errors, barrier = [None, None], [], threading.Barrier(2)

    def work(i):
        try:
            out[i] = epochs(i, barrier)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert len(count_runners) == 4  # one more per thread, none rebuilt
    for (got, kept), want in zip(out, alone):
        assert kept == 1
        torch.testing.assert_close(got, want, rtol=0, atol=0)


# ---------------------------------------------------------------------- triton
triton_gpu = pytest.importorskip("skensemble._kernels.triton_gpu")
needs_interpreter = pytest.mark.skipif(
    triton_gpu._build_mode() != "interpreted", reason="needs Triton's interpreter")


def test_compile_time_arguments_leave_data_and_exact_widths_to_run_time():
    # Data size, input width, exact widths and batch size (beyond 1) are run-time
    # arguments: they must not change what gets compiled.
    base = Hyper(activation="tanh", solver="sgd", batch_size=4)
    key = triton_gpu.compile_time_arguments(base, Layout((30, 100, 1)))
    for F in (1, 7, 30, 500):
        for H in (65, 100, 128):
            for B in (2, 3, 16):
                hyper = Hyper(activation="tanh", solver="sgd", batch_size=B)
                assert triton_gpu.compile_time_arguments(hyper, Layout((F, H, 1))) == key
    # ...while what changes the code does
    for other in (Hyper(activation="relu", solver="sgd", batch_size=4),
                  Hyper(activation="tanh", solver="sgd", batch_size=1),
                  Hyper(activation="tanh", solver="adam", batch_size=4)):
        assert triton_gpu.compile_time_arguments(other, Layout((30, 100, 1))) != key
    assert triton_gpu.compile_time_arguments(base, Layout((30, 129, 1))) != key
    assert triton_gpu.compile_time_arguments(base, Layout((30, 100, 100, 1))) != key


@pytest.mark.parametrize("width, batch, prefers", [
    (100, 1, True), (100, 4, True), (100, 8, False),  # H200 crossover: between 4 and 8
    (30, 16, True), (30, 32, True), (30, 64, False),  # between 16 and 32 (E=1000)
    (10, 32, True), (10, 33, False),  # above 32: capped where nothing was measured
    (1000, 1, True),  # batch 1 always
])
def test_auto_takes_triton_for_small_batches_and_members(width, batch, prefers):
    hyper = Hyper(activation="tanh", solver="sgd", batch_size=batch)
    layout = Layout((30, width, width, 1))
    assert triton_gpu.auto_prefers(hyper, layout.sizes) is prefers


@needs_interpreter
def test_one_kernel_variant_serves_many_data_sets_and_widths(monkeypatch):
    # Launches under the interpreter, counted by their compile-time arguments: on a GPU
    # each distinct set is one compilation.
    monkeypatch.setattr(triton_gpu, "COMPILED_VARIANTS", set())
    hyper_for = {B: Hyper(activation="tanh", solver="adam", batch_size=B) for B in (2, 5)}
    rng = np.random.RandomState(0)
    for F, H, N, B in [(3, 5, 20, 2), (6, 7, 9, 5), (11, 8, 31, 2), (2, 6, 13, 5)]:
        layout = Layout((F, H, 2))
        hyper = hyper_for[B]
        X = torch.from_numpy(rng.normal(size=(N, F)).astype(np.float32))
        Y = torch.from_numpy(rng.normal(size=(N, 2)).astype(np.float32))
        flat = _engine.init_parameters(layout, range(2), "tanh")
        state, steps = _engine.init_state(flat, hyper)
        f2, s2, t2 = flat.clone(), state.clone(), steps.clone()
        order = torch.argsort(torch.rand(2, N, generator=torch.Generator().manual_seed(F)), 1)
        call(triton_gpu.epoch_triton, flat, state, steps, X, Y, None, order, 0.01, hyper, layout)
        call(_engine.epoch_reference, f2, s2, t2, X, Y, None, order, 0.01, hyper, layout)
        torch.testing.assert_close(flat, f2, rtol=1e-5, atol=1e-6)
    assert len(triton_gpu.COMPILED_VARIANTS) == 1


# -------------------------------------------------------------------- fall-back
def _broken_triton(params, *args, **kwargs):
    params.flat.mul_(0.0).add_(123.0)  # a partial launch must not leave its mark
    params.state.add_(1.0)
    params.steps.add_(5)
    raise RuntimeError("PTX JIT compilation failed\nmore details")


@pytest.fixture
def triton_chosen(monkeypatch):
    """engine='auto' picks Triton on the CPU, and Triton's epoch fails."""
    real_select, real_fn = _dispatch.select_engine, _dispatch.epoch_function
    monkeypatch.setattr(_dispatch, "select_engine",
                        lambda requested, *a, **k: "triton" if requested in ("auto", "triton")
                        else real_select(requested, *a, **k))
    monkeypatch.setattr(_dispatch, "epoch_function",
                        lambda name: _broken_triton if name == "triton" else real_fn(name))


def test_auto_falls_back_from_a_failing_triton_kernel(noise_data, triton_chosen):
    X, y = noise_data
    kw = dict(SETTINGS, max_iter=5)
    with pytest.warns(RuntimeWarning, match=r"Triton kernel failed .*RuntimeError: PTX JIT "
                      r"compilation failed\); training with engine='graphed'") as record:
        est = NeuralBaggingRegressor(**kw, engine="auto").fit(X, y)
    assert record[0].filename == __file__
    assert est.engine_ == "graphed (triton failed: RuntimeError)"
    ref = NeuralBaggingRegressor(**kw, engine="batched").fit(X, y)
    np.testing.assert_allclose(est.predict(X), ref.predict(X), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(est.n_iter_per_member_, ref.n_iter_per_member_)


def test_explicit_triton_still_raises_the_kernel_error(noise_data, triton_chosen):
    X, y = noise_data
    with pytest.raises(RuntimeError, match="PTX JIT compilation failed"):
        NeuralBaggingRegressor(**SETTINGS, engine="triton").fit(X, y)
