"""Behaviour of both estimators: results, integration with scikit-learn, bad input."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from scipy import sparse
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skensemble import NeuralBaggingClassifier, NeuralBaggingRegressor

FAST = dict(n_estimators=4, hidden_layer_sizes=(16,), max_iter=60, learning_rate_init=0.01,
            random_state=0)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _outputs(est, X):
    return est.predict_proba(X) if hasattr(est, "predict_proba") else est.predict(X)


# ----------------------------------------------------------------- results
def test_regressor_fits_nonlinear_function(regression_data):
    X, y = regression_data
    reg = NeuralBaggingRegressor(n_estimators=5, hidden_layer_sizes=(32,), max_iter=300,
                                 input_scaling="standard", numeric_encoding="none",
                                 random_state=0).fit(X[:90], y[:90])
    assert reg.score(X[90:], y[90:]) > 0.97
    pred = reg.predict(X)
    assert pred.dtype == np.float64 and pred.shape == (120,)


def test_regressor_is_mean_of_members(regression_data):
    X, y = regression_data
    reg = NeuralBaggingRegressor(**FAST).fit(X, y)
    members = reg.predict_members(X)
    assert members.shape == (4, 120)
    np.testing.assert_allclose(reg.predict(X), members.mean(0), rtol=1e-6, atol=1e-8)
    mean, std = reg.predict(X, return_std=True)
    np.testing.assert_allclose(std, members.std(0), rtol=1e-5, atol=1e-8)
    assert np.all(std > 0)  # members differ


def test_regressor_multi_output(regression_data):
    X, y = regression_data
    Y = np.column_stack([y, -3 * y + 100.0])
    reg = NeuralBaggingRegressor(**FAST).fit(X, Y)
    pred = reg.predict(X)
    assert pred.shape == (120, 2) and reg.n_outputs_ == 2
    assert reg.predict_members(X).shape == (4, 120, 2)
    assert reg.score(X, Y) > 0.9
    # a 2-D single column stays 2-D, a 1-D y gives 1-D predictions
    assert NeuralBaggingRegressor(**FAST).fit(X, y[:, None]).predict(X).shape == (120, 1)


def test_regressor_targets_are_scaled_internally(regression_data):
    X, y = regression_data
    a = NeuralBaggingRegressor(**FAST).fit(X, y).predict(X)
    b = NeuralBaggingRegressor(**FAST).fit(X * 1e4 + 5, y * 1e6 - 3e7).predict(X * 1e4 + 5)
    np.testing.assert_allclose((b + 3e7) / 1e6, a, rtol=1e-3, atol=1e-3)


def test_classifier_soft_voting(classification_data):
    X, y = classification_data
    clf = NeuralBaggingClassifier(**FAST).fit(X, y)
    assert list(clf.classes_) == ["maybe", "no", "yes"]
    proba = clf.predict_proba(X)
    assert proba.dtype == np.float64 and proba.shape == (150, 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=0, atol=1e-12)
    members = clf.predict_proba_members(X)
    assert members.shape == (4, 150, 3)
    np.testing.assert_allclose(proba, members.mean(0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba))
    assert set(clf.predict(X)) <= set(clf.classes_)
    assert clf.score(X, y) > 0.85


@pytest.mark.parametrize(
    "labels",
    [np.array([-1, 1]), np.array(["b", "a"], dtype=object), np.array([0, 7]),
     np.array([True, False])],
)
def test_classifier_label_kinds(labels):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(60, 3))
    y = labels[(X[:, 0] > 0).astype(int)]
    clf = NeuralBaggingClassifier(**FAST).fit(X, y)
    assert set(clf.classes_) == set(labels)
    assert clf.predict(X).dtype == clf.classes_.dtype
    assert clf.score(X, y) > 0.9


def test_iris_multiclass_accuracy():
    X, y = load_iris(return_X_y=True)
    clf = NeuralBaggingClassifier(n_estimators=5, random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.95


def test_batch_size_one(task):
    Est, (X, y) = task
    est = Est(n_estimators=3, hidden_layer_sizes=(8,), batch_size=1, max_iter=5,
              random_state=0).fit(X, y)
    assert est.t_ == 5 * X.shape[0]
    assert np.all(np.isfinite(_outputs(est, X)))


# ------------------------------------------------------------ determinism
@pytest.mark.parametrize("engine", ["reference", "batched", "auto"])
def test_same_random_state_same_predictions(task, engine):
    Est, (X, y) = task
    a = _outputs(Est(**FAST, engine=engine, batch_size=8).fit(X, y), X)
    b = _outputs(Est(**FAST, engine=engine, batch_size=8).fit(X, y), X)
    np.testing.assert_array_equal(a, b)
    c = _outputs(Est(**{**FAST, "random_state": 1}, engine=engine, batch_size=8).fit(X, y), X)
    assert not np.allclose(a, c)


def test_global_seed_untouched(task):
    Est, (X, y) = task
    torch.manual_seed(123)
    np.random.seed(123)
    expected_t, expected_np = torch.rand(3), np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(123)
    Est(**FAST).fit(X, y)
    assert torch.equal(torch.rand(3), expected_t)
    np.testing.assert_array_equal(np.random.rand(3), expected_np)


def test_threads_restored(task):
    Est, (X, y) = task
    before = torch.get_num_threads()
    Est(**FAST).fit(X, y)
    assert torch.get_num_threads() == before


# ----------------------------------------------------------- integration
def test_pipeline_gridsearch_cross_val(task):
    Est, (X, y) = task
    pipe = make_pipeline(StandardScaler(), Est(**FAST))
    grid = GridSearchCV(pipe, {f"{pipe.steps[-1][0]}__alpha": [1e-4, 1e-1]}, cv=3)
    grid.fit(X, y)
    assert len(grid.cv_results_["mean_test_score"]) == 2
    assert np.isfinite(grid.best_score_)
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))


def test_pickle_round_trip_and_clone(task):
    Est, (X, y) = task
    est = Est(**FAST).fit(X, y)
    blob = pickle.dumps(est)
    again = pickle.loads(blob)
    np.testing.assert_array_equal(_outputs(est, X), _outputs(again, X))
    # fitted state holds no torch tensors: a GPU-fitted model unpickles without CUDA
    assert not any(isinstance(v, torch.Tensor) for v in vars(est).values())
    fresh = clone(est)
    assert not hasattr(fresh, "n_iter_")
    assert fresh.get_params() == est.get_params()


def test_dataframe_sets_feature_names(task):
    pd = pytest.importorskip("pandas")
    Est, (X, y) = task
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    est = Est(**FAST).fit(df, y)
    np.testing.assert_array_equal(est.feature_names_in_, df.columns)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        plain = _outputs(est, X)  # scikit-learn's warning for a plain array after a frame
    np.testing.assert_array_equal(_outputs(est, df), plain)


def test_sample_weight_zero_rows_have_no_influence(regression_data):
    X, y = regression_data
    sw = np.ones(len(y))
    sw[::3] = 0.0
    y_bad = y.copy()
    y_bad[::3] = 1e6  # absurd targets on zero-weight rows
    a = NeuralBaggingRegressor(**FAST, shuffle=False, batch_size=len(y)).fit(X, y, sample_weight=sw)
    b = NeuralBaggingRegressor(**FAST, shuffle=False, batch_size=len(y)).fit(X, y_bad, sample_weight=sw)
    # full batches in a fixed order: the absurd targets change nothing at all
    np.testing.assert_allclose(a.predict(X), b.predict(X), rtol=1e-6, atol=1e-6)


def test_sample_weight_ones_equals_none(task):
    Est, (X, y) = task
    a = _outputs(Est(**FAST).fit(X, y), X)
    b = _outputs(Est(**FAST).fit(X, y, sample_weight=np.full(len(y), 3.0)), X)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_early_stopping_per_member(task):
    Est, (X, y) = task
    for bootstrap in (False, True):
        est = Est(n_estimators=5, hidden_layer_sizes=(32,), max_iter=300, early_stopping=True,
                  learning_rate_init=0.01, n_iter_no_change=5, bootstrap=bootstrap, random_state=0).fit(X, y)
        n = est.n_iter_per_member_
        assert n.shape == (5,) and est.n_iter_ == n.max() < 300
        assert est.loss_curve_.shape == (est.n_iter_, 5)
        assert est.validation_scores_.shape == (est.n_iter_, 5)
        # a member's curve ends (NaN) exactly after its own last epoch
        for e in range(5):
            assert np.all(np.isfinite(est.loss_curve_[: n[e], e]))
            assert np.all(np.isnan(est.loss_curve_[n[e]:, e]))
        # each member kept its best validation weights
        best = np.nanmin(est.validation_loss_curve_, axis=0)
        np.testing.assert_allclose(est.best_validation_loss_, best)


def test_convergence_stops_members_early(regression_data):
    X, y = regression_data
    reg = NeuralBaggingRegressor(n_estimators=3, hidden_layer_sizes=(8,), tol=1e-2,
                                 max_iter=500, random_state=0).fit(X, y)
    assert reg.n_iter_ < 500


def test_sgd_learning_rate_schedules(regression_data):
    X, y = regression_data
    for schedule in ("constant", "invscaling", "adaptive"):
        reg = NeuralBaggingRegressor(**{**FAST, "learning_rate_init": 0.05}, solver="sgd",
                                     learning_rate=schedule).fit(X, y)
        assert np.all(np.isfinite(reg.predict(X)))
    # invscaling with a large exponent barely moves the weights
    sgd = {**FAST, "learning_rate_init": 0.05, "solver": "sgd"}
    slow = NeuralBaggingRegressor(**sgd, learning_rate="invscaling", power_t=2.0).fit(X, y)
    fast = NeuralBaggingRegressor(**sgd).fit(X, y)
    assert fast.score(X, y) > slow.score(X, y)


def test_bootstrap_and_max_samples(task):
    Est, (X, y) = task
    est = Est(**FAST, bootstrap=True, max_samples=0.5).fit(X, y)
    assert est.t_ == est.n_iter_ * round(0.5 * X.shape[0])
    est = Est(**FAST, max_samples=30).fit(X, y)
    assert est.t_ == est.n_iter_ * 30
    with pytest.raises(ValueError, match="max_samples"):
        Est(**FAST, max_samples=10_000).fit(X, y)


def test_fitted_weights_exposed(regression_data):
    X, y = regression_data
    reg = NeuralBaggingRegressor(n_estimators=3, hidden_layer_sizes=(5, 6), max_iter=3,
                                 numeric_encoding="none", random_state=0).fit(X, y)
    assert [c.shape for c in reg.coefs_] == [(3, 4, 5), (3, 5, 6), (3, 6, 1)]
    assert [b.shape for b in reg.intercepts_] == [(3, 5), (3, 6), (3, 1)]
    assert reg.engine_ in ("reference", "batched", "numba")


# ------------------------------------------------------------ bad input
def test_divergence_raises_with_remedy(regression_data):
    X, y = regression_data
    est = NeuralBaggingRegressor(n_estimators=3, solver="sgd", learning_rate_init=1e6,
                                 max_iter=20, random_state=0)
    with pytest.raises(ValueError, match=r"diverged.*learning_rate_init"):
        est.fit(X, y)


@pytest.mark.parametrize(
    "X_bad, error, match",
    [
        (np.full((10, 3), np.nan), ValueError, "no value at all"),  # every value missing
        (np.full((10, 3), np.inf), ValueError, "infinity"),
        (np.ones((10, 3)) + 1j, ValueError, "[Cc]omplex"),
        (np.array([["a", "b"]] * 10, dtype=object), ValueError, "convert|could not"),
        (np.empty((0, 3)), ValueError, "0 sample"),
        (np.ones(10), ValueError, "2D array"),
        (sparse.random(10, 3, density=0.5, format="csr", random_state=0), TypeError, "dense"),
    ],
)
def test_bad_X_at_fit(task, X_bad, error, match):
    Est, _ = task
    y = np.arange(X_bad.shape[0]) % 2 if X_bad.ndim else None
    with pytest.raises(error, match=match):
        Est(**FAST).fit(X_bad, y)


def test_wrong_feature_count_at_predict(task):
    Est, (X, y) = task
    est = Est(**FAST).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        est.predict(X[:, :2])


def test_classifier_target_errors(classification_data):
    X, _ = classification_data
    with pytest.raises(ValueError, match="class"):
        NeuralBaggingClassifier(**FAST).fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="continuous"):
        NeuralBaggingClassifier(**FAST).fit(X, np.linspace(0, 1, len(X)))


@pytest.mark.parametrize(
    "params, match",
    [
        ({"device": "gpu"}, "device"),
        ({"hidden_layer_sizes": (10, 0)}, "hidden_layer_sizes"),
        ({"hidden_layer_sizes": "big"}, "hidden_layer_sizes"),
        ({"n_estimators": 0}, "n_estimators"),
        ({"batch_size": 0}, "batch_size"),
        ({"activation": "gelu"}, "activation"),
        ({"learning_rate_init": -1.0}, "learning_rate_init"),
    ],
)
def test_bad_parameters_named(task, params, match):
    Est, (X, y) = task
    with pytest.raises(ValueError, match=match):
        Est(**{**FAST, **params}).fit(X, y)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_cuda_requested_without_gpu(task):
    Est, (X, y) = task
    with pytest.raises(ValueError, match="CUDA is not available"):
        Est(**FAST, device="cuda").fit(X, y)


def test_huge_inputs_at_predict_raise(regression_data):
    X, y = regression_data
    reg = NeuralBaggingRegressor(**FAST, input_scaling="standard").fit(X, y)
    with pytest.raises(ValueError, match="too large|non-finite"):
        reg.predict(np.full((2, 4), 1e300))


def test_robust_scaling_clips_huge_inputs(regression_data):
    # Robust scaling saturates smoothly: any huge value reads as the clip boundary.
    X, y = regression_data
    reg = NeuralBaggingRegressor(**FAST, input_scaling="robust").fit(X, y)
    a, b = reg.predict(np.full((2, 4), 1e300)), reg.predict(np.full((2, 4), 1e12))
    assert np.all(np.isfinite(a))
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_no_warnings_with_enough_epochs(regression_data):
    X, y = regression_data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NeuralBaggingRegressor(n_estimators=2, hidden_layer_sizes=(8,), tol=1e-2,
                               max_iter=500, random_state=0).fit(X, y)


# ------------------------------------------------------------------- CUDA
@cuda
def test_cuda_fit_pickles_to_cpu(task):
    Est, (X, y) = task
    est = Est(**FAST, device="cuda").fit(X, y)
    assert est.device_.startswith("cuda")
    again = pickle.loads(pickle.dumps(est))
    again.set_params(device="cpu")
    np.testing.assert_allclose(_outputs(est, X), _outputs(again, X), rtol=1e-4, atol=1e-5)


@cuda
def test_cuda_matches_cpu(task):
    Est, (X, y) = task
    a = _outputs(Est(**FAST, device="cuda", engine="batched").fit(X, y), X)
    b = _outputs(Est(**FAST, device="cpu", engine="batched").fit(X, y), X)
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


def test_keyboard_interrupt_keeps_a_usable_model_and_resumes(regression_data, monkeypatch):
    from skensemble import _training

    X, y = regression_data
    calls = {"n": 0}
    real = _training._epoch_subset

    def interrupt_in_epoch_4(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(_training, "_epoch_subset", interrupt_in_epoch_4)
    reg = NeuralBaggingRegressor(**FAST, warm_start=True)
    with pytest.warns(UserWarning, match="interrupted"):
        reg.fit(X, y)
    assert reg.n_iter_ == 3 and reg.loss_curve_.shape == (3, 4)
    assert np.all(np.isfinite(reg.predict(X)))
    monkeypatch.setattr(_training, "_epoch_subset", real)
    reg.fit(X, y)  # warm start continues from the interrupted weights
    assert reg.n_iter_ > 3 and reg.loss_curve_.shape[0] == reg.n_iter_
    assert reg.score(X, y) > 0.9


def test_concurrent_predictions_are_consistent(task):
    from concurrent.futures import ThreadPoolExecutor

    Est, (X, y) = task
    est = Est(**FAST).fit(X, y)
    expected = _outputs(est, X)
    state = pickle.dumps(est)
    threads_before = torch.get_num_threads()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: _outputs(est, X), range(32)))
    for r in results:
        np.testing.assert_array_equal(r, expected)
    assert pickle.dumps(est) == state  # predicting changed nothing
    assert torch.get_num_threads() == threads_before


CPU_ENGINES = ["reference", "batched", "numba"]


@pytest.mark.parametrize("engine", CPU_ENGINES)
def test_divergence_raises_on_every_engine(regression_data, engine):
    X, y = regression_data
    est = NeuralBaggingRegressor(n_estimators=3, hidden_layer_sizes=(8,), solver="sgd",
                                 learning_rate_init=1e6, batch_size=4, max_iter=20,
                                 engine=engine, random_state=0)
    with pytest.raises(ValueError, match=r"diverged.*learning_rate_init"):
        est.fit(X, y)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_same_members_whichever_engine(task, solver):
    Est, (X, y) = task
    params = dict(n_estimators=3, hidden_layer_sizes=(8, 6), activation="tanh", solver=solver,
                  batch_size=4, max_iter=5, learning_rate_init=0.01, random_state=0, tol=0.0)
    outputs = {eng: _outputs(Est(**params, engine=eng).fit(X, y), X) for eng in CPU_ENGINES}
    for eng in CPU_ENGINES[1:]:
        np.testing.assert_allclose(outputs[eng], outputs["reference"], rtol=2e-4, atol=2e-4)
    # and refits on one engine are bit-identical
    for eng in CPU_ENGINES:
        np.testing.assert_array_equal(_outputs(Est(**params, engine=eng).fit(X, y), X),
                                      outputs[eng])


@pytest.mark.parametrize("engine", ["batched", "numba"])
@pytest.mark.parametrize("early_stopping", [False, True])
def test_streamed_training_equals_resident(task, engine, early_stopping, monkeypatch):
    # Data too big for the device streams from host memory in chunks; forced here on
    # the CPU with tiny chunks, it must reproduce the resident fit.
    from skensemble import _schedule

    Est, (X, y) = task
    params = dict(n_estimators=3, hidden_layer_sizes=(8,), batch_size=4, max_iter=4,
                  engine=engine, early_stopping=early_stopping, bootstrap=True,
                  max_features=3, learning_rate_init=0.01, random_state=0, tol=0.0)
    resident = _outputs(Est(**params).fit(X, y), X)
    monkeypatch.setattr(_schedule, "STREAM_CHUNK_STEPS", 3)
    streamed = _outputs(Est(**params).fit(X, y), X)
    np.testing.assert_allclose(streamed, resident, rtol=1e-5, atol=1e-6)


def test_device_out_of_memory_says_what_to_change(regression_data, monkeypatch):
    from skensemble import _engine

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(_engine, "epoch_batched", out_of_memory)
    X, y = regression_data
    with pytest.raises(MemoryError, match="n_estimators or batch_size"):
        NeuralBaggingRegressor(**FAST, engine="batched").fit(X, y)


def test_device_out_of_memory_at_predict_says_what_to_change(regression_data, monkeypatch):
    from skensemble import _predict

    X, y = regression_data
    reg = NeuralBaggingRegressor(**FAST).fit(X, y)

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")

    monkeypatch.setattr(_predict, "forward_members", out_of_memory)
    with pytest.raises(MemoryError, match="fewer rows per call"):
        reg.predict(X)


def test_predictions_move_to_the_device_chunk_by_chunk(regression_data, monkeypatch):
    # Prediction copies X to the device one chunk at a time, never whole.
    from skensemble import _predict

    X, y = regression_data
    reg = NeuralBaggingRegressor(**FAST).fit(X, y)
    full = reg.predict(X)
    seen = []
    real = _predict.forward_members
    monkeypatch.setattr(_predict, "chunk_rows", lambda groups, device: 7)
    monkeypatch.setattr(_predict, "forward_members",
                        lambda g, Xt, *a, **k: seen.append(Xt.shape[0]) or real(g, Xt, *a, **k))
    np.testing.assert_allclose(reg.predict(X), full, rtol=1e-12)
    assert max(seen) == 7 and sum(seen) == X.shape[0]


def test_lion_solver_trains_on_the_engines_that_declare_it(regression_data):
    X, y = regression_data
    # constant rate: lion's sign steps are of fixed size, and 120 rows give 2 steps an
    # epoch, so the annealing of learning_rate="auto" on small data halves its distance
    kw = dict(n_estimators=3, hidden_layer_sizes=(16,), max_iter=150, solver="lion",
              learning_rate_init=3e-4, beta_2=0.99, random_state=0, learning_rate="constant")
    est = NeuralBaggingRegressor(**kw).fit(X, y)
    assert est.engine_ == "batched"  # numba does not declare lion: auto takes torch
    assert est.score(X, y) > 0.9
    with pytest.raises(ValueError, match="solver='lion'.*engine='auto'"):
        NeuralBaggingRegressor(**kw, engine="numba").fit(X, y)


def test_prediction_chunks_hand_freed_memory_back(regression_data, monkeypatch):
    # glibc keeps the chunks' freed temporaries in its heap unless trimmed: over thousands
    # of chunks that grew predictions by gigabytes (skensemble._predict.TRIM_EVERY)
    from skensemble import _predict

    X, y = regression_data
    reg = NeuralBaggingRegressor(**FAST).fit(X, y)
    full = reg.predict(X)
    trims = []
    monkeypatch.setattr(_predict, "chunk_rows", lambda groups, device: 2)
    monkeypatch.setattr(_predict, "trim_heap", lambda: trims.append(1))
    np.testing.assert_allclose(reg.predict(X), full, rtol=1e-12)
    n_chunks = -(-X.shape[0] // 2)
    assert len(trims) == (n_chunks - 1) // _predict.TRIM_EVERY > 0
    monkeypatch.undo()
    _predict.trim_heap()  # the real one runs here (glibc), or does nothing elsewhere
