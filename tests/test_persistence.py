"""Saved and loaded models predict exactly as before: pickle, joblib and skops.

Fitted state is NumPy arrays and plain Python values, so every format round-trips it
bit for bit; the per-member rows and features, recomputed from stored seeds, come back
too. skops loads only types the caller trusts: the types it reports must be
skensemble's own classes (and any NumPy/scikit-learn types listed below), nothing else.
"""

import importlib
import pickle

import joblib
import pytest
from numpy.testing import assert_array_equal

from skensemble import NeuralBaggingClassifier, NeuralBaggingRegressor

# three members leave a few rows without an out-of-bag prediction; that is fine here
pytestmark = pytest.mark.filterwarnings("ignore:Some inputs do not have OOB scores")

SMALL = dict(n_estimators=3, hidden_layer_sizes=(8,), max_iter=20, random_state=0)
SAMPLING = pytest.mark.parametrize(
    "sampling",
    [dict(bootstrap=True, oob_score=True), dict(max_features=0.5),
     dict(bootstrap=True, ensemble_selection=5, member_params={
         "activation": ["relu", "tanh"], "max_samples": [0.5, 1.0], "alpha": [1e-4, 1e-2],
         "n_bins": [4, 8], "numeric_encoding": ["none", "piecewise_linear"]})],
    ids=["bootstrap", "max_features", "member_params"],
)
ESTIMATORS = pytest.mark.parametrize(
    "Estimator, data",
    [
        (NeuralBaggingRegressor, "regression_data"),
        (NeuralBaggingClassifier, "classification_data"),
    ],
    ids=["regressor", "classifier"],
)
# NumPy / scikit-learn types that skops does not trust by default but that a fitted
# skensemble model may legitimately hold. None is needed today; add one here only with a
# reason.
EXPECTED_FOREIGN_TYPES = frozenset()


def _fitted(Estimator, X, y, sampling):
    return Estimator(**SMALL, **sampling).fit(X, y)


def _outputs(est, X):
    """Everything the estimator predicts or recomputes from stored state."""
    out = {
        "predict": est.predict(X),
        "estimators_samples_": est.estimators_samples_,
        "estimators_features_": est.estimators_features_,
    }
    if isinstance(est, NeuralBaggingClassifier):
        out["predict_proba"] = est.predict_proba(X)
        out["predict_proba_members"] = est.predict_proba_members(X)
    else:
        out["predict_std"] = est.predict(X, return_std=True)[1]
        out["predict_members"] = est.predict_members(X)
    if hasattr(est, "oob_score_"):
        out["oob_score_"] = est.oob_score_
    return out


def _assert_same_model(loaded, original, X):
    assert type(loaded) is type(original)
    assert loaded.get_params() == original.get_params()
    assert loaded.n_features_in_ == original.n_features_in_
    if hasattr(original, "classes_"):
        assert_array_equal(loaded.classes_, original.classes_)
    expected = _outputs(original, X)
    got = _outputs(loaded, X)
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        if isinstance(value, list):  # per-member index arrays
            assert len(got[name]) == len(value), name
            for g, v in zip(got[name], value, strict=True):
                assert_array_equal(g, v, err_msg=name)
        else:
            assert_array_equal(got[name], value, err_msg=name)


@ESTIMATORS
@SAMPLING
def test_pickle_round_trip(request, Estimator, data, sampling):
    X, y = request.getfixturevalue(data)
    est = _fitted(Estimator, X, y, sampling)
    loaded = pickle.loads(pickle.dumps(est, protocol=pickle.HIGHEST_PROTOCOL))
    _assert_same_model(loaded, est, X)


@ESTIMATORS
@SAMPLING
@pytest.mark.parametrize("compress", [0, 3])
def test_joblib_round_trip(tmp_path, request, Estimator, data, sampling, compress):
    X, y = request.getfixturevalue(data)
    est = _fitted(Estimator, X, y, sampling)
    path = tmp_path / "model.joblib"
    joblib.dump(est, path, compress=compress)
    _assert_same_model(joblib.load(path), est, X)


def _is_expected_type(name):
    """A class defined in skensemble, or an allow-listed NumPy/scikit-learn type."""
    module, _, attr = name.rpartition(".")
    if module.split(".")[0] == "skensemble":
        obj = getattr(importlib.import_module(module), attr, None)
        return isinstance(obj, type)
    return name in EXPECTED_FOREIGN_TYPES


@ESTIMATORS
@SAMPLING
def test_skops_round_trip(tmp_path, request, Estimator, data, sampling):
    sio = pytest.importorskip("skops.io")
    X, y = request.getfixturevalue(data)
    est = _fitted(Estimator, X, y, sampling)
    path = tmp_path / "model.skops"
    sio.dump(est, path)

    untrusted = sio.get_untrusted_types(file=path)
    print("untrusted types:", untrusted)
    assert f"{Estimator.__module__}.{Estimator.__qualname__}" in untrusted
    unexpected = [name for name in untrusted if not _is_expected_type(name)]
    assert not unexpected, f"skops reports unexpected types in a fitted model: {unexpected}"

    loaded = sio.load(path, trusted=untrusted)
    _assert_same_model(loaded, est, X)
