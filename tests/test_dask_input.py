"""Dask arrays and DataFrames as input to fit, predict, predict_proba and score.

A fit on a Dask collection reads its partitions window by window on a ``LocalCluster``
and must give, bit for bit, the fit of the same rows in memory; predictions are lazy Dask
arrays computed on the workers, partition by partition; a partition that raises leaves
the estimator exactly as it was.
"""

import logging
import pickle
import threading

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from skensemble import NeuralBaggingClassifier, NeuralBaggingRegressor, _dask, _scaling, _tabular

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

SMALL = dict(n_estimators=3, hidden_layer_sizes=(8,), max_iter=5, random_state=0)
N, F, CHUNK = 300, 5, 70  # partitions of 70 rows, the last of 20


@pytest.fixture(scope="module")
def client():
    # Two single-threaded workers in this process: the tasks run on them, in threads.
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       dashboard_address=None, silence_logs=logging.ERROR)
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _data(classify):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, F))
    X[::7, 1] = np.nan  # missing values: imputed, with an indicator
    X[:, 3] = rng.integers(0, 2, N)  # a binary column: no bins
    y = X[:, 0] * 2 + np.nan_to_num(X[:, 1]) + 0.1 * rng.normal(size=N)
    y = (y > 0).astype(np.int64) if classify else y
    sw = rng.uniform(0.5, 2.0, N)
    return X, y, sw


def _dask_arrays(*arrays):
    return [da.from_array(a, chunks=(CHUNK,) + a.shape[1:]) for a in arrays]


CASES = pytest.mark.parametrize("Estimator", [NeuralBaggingRegressor, NeuralBaggingClassifier],
                                ids=["regressor", "classifier"])


@pytest.fixture
def small_windows(monkeypatch):
    # Windows of 64 rows straddle the 70-row partitions; samples of 100 rows < N.
    monkeypatch.setattr(_scaling, "CHUNK", 64)
    monkeypatch.setattr(_scaling, "QUANTILE_ROWS", 100)
    monkeypatch.setattr(_tabular, "ROWS", 100)


@CASES
@pytest.mark.parametrize("sampled", [False, True], ids=["all_rows", "sampled"])
def test_fit_equals_numpy_bit_for_bit(client, request, Estimator, sampled):
    if sampled:
        request.getfixturevalue("small_windows")
    classify = Estimator is NeuralBaggingClassifier
    X, y, sw = _data(classify)
    Xd, yd, swd = _dask_arrays(X, y, sw)
    ref = Estimator(**SMALL).fit(X, y, sample_weight=sw)
    est = Estimator(**SMALL).fit(Xd, yd, sample_weight=swd)
    assert est.n_features_in_ == F
    out = est.predict(Xd)
    assert isinstance(out, da.Array)
    assert out.chunks == ((70, 70, 70, 70, 20),)
    assert out.dtype == ref.predict(X[:1]).dtype
    assert_array_equal(out.compute(), ref.predict(X))
    assert_array_equal(est.predict(X), ref.predict(X))  # the same fitted state
    if classify:
        proba = est.predict_proba(Xd)
        assert proba.chunks == ((70, 70, 70, 70, 20), (2,))
        assert_array_equal(proba.compute(), ref.predict_proba(X))
        assert_array_equal(est.predict_log_proba(Xd).compute(), ref.predict_log_proba(X))
    else:
        mean, std = est.predict(Xd, return_std=True)
        assert_array_equal(std.compute(), ref.predict(X, return_std=True)[1])
        members = est.predict_members(Xd)
        assert members.chunks == ((3,), (70, 70, 70, 70, 20))
        assert_array_equal(members.compute(), ref.predict_members(X))
    assert est.score(Xd, yd, sample_weight=swd) == ref.score(X, y, sample_weight=sw)
    assert est.score(Xd, yd) == ref.score(X, y)


def test_column_missed_by_the_sample_is_filled_from_all_rows(client, small_windows):
    # Column 2 has values only in rows the 100-row sample misses: its fill value (median)
    # comes from all its rows, as for NumPy input.
    X, y, _ = _data(False)
    sample = np.sort(np.random.default_rng(0).choice(N, 100, replace=False))
    outside = np.setdiff1d(np.arange(N), sample)
    X[:, 2] = np.nan
    X[outside[::3], 2] = np.arange(outside[::3].size, dtype=float)
    ref = NeuralBaggingRegressor(**SMALL).fit(X, y)
    est = NeuralBaggingRegressor(**SMALL).fit(*_dask_arrays(X, y))
    assert ref._fitted.schema.fill[2] == est._fitted.schema.fill[2] > 0
    assert_array_equal(est.predict(X), ref.predict(X))


def test_dataframe_equals_pandas(client):
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    X, y, sw = _data(False)
    df = pd.DataFrame(X, columns=[f"c{i}" for i in range(F)])
    df["c3"] = df["c3"].astype(np.int64)  # mixed dtypes, as read from a file
    ddf = dd.from_pandas(df, npartitions=4)
    ys, sws = pd.Series(y, name="y"), pd.Series(sw)
    ref = NeuralBaggingRegressor(**SMALL).fit(df, ys, sample_weight=sws)
    est = NeuralBaggingRegressor(**SMALL).fit(ddf, dd.from_pandas(ys, npartitions=4),
                                              sample_weight=dd.from_pandas(sws, npartitions=4))
    assert_array_equal(est.feature_names_in_, ref.feature_names_in_)
    out = est.predict(ddf)
    assert isinstance(out, da.Array) and len(out.chunks[0]) == 4  # one block per partition
    assert_array_equal(out.compute(), ref.predict(df))


def test_reads_windows_never_the_whole_input(client, small_windows, monkeypatch):
    X, y, _ = _data(False)
    Xd, yd = _dask_arrays(X, y)
    reads = []
    getitem = _dask.Rows.__getitem__

    def spy(self, key):
        out = getitem(self, key)
        reads.append(out.shape[0])
        return out

    monkeypatch.setattr(_dask.Rows, "__getitem__", spy)
    NeuralBaggingRegressor(**SMALL).fit(Xd, yd)
    assert reads and max(reads) <= 100 < N  # windows of 64 rows, samples of 100
    with pytest.raises(TypeError, match="gather"):
        np.asarray(_dask.Rows(Xd))


# Distributed pickles every task, also for workers in this process: what the tasks record
# lives at module level (pickled by reference).
_RAN = []
_FLAKY = {"after": 0, "calls": 0}
_LOCK = threading.Lock()


def _spy_call(est, name, block, args, kwargs):
    _RAN.append((distributed.get_worker().address, block.shape[0]))  # raises off workers
    return _dask.__dict__["_original_call"](est, name, block, args, kwargs)


def test_predict_runs_on_the_workers(client, monkeypatch):
    X, y, _ = _data(False)
    Xd, yd = _dask_arrays(X, y)
    est = NeuralBaggingRegressor(**SMALL).fit(X, y)
    _RAN.clear()
    monkeypatch.setitem(_dask.__dict__, "_original_call", _dask._call)
    monkeypatch.setattr(_dask, "_call", _spy_call)
    est.predict(Xd).compute()
    assert sorted(n for _, n in _RAN) == [20, 70, 70, 70, 70]  # one task per partition
    assert {w for w, _ in _RAN} <= set(client.scheduler_info()["workers"])


def _flaky_block(block, block_info=None):
    """Partition 2 raises from its ``after``-th computation on."""
    if block_info[None]["chunk-location"][0] == 2:
        with _LOCK:
            _FLAKY["calls"] += 1
            if _FLAKY["calls"] > _FLAKY["after"]:
                raise OSError("worker lost partition 2")
    return block


def _flaky(X, after):
    _FLAKY.update(after=after, calls=0)
    return da.from_array(X, chunks=(CHUNK, F)).map_blocks(_flaky_block, dtype=X.dtype)


def _fails(est, X, yd, last):
    """Fit ``est`` on ``X`` whose partition 2 raises on its first read, or on its last."""
    after = 0
    if last:  # count the reads of a fit that succeeds (on a copy), then fail the last one
        _FLAKY.update(after=np.inf, calls=0)
        copy = pickle.loads(pickle.dumps(est))
        copy.fit(da.from_array(X, chunks=(CHUNK, F)).map_blocks(_flaky_block, dtype=X.dtype), yd)
        after = _FLAKY["calls"] - 1
    with pytest.raises(OSError, match="partition 2"):
        est.fit(_flaky(X, after), yd)
    return after


@pytest.mark.parametrize("last", [False, True], ids=["first_read", "last_read"])
def test_failed_partition_leaves_no_state(client, last):
    X, y, _ = _data(False)
    yd = _dask_arrays(y)[0]
    fresh = NeuralBaggingRegressor(**SMALL)
    assert _fails(fresh, X, yd, last) > 0 if last else True  # the scaled copy's pass
    with pytest.raises(NotFittedError):
        check_is_fitted(fresh)
    assert not hasattr(fresh, "n_features_in_")

    fitted = NeuralBaggingRegressor(**SMALL).fit(X[:150], y[:150])
    before, pred = fitted._fitted, fitted.predict(X)
    for warm in (False, True):
        fitted.set_params(warm_start=warm, n_estimators=5 if warm else 3)
        state = dict(fitted.__dict__)
        _fails(fitted, X, yd, last)
        assert fitted._fitted is before
        assert fitted.__dict__.keys() == state.keys()
        assert all(fitted.__dict__[k] is v for k, v in state.items())
        assert_array_equal(fitted.predict(X), pred)


def test_predict_is_lazy(client):
    X, y, _ = _data(False)
    est = NeuralBaggingRegressor(**SMALL).fit(X, y)
    out = est.predict(_flaky(X, 0))  # nothing computed yet: no error
    with pytest.raises(OSError, match="partition 2"):
        out.compute()


def test_warm_start_and_partial_fit_equal_numpy(client):
    X, y, _ = _data(False)
    Xd, yd = _dask_arrays(X, y)
    ref = NeuralBaggingRegressor(**SMALL, warm_start=True).fit(X, y)
    est = NeuralBaggingRegressor(**SMALL, warm_start=True).fit(Xd, yd)
    ref.set_params(n_estimators=5).fit(X, y)
    est.set_params(n_estimators=5).fit(Xd, yd)
    assert_array_equal(est.predict(X), ref.predict(X))
    ref = NeuralBaggingRegressor(**SMALL).partial_fit(X, y).partial_fit(X, y)
    est = NeuralBaggingRegressor(**SMALL).partial_fit(Xd, yd).partial_fit(Xd, yd)
    assert_array_equal(est.predict(X), ref.predict(X))


def test_clear_errors(client):
    X, y, sw = _data(False)
    Xd, yd, swd = _dask_arrays(X, y, sw)
    est = NeuralBaggingRegressor(**SMALL)
    with pytest.raises(ValueError, match="X is a Dask collection but y is a numpy"):
        est.fit(Xd, y)
    with pytest.raises(ValueError, match="y is a Dask collection but X is a numpy"):
        est.fit(X, yd)
    with pytest.raises(ValueError, match="sample_weight is a Dask collection but X"):
        est.fit(X, y, sample_weight=swd)
    with pytest.raises(ValueError, match="partitioned differently"):
        est.fit(Xd, da.from_array(y, chunks=80))
    with pytest.raises(ValueError, match="partitioned differently"):
        est.fit(Xd, yd, sample_weight=da.from_array(sw, chunks=100))
    with pytest.raises(ValueError, match="names columns"):
        NeuralBaggingRegressor(**SMALL, categorical_features=[0]).fit(Xd, yd)
    with pytest.raises(ValueError, match="dtype <U"):
        est.fit(da.from_array(X.astype(str), chunks=(CHUNK, F)), yd)
    fitted = NeuralBaggingRegressor(**SMALL).fit(X, y)
    with pytest.raises(ValueError, match="X is a Dask collection but y"):
        fitted.score(Xd, y)
    with pytest.raises(ValueError, match="features"):
        fitted.predict(Xd[:, :3])


def test_categorical_dataframe_is_refused_with_the_fix(client):
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    X, y, _ = _data(False)
    df = pd.DataFrame(X, columns=[f"c{i}" for i in range(F)])
    df["city"] = pd.Categorical(np.where(X[:, 0] > 0, "a", "b"))
    ddf = dd.from_pandas(df, npartitions=3)
    with pytest.raises(ValueError, match=r"not numeric.*cat\.codes.*X\.compute\(\)"):
        NeuralBaggingRegressor(**SMALL).fit(ddf, dd.from_pandas(pd.Series(y), npartitions=3))
    # a fit in memory predicts a Dask DataFrame with such columns, partition by partition
    ref = NeuralBaggingRegressor(**SMALL).fit(df, y)
    assert_array_equal(ref.predict(ddf).compute(), ref.predict(df))
