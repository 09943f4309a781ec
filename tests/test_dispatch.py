"""The dispatcher: device and engine choices, thread budgets, per-thread thread limits."""

import contextlib
import os
import sys
import threading
import types

import numpy as np
import pytest
import torch

import skensemble._kernels
from skensemble import NeuralBaggingRegressor, _dispatch, _engines, _schedule
from skensemble import _engine as eng

CPU = torch.device("cpu")
CUDA = torch.device("cuda")  # a device object only: no CUDA needed to build one
LAYOUT = eng.Layout((4, 8, 1))
HAS_NUMBA = _dispatch._has("numba")
needs_numba = pytest.mark.skipif(not HAS_NUMBA, reason="numba is not installed")


def hyper(batch_size):
    return eng.Hyper(batch_size=batch_size)


def select(requested, hyper, layout, device, subsets=False):
    """``select_engine`` for one group of ``layout`` (with feature subsets or not)."""
    return _dispatch.select_engine(requested, _engines.Request(hyper, layout.sizes, subsets),
                                   device)


def run_in_threads(targets, timeout=60):
    """Run each callable in its own thread at once; re-raise the first failure."""
    errors = []

    def wrap(fn):
        def body():
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        return body

    threads = [threading.Thread(target=wrap(fn)) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a thread did not finish"
    if errors:
        raise errors[0]


# ------------------------------------------------------------------ engine choice
@needs_numba
@pytest.mark.parametrize("batch", [1, 32, _dispatch.MEMBER_MAJOR_MAX_BATCH])
@pytest.mark.parametrize("subsets", [False, True])
def test_auto_cpu_small_batches_run_the_numba_kernel(batch, subsets):
    assert select("auto", hyper(batch), LAYOUT, CPU, subsets) == "numba"


def test_auto_cpu_large_batches_run_batched_torch():
    big = hyper(_dispatch.MEMBER_MAJOR_MAX_BATCH + 1)
    assert select("auto", big, LAYOUT, CPU, False) == "batched"


@needs_numba
def test_auto_cpu_mapped_inputs_run_numba_up_to_the_mapped_limit():
    # first layers that read a map (bins, levels, subsets): numba up to a larger batch
    limit = _dispatch.MEMBER_MAJOR_MAPPED_MAX_BATCH
    assert limit > _dispatch.MEMBER_MAJOR_MAX_BATCH
    assert select("auto", hyper(limit), LAYOUT, CPU, True) == "numba"
    assert select("auto", hyper(limit + 1), LAYOUT, CPU, True) == "batched"


def test_auto_cpu_without_numba_runs_batched_torch(monkeypatch):
    monkeypatch.setattr(_dispatch, "_has", lambda module: False)
    assert "numba" not in _dispatch.available_engines(CPU)
    assert select("auto", hyper(1), LAYOUT, CPU) == "batched"


@pytest.fixture
def fake_triton(monkeypatch):
    """CUDA with Triton available; ``build_mode`` and ``auto_prefers`` answer as the test sets."""
    fake = types.SimpleNamespace(supported=True, preferred=True)
    fake.build_mode = lambda device: "compiled" if fake.supported else None
    fake.auto_prefers = lambda hyper, sizes: fake.preferred
    monkeypatch.setitem(sys.modules, "skensemble._kernels.triton_gpu", fake)
    monkeypatch.setattr(skensemble._kernels, "triton_gpu", fake, raising=False)
    monkeypatch.setattr(
        _dispatch, "available_engines", lambda device: ["reference", "batched", "graphed", "triton"]
    )
    return fake


def test_auto_cuda_prefers_triton_where_supported_and_faster(fake_triton):
    assert select("auto", hyper(32), LAYOUT, CUDA) == "triton"
    fake_triton.preferred = False
    assert select("auto", hyper(32), LAYOUT, CUDA) == "graphed"
    fake_triton.preferred, fake_triton.supported = True, False
    assert select("auto", hyper(32), LAYOUT, CUDA) == "graphed"


def test_auto_cuda_mapped_inputs_run_triton_too(fake_triton):
    # the kernel computes each row's first-layer inputs from the map (columns, bins)
    assert select("auto", hyper(32), LAYOUT, CUDA, True) == "triton"


def test_auto_cuda_without_triton_runs_graphed(monkeypatch):
    monkeypatch.setattr(
        _dispatch, "available_engines", lambda device: ["reference", "batched", "graphed"]
    )
    assert select("auto", hyper(1), LAYOUT, CUDA) == "graphed"


def test_explicit_triton_refuses_unsupported_configurations(fake_triton):
    assert select("triton", hyper(32), LAYOUT, CUDA) == "triton"
    with pytest.raises(ValueError, match="batch_size=65.*engine='auto'"):
        select("triton", hyper(65), LAYOUT, CUDA)
    fake_triton.supported = False
    with pytest.raises(ValueError, match="does not support.*triton >= 3.3.*engine='auto'"):
        select("triton", hyper(32), LAYOUT, CUDA)


@pytest.mark.parametrize("name", ["reference", "batched"] + (["numba"] if HAS_NUMBA else []))
def test_explicit_cpu_engines_are_kept(name):
    assert select(name, hyper(1000), LAYOUT, CPU) == name


@pytest.mark.parametrize(
    "name, device, fix",
    [
        ("fast", CPU, r"unknown; use 'auto' or one of \['reference'"),
        ("numba", CUDA, "runs on the CPU; use device='cpu'"),
        ("graphed", CPU, "needs a CUDA device; use device='cuda'"),
        ("triton", CPU, "needs a CUDA device; use device='cuda'"),
    ],
)
def test_unavailable_engines_raise_naming_the_fix(name, device, fix):
    with pytest.raises(ValueError, match=fix):
        select(name, hyper(1), LAYOUT, device)


@pytest.mark.parametrize("name, device", [("numba", CPU), ("triton", CUDA)])
def test_missing_optional_dependency_says_what_to_install(monkeypatch, name, device):
    monkeypatch.setattr(_dispatch, "_has", lambda module: False)
    with pytest.raises(ValueError, match=f"needs {name}: pip install {name}"):
        select(name, hyper(1), LAYOUT, device)


@needs_numba
def test_numba_is_not_offered_after_a_fork_of_its_openmp_threads(monkeypatch):
    from skensemble._kernels import numba_cpu

    monkeypatch.setattr(numba_cpu, "THREADING_LAYER", "omp")
    monkeypatch.setattr(numba_cpu, "_FORKED", True)
    monkeypatch.setattr(sys, "platform", "linux")
    assert "numba" not in _dispatch.available_engines(CPU)
    assert select("auto", hyper(1), LAYOUT, CPU) == "batched"
    with pytest.raises(ValueError, match="forked.*'spawn'"):
        select("numba", hyper(1), LAYOUT, CPU)


def test_epoch_function_names_every_engine_and_refuses_others():
    assert _dispatch.epoch_function("reference") is eng.epoch_reference
    assert _dispatch.epoch_function("batched") is eng.epoch_batched
    assert _dispatch.epoch_function("graphed") is _schedule.epoch_graphed
    with pytest.raises(ValueError, match="unknown engine 'fast'"):
        _dispatch.epoch_function("fast")


# ------------------------------------------------------------------------ devices
@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "CPU", "", 0, None, torch.device("cpu")])
def test_resolve_device_rejects_what_it_does_not_understand(bad):
    with pytest.raises(ValueError, match="use 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        _dispatch.resolve_device(bad)


def test_resolve_device_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _dispatch.resolve_device("auto") == CPU
    assert _dispatch.resolve_device("cpu") == CPU
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ValueError, match="CUDA is not available.*device='cpu'"):
            _dispatch.resolve_device(name)


def test_resolve_device_with_one_cuda_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert _dispatch.resolve_device("auto") == torch.device("cuda")
    assert _dispatch.resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match="only 1 CUDA device"):
        _dispatch.resolve_device("cuda:1")


# ---------------------------------------------------------------- thread budgets
@pytest.fixture
def four_cores(monkeypatch):
    """Four cores in the affinity mask, no OMP_NUM_THREADS, torch at 8 threads."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(_dispatch, "_own_torch_threads", lambda: 8)


def test_default_threads_is_the_affinity_mask(four_cores):
    assert _dispatch.default_threads() == 4


@pytest.mark.parametrize("value, expected", [("3", 3), ("1", 1), ("16", 4), ("0", 4), ("x", 4)])
def test_default_threads_honours_omp_num_threads(four_cores, monkeypatch, value, expected):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert _dispatch.default_threads() == expected


def test_default_threads_honours_torch_threads(four_cores, monkeypatch):
    monkeypatch.setattr(_dispatch, "_own_torch_threads", lambda: 2)
    assert _dispatch.default_threads() == 2


def test_default_threads_caps_small_work(four_cores):
    w = _dispatch.MIN_WORK_PER_THREAD
    assert _dispatch.default_threads(0) == 1
    assert _dispatch.default_threads(w - 1) == 1
    assert _dispatch.default_threads(w) == 2
    assert _dispatch.default_threads(2 * w) == 3
    assert _dispatch.default_threads(100 * w) == 4


# -------------------------------------------------------------- thread limits
def numba_threads():
    """This thread's numba thread count (None without numba)."""
    if not HAS_NUMBA:
        return None
    import numba

    return numba.get_num_threads()


MAX_NUMBA = None
if HAS_NUMBA:
    import numba

    MAX_NUMBA = numba.config.NUMBA_NUM_THREADS


@pytest.mark.parametrize("engine", ["batched", "reference"])
def test_thread_limit_sets_torch_threads_and_restores_them(engine):
    before = torch.get_num_threads()
    with _dispatch.thread_limit(3, engine):
        assert torch.get_num_threads() == 3
        with _dispatch.thread_limit(2, engine):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 3
    assert torch.get_num_threads() == before


def test_thread_limit_restores_after_an_exception():
    before = torch.get_num_threads()
    with pytest.raises(KeyError), _dispatch.thread_limit(before + 2, "batched"):
        raise KeyError
    assert torch.get_num_threads() == before


@needs_numba
def test_thread_limit_numba_sets_numba_threads_and_gives_torch_one():
    from skensemble._kernels import numba_cpu

    torch_before, numba_before = torch.get_num_threads(), numba_threads()
    with _dispatch.thread_limit(MAX_NUMBA, "numba"):
        assert numba_threads() == MAX_NUMBA
        assert torch.get_num_threads() == 1  # torch only keeps the books beside the kernel
        with _dispatch.thread_limit(1, "numba"):
            assert numba_threads() == 1
        assert numba_threads() == MAX_NUMBA
    assert (torch.get_num_threads(), numba_threads()) == (torch_before, numba_before)
    # The layer was chosen before the first parallel call: thread-safe, not workqueue.
    assert numba.threading_layer() == numba_cpu.THREADING_LAYER
    if numba_cpu.THREADING_LAYER != "workqueue":
        assert isinstance(numba_cpu.KERNEL_LOCK, contextlib.nullcontext)
    assert numba_cpu.THREADING_LAYER in ("tbb", "omp", "workqueue")


@needs_numba
def test_thread_limit_numba_respects_a_lower_numba_setting_of_the_thread():
    def body():
        numba.set_num_threads(1)
        with _dispatch.thread_limit(MAX_NUMBA, "numba"):
            assert numba_threads() == 1
        assert numba_threads() == 1

    run_in_threads([body])


FRESH_PROCESS = """
import numba, torch
torch.get_num_threads()
torch.set_num_threads(1)
from skensemble import _engine as eng
from skensemble._kernels import numba_cpu
assert torch.get_num_threads() == 1, torch.get_num_threads()  # the layer's start kept it
hyper, layout = eng.Hyper(batch_size=2), eng.Layout((3, 4, 1))
flat = eng.init_parameters(layout, [0, 1], hyper.activation)
state, steps = eng.init_state(flat, hyper)
X, Y = torch.randn(6, 3), torch.randn(6, 1)
numba_cpu.epoch_numba(eng.Params(flat, state, steps, layout), eng.Data(X, Y),
                      torch.zeros(2, 4, dtype=torch.long), eng.Member.of([0.01, 0.01]),
                      hyper)  # the first parallel call of the process
print(numba.threading_layer(), numba_cpu.THREADING_LAYER)
"""


@needs_numba
@pytest.mark.skipif("NUMBA_THREADING_LAYER" in os.environ, reason="the user chose a layer")
def test_kernel_starts_a_thread_safe_layer_and_keeps_torch_threads():
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS], capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert out.returncode == 0, out.stderr
    running, chosen = out.stdout.split()
    assert running == chosen
    loadable = []
    for name in ("tbb", "omp"):
        try:
            __import__(f"numba.np.ufunc.{name}pool")
            loadable.append(name)
        except (ImportError, OSError):
            pass
    assert running in (loadable or ["workqueue"])


WORKQUEUE_PROCESS = """
import threading, torch
from skensemble import _engine as eng
from skensemble._kernels import numba_cpu
assert numba_cpu.THREADING_LAYER == "workqueue"
hyper, layout = eng.Hyper(batch_size=2), eng.Layout((3, 8, 1))
X, Y = torch.randn(64, 3), torch.randn(64, 1)
def train():
    flat = eng.init_parameters(layout, [0, 1, 2, 3], hyper.activation)
    state, steps = eng.init_state(flat, hyper)
    for _ in range(30):
        order = torch.randint(0, 64, (4, 64))
        numba_cpu.epoch_numba(eng.Params(flat, state, steps, layout), eng.Data(X, Y), order,
                              eng.Member.of([0.01] * 4), hyper)
threads = [threading.Thread(target=train) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print("ok")
"""


@needs_numba
def test_workqueue_layer_is_serialised_not_aborted():
    """The user's choice of workqueue is kept; concurrent kernel calls then take turns."""
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", WORKQUEUE_PROCESS], capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path),
             "NUMBA_THREADING_LAYER": "workqueue"},
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_thread_limit_is_per_thread_with_four_threads_at_once():
    """Each block sees its own limit while all four are inside; all is restored after."""
    limits = [1, 2, 3, 4]
    start, inside, leave = (threading.Barrier(len(limits)) for _ in range(3))
    seen, after = {}, {}
    main_before = torch.get_num_threads()

    def fit_like(i):
        def body():
            before = torch.get_num_threads()  # every thread has touched torch ...
            start.wait(10)  # ... before any block begins
            with _dispatch.thread_limit(limits[i], "batched"):
                inside.wait(10)  # all four blocks are active now
                seen[i] = torch.get_num_threads()
                leave.wait(10)  # ... and stay so until every thread has looked
            after[i] = (before, torch.get_num_threads())

        return body

    run_in_threads([fit_like(i) for i in range(len(limits))])
    assert seen == dict(enumerate(limits))
    assert all(b == a for b, a in after.values()), after
    assert torch.get_num_threads() == main_before


def test_thread_limit_leaves_new_threads_the_process_default():
    """A thread first seen while another thread's block holds a limit gets the default."""
    default = torch.get_num_threads()
    entered, done = threading.Event(), threading.Event()
    seen = {}

    def holder():
        with _dispatch.thread_limit(default + 3, "batched"):
            entered.set()
            done.wait(10)

    def newcomer():
        entered.wait(10)
        seen["budget"] = _dispatch.default_threads()  # first torch read of this thread
        seen["own"] = torch.get_num_threads()
        with _dispatch.thread_limit(default + 1, "batched"):
            seen["inside"] = torch.get_num_threads()
        seen["after"] = torch.get_num_threads()
        done.set()

    run_in_threads([holder, newcomer])
    assert seen["own"] == seen["after"] == default
    assert seen["inside"] == default + 1
    assert seen["budget"] <= default

    # After every block left, a brand-new thread adopts the default again.
    fresh = {}
    run_in_threads([lambda: fresh.setdefault("n", torch.get_num_threads())])
    assert fresh["n"] == default


def test_last_block_out_restores_the_default_even_from_a_thread_with_its_own_count():
    default = torch.get_num_threads()
    own = default + 2
    ready, first_in, second_in, first_out = (threading.Event() for _ in range(4))
    seen = {}

    def first():
        with _dispatch.thread_limit(default + 1, "batched"):
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second():
        torch.get_num_threads()  # torch initialises this thread (else its set would not hold)
        torch.set_num_threads(own)  # ... which then gets its own count, before any block
        ready.set()
        first_in.wait(10)
        with _dispatch.thread_limit(default + 3, "batched"):
            second_in.set()
            first_out.wait(10)  # leaves last: its exit writes its own count process-wide
        seen["own"] = torch.get_num_threads()

    t2 = threading.Thread(target=second)
    t2.start()
    ready.wait(10)
    torch.set_num_threads(default)  # the process-wide value is the default again
    run_in_threads([first])
    t2.join(10)
    assert seen["own"] == own
    fresh = {}
    run_in_threads([lambda: fresh.setdefault("n", torch.get_num_threads())])
    assert fresh["n"] == default


@needs_numba
def test_thread_limit_numba_is_per_thread_with_four_threads_at_once():
    limits = [1, 2, 1, 2]
    start, inside, leave = (threading.Barrier(len(limits)) for _ in range(3))
    seen, after = {}, {}

    def body(i):
        def run():
            before = numba_threads()
            start.wait(10)
            with _dispatch.thread_limit(limits[i], "numba"):
                inside.wait(10)
                seen[i] = (numba_threads(), torch.get_num_threads())
                leave.wait(10)
            after[i] = (before, numba_threads())

        return run

    run_in_threads([body(i) for i in range(len(limits))])
    assert seen == {i: (min(n, MAX_NUMBA), 1) for i, n in enumerate(limits)}
    assert all(b == a for b, a in after.values()), after


# ------------------------------------------------------- concurrent real fits
def _concurrent_fits(monkeypatch, engine, wanted):
    """Fit one estimator per entry of ``wanted`` (the thread budget its fit gets), all at
    once in threads; record the thread counts each fit's epochs ran under."""
    names = [f"fit-{i}" for i in range(len(wanted))]
    budget = dict(zip(names, wanted))
    # Each fit's budget depends on the thread it runs in.
    monkeypatch.setattr(
        _dispatch, "default_threads",
        lambda work=None: budget.get(threading.current_thread().name, 1),
    )
    real = _dispatch.epoch_function
    counts = {name: set() for name in names}
    together = threading.Barrier(len(names))

    def recording(name):
        fn = real(name)

        def epoch(*args, **kwargs):
            me = threading.current_thread().name
            if not counts[me]:
                together.wait(30)  # every fit is inside its block before any trains
            counts[me].add((numba_threads(), torch.get_num_threads()))
            return fn(*args, **kwargs)

        return epoch

    monkeypatch.setattr(_dispatch, "epoch_function", recording)
    rng = np.random.RandomState(0)
    X = rng.normal(size=(80, 4))
    y = X[:, 0] - X[:, 1]
    make = [
        lambda i=i: NeuralBaggingRegressor(
            n_estimators=2 + i % 2, hidden_layer_sizes=(6,), batch_size=8, max_iter=3,
            engine=engine, random_state=i,
        )
        for i in range(len(names))
    ]
    preds = {}

    def fit(i):
        def run():
            preds[i] = make[i]().fit(X, y).predict(X)

        return run

    threads = [threading.Thread(target=fit(i), name=names[i]) for i in range(len(names))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(preds) == len(names), "a fit failed or hung"
    monkeypatch.undo()
    for i in range(len(names)):  # the same fits one after another
        np.testing.assert_array_equal(preds[i], make[i]().fit(X, y).predict(X))
    return [counts[name] for name in names]


@needs_numba
def test_concurrent_numba_fits_each_run_under_their_own_limit(monkeypatch):
    wanted = [1, 2, 1, 2]
    counts = _concurrent_fits(monkeypatch, "numba", wanted)
    members = [2, 3, 2, 3]  # n_estimators caps the numba threads
    expected = [{(min(w, m, MAX_NUMBA), 1)} for w, m in zip(wanted, members)]
    assert counts == expected


def test_concurrent_batched_fits_each_run_under_their_own_limit(monkeypatch):
    wanted = [1, 2, 3, 4]
    counts = _concurrent_fits(monkeypatch, "batched", wanted)
    assert counts == [{(MAX_NUMBA, w)} for w in wanted]  # numba: left at its default


# ------------------------------------------------- device="auto": the CPU where it is faster
@pytest.mark.parametrize("E, P, B, cpu", [
    (5, 431, 1, True), (5, 431, 32, True),  # measured: CPU 0.019 / 0.008 s, H200 0.030 / 0.027 s
    (50, 431, 1, False), (50, 431, 32, False),  # H200 0.031 / 0.027 s, CPU 0.18 / 0.076 s
    (5, 431, 256, False),  # the graphed engine: 0.0038 s per epoch
    (1000, 13301, 1, False), (5, 13301, 1, False),
])
def test_cpu_is_faster_follows_the_measured_crossover(E, P, B, cpu):
    assert _dispatch.cpu_is_faster(E, P, B, 10_000) is cpu


def test_device_auto_picks_the_cpu_for_small_fits_and_records_it():
    from fake_cuda import fake_cuda

    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(120, 4)), rng.normal(size=120)
    small = dict(n_estimators=3, hidden_layer_sizes=(4,), batch_size=1, max_iter=2,
                 numeric_encoding="none", random_state=0)
    with fake_cuda():
        auto = NeuralBaggingRegressor(**small).fit(X, y)  # device="auto" by default
        forced = NeuralBaggingRegressor(**small, device="cuda", engine="batched").fit(X, y)
        big = NeuralBaggingRegressor(**dict(small, n_estimators=40, hidden_layer_sizes=(64,)),
                                     engine="batched").fit(X, y)
    assert auto.device_ == "cpu" and auto.engine_ in ("numba", "batched")
    assert forced.device_ == "cuda" and big.device_ == "cuda"
    assert _dispatch.fit_device("cuda:0", 1, (2, 1), 1, 10) == "cuda:0"
    with fake_cuda():
        assert _dispatch.fit_device("auto", 3, (4, 4, 1), 1, 120) == "cpu"
    assert _dispatch.fit_device("auto", 3, (4, 4, 1), 1, 120) == "auto"  # no CUDA: as is
    cpu = NeuralBaggingRegressor(**small, device="cpu").fit(X, y)
    np.testing.assert_array_equal(auto.predict(X), cpu.predict(X))  # the same CPU fit
