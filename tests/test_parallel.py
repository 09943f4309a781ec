"""n_jobs: members trained in chunks (joblib, Dask) equal one process's, bit for bit.

Each member's rows, features, hold-out, initial weights and visiting orders come from
its own seed and position, so chunks of members trained in other processes and merged
must give exactly the fit of one process: every fitted array, every curve and every
prediction. Failures in a worker leave the estimator as it was.
"""

import os
import signal
import sys
import threading
import time

import cloudpickle
import joblib
import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal

from skensemble import (
    NeuralBaggingClassifier,
    NeuralBaggingRegressor,
    _dispatch,
    _groups,
    _parallel,
    _training,
)
from skensemble._tasks import Regression

# Classes and functions of this module travel to loky workers by value, with the globals
# they read as they are here. Dask pickles them by reference and its workers import this
# module again: they read the test process's pid from the environment they inherited.
cloudpickle.register_pickle_by_value(sys.modules[__name__])
os.environ.setdefault("SKENSEMBLE_TEST_PARENT_PID", str(os.getpid()))
PARENT = int(os.environ["SKENSEMBLE_TEST_PARENT_PID"])

SMALL = dict(n_estimators=5, hidden_layer_sizes=(8,), max_iter=8, random_state=0)
TASKS = pytest.mark.parametrize(
    "Estimator, data",
    [(NeuralBaggingRegressor, "regression_data"),
     (NeuralBaggingClassifier, "classification_data")],
    ids=["regressor", "classifier"],
)


def _assert_same_fit(a, b):
    """Every fitted array of ``a`` and ``b`` equal, bit for bit."""
    assert len(a._fitted.groups) == len(b._fitted.groups)
    for ga, gb in zip(a._fitted.groups, b._fitted.groups):
        assert ga.sizes == gb.sizes
        for name in ("members", "flat", "opt_state", "steps", "lr", "alpha"):
            va, vb = getattr(ga, name, None), getattr(gb, name, None)
            assert (va is None) == (vb is None), name
            if va is not None:
                assert_array_equal(va, vb, err_msg=name)
    for name in ("loss_curve_", "n_iter_per_member_", "validation_loss_curve_",
                 "validation_scores_", "best_validation_loss_", "ensemble_weights_",
                 "oob_prediction_", "oob_decision_function_", "oob_score_"):
        assert hasattr(a, name) == hasattr(b, name), name
        if hasattr(a, name):
            assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.n_iter_ == b.n_iter_ and a.engine_ == b.engine_


def _outputs(est, X):
    if hasattr(est, "predict_proba"):
        return est.predict_proba(X), est.predict_proba_members(X)
    return est.predict(X), est.predict_members(X)


def _assert_same_predictions(a, b, X):
    for pa, pb in zip(_outputs(a, X), _outputs(b, X)):
        assert_array_equal(pa, pb)


# ------------------------------------------------------------------ pure parts
def test_chunk_device_spreads_chunks_over_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    spread = [str(_parallel.chunk_device("cuda", i)) for i in range(5)]
    assert spread == ["cuda:0", "cuda:1", "cuda:2", "cuda:0", "cuda:1"]
    assert str(_parallel.chunk_device("auto", 4)) == "cuda:1"  # "auto" means CUDA here
    assert {str(_parallel.chunk_device("cuda:2", i)) for i in range(4)} == {"cuda:2"}
    assert str(_parallel.chunk_device("cpu", 1)) == "cpu"


def test_n_chunks_follows_joblib():
    assert _parallel.n_chunks(None, 10) == 1
    assert _parallel.n_chunks(1, 10) == 1
    assert _parallel.n_chunks(4, 10) == 4
    assert _parallel.n_chunks(4, 3) == 3  # never more chunks than members
    assert _parallel.n_chunks(-1, 100) == joblib.cpu_count()
    with joblib.parallel_backend("threading", n_jobs=2):
        assert _parallel.n_chunks(None, 10) == 2  # None: the context's number


def test_split_and_join_give_back_the_groups():
    rng = np.random.default_rng(0)
    archs = [(4,), (6, 3), (5,), (2, 2), (3,), (4,), (6,)]
    init = _groups.random_rows(archs, range(7), 3, 2, "relu")
    groups = _groups.make_groups(init, archs, np.arange(7), 3, 2, "relu")
    for g in groups:
        E = len(g.members)
        g.opt_state = rng.standard_normal((2, *g.flat.shape)).astype(np.float32)
        g.steps, g.vectors["lr"] = np.arange(E), rng.random(E)
        g.vectors["alpha"] = rng.random(E)
    N = 10
    members = _parallel.Members(positions=np.arange(7), rows=rng.integers(0, N, (7, 4)),
                                val_mask=rng.random((7, N)) < 0.3)
    chunks = _parallel._split(groups, members, 3)
    assert len(chunks) == 3
    per_group = [[] for _ in groups]
    for pieces in chunks:
        for k, idx, piece in pieces:
            g = groups[k]
            assert piece.group.sizes == g.sizes  # the group's padded layout, in every chunk
            loc = g.members[idx]
            assert_array_equal(piece.rows, members.rows[loc])
            assert_array_equal(piece.val_mask, members.val_mask[loc])
            # the whole group's validation rows
            assert_array_equal(piece.val_rows, np.flatnonzero(members.val_mask[g.members].any(0)))
            per_group[k].append((idx, piece.group))
    for g, parts in zip(groups, per_group):
        joined = g.joined(parts)
        for name in ("members", "flat", "opt_state", "steps"):
            assert_array_equal(getattr(joined, name), getattr(g, name))
        for name in ("lr", "alpha"):
            assert_array_equal(joined.vectors[name], g.vectors[name])
    # members of a chunk are contiguous positions
    spans = [np.sort(np.concatenate([groups[k].members[i] for k, i, _ in p])) for p in chunks]
    assert_array_equal(np.concatenate(spans), np.arange(7))


def test_epoch_order_of_a_member_does_not_depend_on_the_others():
    rows = torch.arange(40).view(4, 10)
    gens = _training.order_generators(7, [3, 5, 8, 9])
    together = _training.epoch_order(rows, gens, True)
    alone = _training.epoch_order(rows[2:3], _training.order_generators(7, [8]), True)
    assert torch.equal(together[2:3], alone)
    assert not torch.equal(together[0], together[1] - 10)  # each member its own stream


# ------------------------------------------------------- bit-identical members
@TASKS
def test_loky_chunks_equal_one_process(request, Estimator, data):
    # numba: the CPU engine engine="auto" picks (batch_size <= 64). Early stopping on
    # held-out rows, members of two depths and feature subsets: the chunks cut groups,
    # and each member still trains and validates exactly as in one process.
    X, y = request.getfixturevalue(data)
    params = dict(SMALL, engine="numba", early_stopping=True, n_iter_no_change=2, tol=1e-3,
                  max_iter=30, learning_rate_init=0.01,
                  hidden_layer_sizes=[(8,), (6, 4), (5,)], max_features=0.75)
    one = Estimator(**params, n_jobs=1).fit(X, y)
    two = Estimator(**params, n_jobs=2).fit(X, y)
    assert two._fitted.report.n_chunks == 2 and two._fitted.report.backend == "loky"
    assert one._fitted.report.n_chunks == 1
    assert len(set(one.n_iter_per_member_)) > 1  # members really stopped apart
    _assert_same_fit(one, two)
    _assert_same_predictions(one, two, X)


@pytest.mark.parametrize("epoch", ["epoch_batched", "epoch_reference"])
@pytest.mark.parametrize("sizes", [(4, 8, 1), (4, 6, 4, 3)])
def test_lone_member_trains_as_in_a_group(epoch, sizes):
    # A member alone (a chunk or architecture of one) would take torch's one-matrix BLAS
    # routines (a matrix-vector product for a one-unit output layer), which round
    # otherwise: the engines train it as the first of two so that it matches a group.
    from engine_cases import call

    from skensemble import _engine
    from skensemble._inputs import Encoding

    fn = getattr(_engine, epoch)
    gen = torch.Generator().manual_seed(0)
    X, Y = torch.randn(120, 4, generator=gen), torch.randn(120, sizes[-1], generator=gen)
    layout, hyper = _engine.Layout(sizes), _engine.Hyper(batch_size=50, weight_decay=0.1)
    flat = _engine.init_parameters(layout, [3, 4], "relu")
    order = torch.stack([torch.randperm(120, generator=gen) for _ in range(2)])
    features = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]])
    lrs, alphas = np.array([1e-2, 3e-3]), np.array([1e-3, 1e-1])
    fits = []
    for members in (slice(0, 2), slice(0, 1)):
        f = flat[members].clone()
        state, steps = _engine.init_state(f, hyper)
        for _ in range(3):
            losses = call(fn, f, state, steps, X, Y, None, order[members], lrs[members],
                          hyper, layout, features[members], alphas[members])
        fits.append((f, state, steps, losses))
    for group, alone in zip(*fits):  # flat, state (S, E, P), steps, losses
        first = group[:, :1] if group.dim() == 3 else group[:1]
        assert torch.equal(first, alone)
    first = Encoding.plain(4).first_layer(features.numpy(), 2, 4).to("cpu")
    one = _engine.forward(fits[1][0], layout, X, "relu", first.take(torch.tensor([0])))
    assert torch.equal(_engine.forward(fits[0][0], layout, X, "relu", first)[:1], one)


_TORCH_ENGINES = """
import numpy as np, joblib
from numpy.testing import assert_array_equal
from skensemble import NeuralBaggingRegressor, NeuralBaggingClassifier
rng = np.random.RandomState(0)
X = rng.normal(size=(150, 5))
y = X @ rng.normal(size=5) + 0.1 * rng.normal(size=150)
for Estimator, target in ((NeuralBaggingRegressor, y), (NeuralBaggingClassifier, y > 0)):
    for engine in ("batched", "reference"):
        params = dict(n_estimators=5, max_iter=6, random_state=0, engine=engine,
                      hidden_layer_sizes=[(8,), (6, 4), (5,)], max_features=0.8,
                      early_stopping=True, n_iter_no_change=2)
        one = Estimator(**params, n_jobs=1).fit(X, target)
        with joblib.parallel_backend("threading"):
            two = Estimator(**params, n_jobs=2).fit(X, target)
        assert two._fitted.report.n_chunks == 2
        for ga, gb in zip(one._fitted.groups, two._fitted.groups):
            for name in ("members", "flat", "opt_state", "steps"):
                assert_array_equal(getattr(ga, name), getattr(gb, name), err_msg=name)
        assert_array_equal(one.n_iter_per_member_, two.n_iter_per_member_)
        assert_array_equal(one.predict(X), two.predict(X))
print("identical")
"""


@pytest.mark.skipif(not torch.backends.mkl.is_available(), reason="torch built without MKL")
def test_torch_engines_identical_across_chunks_with_mkl_cbwr(tmp_path):
    # MKL picks its matrix-product code by the number of matrices in a batch, so the torch
    # engines' members round differently in chunks of other sizes, unless MKL's
    # conditional numerical reproducibility is on (MKL_CBWR, read when MKL starts: a new
    # process). With it, chunks equal one process bit for bit, as the README says.
    import subprocess

    script = tmp_path / "torch_engines.py"
    script.write_text(_TORCH_ENGINES)
    env = dict(os.environ, MKL_CBWR="AUTO,STRICT", PYTHONWARNINGS="ignore")
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "identical"


def test_member_activations_and_row_counts_across_chunks(regression_data):
    # Groups of one activation, members of their own sample sizes: cut into chunks and
    # merged, they equal one process's.
    X, y = regression_data
    params = dict(SMALL, n_estimators=6, bootstrap=True, member_params={
        "activation": ["relu", "tanh"], "max_samples": [0.5, 1.0],
        "hidden_layer_sizes": [(8,), (4, 4)]})
    one = NeuralBaggingRegressor(**params, n_jobs=1).fit(X, y)
    with joblib.parallel_backend("threading"):
        two = NeuralBaggingRegressor(**params, n_jobs=2).fit(X, y)
    assert [g.settings.activation for g in one._fitted.groups] == [g.settings.activation for g in two._fitted.groups]
    assert len({g.settings.activation for g in one._fitted.groups}) == 2
    _assert_same_fit(one, two)
    _assert_same_predictions(one, two, X)


# Few members on little data leave some rows without out-of-bag members: expected here.
@pytest.mark.filterwarnings("ignore:Some inputs do not have OOB scores")
@TASKS
def test_oob_selection_and_warm_start_across_chunks(request, Estimator, data):
    # OOB and ensemble selection are computed after the merge, over all members; a warm
    # start trains the new members only, in chunks, and leaves the old ones untouched.
    X, y = request.getfixturevalue(data)
    params = dict(SMALL, bootstrap=True, oob_score=True, ensemble_selection=5,
                  early_stopping=False)
    one = Estimator(**params, n_jobs=1).fit(X, y)
    with joblib.parallel_backend("threading"):  # in-process workers: cheap, same merge
        three = Estimator(**params, n_jobs=3).fit(X, y)
    assert three._fitted.report.backend == "threading"
    _assert_same_fit(one, three)
    _assert_same_predictions(one, three, X)

    old = [g.flat.copy() for g in one._fitted.groups]
    one.set_params(warm_start=True, n_estimators=8).fit(X, y)
    with joblib.parallel_backend("threading"):
        three.set_params(warm_start=True, n_estimators=8).fit(X, y)
    assert three._fitted.report.n_chunks == 3  # 3 new members, one each
    _assert_same_fit(one, three)
    _assert_same_predictions(one, three, X)
    assert_array_equal(one._fitted.groups[0].flat[:5], old[0])  # the first 5 kept their weights


def test_mothernets_with_chunks(regression_data):
    X, y = regression_data
    params = dict(SMALL, init="mothernet", hidden_layer_sizes=[(8,), (10,)], n_mothernets=1)
    one = NeuralBaggingRegressor(**params, n_jobs=1).fit(X, y)
    with joblib.parallel_backend("threading"):
        two = NeuralBaggingRegressor(**params, n_jobs=2).fit(X, y)
    _assert_same_fit(one, two)
    assert_array_equal(one.mothernet_labels_, two.mothernet_labels_)


def test_threads_are_shared_out_between_chunks(regression_data, monkeypatch):
    # On an 8-core machine (as default_threads reports it), 2 chunks get 4 threads
    # each and 4 chunks 2: together never more than the cores.
    X, y = regression_data
    monkeypatch.setattr(_dispatch, "default_threads", lambda work=None: 8)
    seen = []
    real = _training.train_group

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())  # this chunk's thread, inside its budget
        return real(*args, **kwargs)

    monkeypatch.setattr(_training, "train_group", spy)
    for n_jobs, budget in ((2, 4), (4, 2)):
        seen.clear()
        with joblib.parallel_backend("threading"):
            NeuralBaggingRegressor(**SMALL, n_jobs=n_jobs).fit(X, y)
        assert seen == [budget] * n_jobs


# ------------------------------------------------------------------ Dask
distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")


@pytest.fixture
def client(dask_client):
    # The session's cluster (tests/conftest.py), allowed-failures=0: a task whose worker
    # died is not retried on another (the default, 3, would let the dying test below kill
    # every worker four times)
    return dask_client


@TASKS
def test_dask_local_cluster_equals_one_process(client, request, Estimator, data, monkeypatch):
    X, y = request.getfixturevalue(data)
    params = dict(SMALL, early_stopping=True, n_iter_no_change=2)
    one = Estimator(**params).fit(X, y)  # n_jobs=None outside a joblib context: 1
    assert one._fitted.report.n_chunks == 1
    scatters = []
    real = distributed.Client.scatter

    def count(self, data, *args, **kwargs):
        scatters.append(data)
        return real(self, data, *args, **kwargs)

    monkeypatch.setattr(distributed.Client, "scatter", count)
    with distributed.get_task_stream(client=client) as stream:
        with joblib.parallel_backend("dask"):
            dask = Estimator(**params).fit(X, y)  # None: one chunk per worker thread
    report = dask._fitted.report
    assert report.backend == "dask" and report.n_chunks == 2
    assert report.seconds_sending is not None
    # the training data went out once (not with each task), then each chunk's own members
    assert len(scatters) == 2
    assert [type(d).__name__ for d in scatters[0]] == ["Shared"]
    assert len(scatters[1]) == 2 and all(type(p).__name__ == "_Piece"
                                         for part in scatters[1] for p in part)
    workers = set(client.scheduler_info(n_workers=-1)["workers"])
    chunks = [t for t in stream.data if str(t["key"]).startswith("skensemble-chunk-")]
    assert len(chunks) == 2 and all(t["worker"] in workers for t in chunks)
    _assert_same_fit(one, dask)
    _assert_same_predictions(one, dask, X)


class _RaisingTask(Regression):
    """Fails in a worker process, never here (its scores run every epoch)."""

    def member_scores(self, out, Y, weight):
        if os.getpid() != PARENT:
            raise ArithmeticError("boom in a worker")
        return super().member_scores(out, Y, weight)


class _Raises(NeuralBaggingRegressor):
    def _task(self):
        return _RaisingTask()


def _state(est):
    return {k: v for k, v in vars(est).items()}


def test_dask_worker_error_raises_and_leaves_no_state(client, regression_data):
    X, y = regression_data
    est = _Raises(**SMALL, early_stopping=True)
    with joblib.parallel_backend("dask"), pytest.raises(ArithmeticError, match="boom"):
        est.fit(X, y)
    assert not [k for k in vars(est) if k.endswith("_") or k.startswith("_")]


class _DyingTask(Regression):
    """Its worker process exits in the middle of training (as if killed or out of memory)."""

    def member_scores(self, out, Y, weight):
        if os.getpid() != PARENT:
            os._exit(3)
        return super().member_scores(out, Y, weight)


class _Dies(NeuralBaggingRegressor):
    def _task(self):
        return _DyingTask()


def test_dask_worker_that_dies_raises_a_clear_error(client, regression_data):
    X, y = regression_data
    est = _Dies(**SMALL, early_stopping=True)
    with joblib.parallel_backend("dask"), pytest.raises(RuntimeError, match="A worker died"):
        est.fit(X, y)
    assert not [k for k in vars(est) if k.endswith("_") or k.startswith("_")]
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it


def test_dask_interrupt_cancels_the_chunks(client, regression_data, monkeypatch):
    X, y = regression_data
    submitted = []
    real = distributed.Client.submit

    def submit(self, *args, **kwargs):
        future = real(self, *args, **kwargs)
        submitted.append(future)
        return future

    def interrupted(self, futures, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(distributed.Client, "submit", submit)
    monkeypatch.setattr(distributed.Client, "gather", interrupted)
    est = NeuralBaggingRegressor(**SMALL)
    with joblib.parallel_backend("dask"), pytest.raises(KeyboardInterrupt):
        est.fit(X, y)
    assert len(submitted) == 2
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(f.status != "cancelled" for f in submitted):
        time.sleep(0.05)
    assert [f.status for f in submitted] == ["cancelled", "cancelled"]
    assert not hasattr(est, "_fitted")




# ------------------------------------------------------------- loky failures
class _SlowTask(Regression):
    """Writes its worker's pid to ``pid_dir`` and trains slowly there."""

    def __init__(self, pid_dir):
        self.pid_dir = pid_dir

    def member_scores(self, out, Y, weight):
        if os.getpid() != PARENT:
            with open(os.path.join(self.pid_dir, str(os.getpid())), "w"):
                pass
            time.sleep(0.05)
        return super().member_scores(out, Y, weight)


class _Slow(NeuralBaggingRegressor):
    pid_dir = None

    def _task(self):
        return _SlowTask(self.pid_dir)


def test_worker_that_raises_leaves_the_fitted_estimator_as_it_was(regression_data):
    X, y = regression_data
    est = _Raises(**SMALL, early_stopping=True, n_jobs=1).fit(X, y)  # here: no failure
    est.set_params(n_jobs=2, n_estimators=7, warm_start=True)  # 2 more members, in workers
    before = _state(est)
    with pytest.raises(ArithmeticError, match="boom in a worker"):
        est.fit(X, y)
    after = _state(est)
    assert after.keys() == before.keys()
    assert all(after[k] is before[k] for k in before)  # the very same objects, untouched


def test_worker_that_dies_raises_a_clear_error_and_leaves_no_state(regression_data):
    X, y = regression_data
    est = _Dies(**SMALL, early_stopping=True, n_jobs=2)
    with pytest.raises(RuntimeError, match="A worker died while training") as info:
        est.fit(X, y)
    assert "as it was before this fit" in str(info.value)
    assert not [k for k in vars(est) if k.endswith("_") or k.startswith("_")]


def _dead(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("joblib_aborts", [True, False], ids=["joblib-aborts", "ours-only"])
def test_keyboard_interrupt_while_waiting_kills_the_running_chunks(regression_data, tmp_path,
                                                                  monkeypatch, joblib_aborts):
    # Ctrl-C lands in the main thread, which waits in joblib's retrieval loop: raise it
    # there, deterministically, once both chunks run in their workers. The fit raises
    # it, the workers running the chunks are stopped, and no state is left; also when
    # joblib's own abort does nothing (other joblib versions): skensemble kills them.
    if not joblib_aborts:
        monkeypatch.setattr(joblib._parallel_backends.LokyBackend, "abort_everything",
                            lambda self, ensure_ready=True: None)
    X, y = regression_data
    _Slow.pid_dir = str(tmp_path)
    est = _Slow(**dict(SMALL, max_iter=10_000, tol=0.0, n_iter_no_change=10_000),
                early_stopping=True, n_jobs=2)
    real_sleep = time.sleep
    deadline = time.monotonic() + 120

    class _Clock:  # joblib.parallel's ``time``: its waiting loop calls ``time.sleep``
        def __getattr__(self, name):
            return getattr(time, name)

        @staticmethod
        def sleep(seconds):
            if len(os.listdir(tmp_path)) >= 2 or time.monotonic() > deadline:
                raise KeyboardInterrupt
            real_sleep(seconds)

    monkeypatch.setattr(joblib.parallel, "time", _Clock())
    with pytest.raises(KeyboardInterrupt):
        est.fit(X, y)
    pids = [int(p) for p in os.listdir(tmp_path)]
    assert len(pids) == 2  # both chunks were running when it came
    stop = time.monotonic() + 10
    while time.monotonic() < stop and not all(_dead(p) for p in pids):
        time.sleep(0.05)
    assert all(_dead(p) for p in pids)  # the workers running the chunks were stopped
    assert not hasattr(est, "_fitted") and not hasattr(est, "n_features_in_")


@pytest.mark.skip(reason=(
    "a real SIGINT from another thread was not reliable in two CI runs (one fit completed "
    "without raising, one kept running) while it passed alone; the interrupt's effect is "
    "tested deterministically by test_keyboard_interrupt_while_waiting_kills_the_running_"
    "chunks"))
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_keyboard_interrupt_cancels_outstanding_chunks(regression_data, tmp_path):
    X, y = regression_data
    _Slow.pid_dir = str(tmp_path)
    # Patience as long as the fit: no member stops before the interrupt, however late it
    # comes on a loaded machine (with the default patience the fit could end first).
    est = _Slow(**dict(SMALL, max_iter=10_000, tol=0.0, n_iter_no_change=10_000),
                early_stopping=True, n_jobs=2)

    def interrupt_when_both_run():
        deadline = time.monotonic() + 60
        while len(os.listdir(tmp_path)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(PARENT, signal.SIGINT)  # Ctrl-C, delivered to this process's main thread

    watcher = threading.Thread(target=interrupt_when_both_run, daemon=True)
    watcher.start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        est.fit(X, y)
    watcher.join()
    assert time.monotonic() - start < 60  # not run to the end (10,000 slow epochs)
    pids = [int(p) for p in os.listdir(tmp_path)]
    assert len(pids) == 2
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(_dead(p) for p in pids):
        time.sleep(0.05)
    assert all(_dead(p) for p in pids)  # the workers running the chunks were stopped
    assert not hasattr(est, "_fitted") and not hasattr(est, "n_features_in_")
