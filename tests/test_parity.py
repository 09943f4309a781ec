"""Behaviour users expect from scikit-learn's MLP, and warnings that point at their code."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from skensemble import NeuralBaggingClassifier, NeuralBaggingRegressor

SMALL = dict(n_estimators=2, hidden_layer_sizes=(4,), random_state=0)


def _caught(fn, category):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    hits = [w for w in caught if issubclass(w.category, category)]
    assert hits, [str(w.message) for w in caught]
    return hits


def test_batch_size_larger_than_data_warns_at_the_callers_line(regression_data):
    X, y = regression_data
    est = NeuralBaggingRegressor(**SMALL, batch_size=10_000, max_iter=2)
    (w,) = [w for w in _caught(lambda: est.fit(X, y), UserWarning) if "batch_size" in str(w.message)]
    assert "clipped" in str(w.message)
    assert w.filename == __file__


@pytest.mark.parametrize("early_stopping", [False, True])
def test_convergence_warning_at_max_iter_points_at_the_caller(regression_data, early_stopping):
    X, y = regression_data
    est = NeuralBaggingRegressor(**SMALL, max_iter=2, early_stopping=early_stopping, tol=0.0)
    (w,) = _caught(lambda: est.fit(X, y), ConvergenceWarning)
    assert ("validation" if early_stopping else "training") in str(w.message)
    assert w.filename == __file__


def test_oob_warning_points_at_the_caller(regression_data):
    X, y = regression_data
    est = NeuralBaggingRegressor(**SMALL, max_iter=3, bootstrap=True, oob_score=True)
    hits = [w for w in _caught(lambda: est.fit(X, y), UserWarning) if "OOB" in str(w.message)]
    assert hits and all(w.filename == __file__ for w in hits)


def test_early_stopping_refuses_a_validation_set_of_one_row():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(10, 2)), rng.normal(size=10)
    with pytest.raises(ValueError, match="validation set is too small"):
        NeuralBaggingRegressor(**SMALL, early_stopping=True).fit(X, y)
    NeuralBaggingRegressor(**SMALL, early_stopping=True, validation_fraction=0.2,
                           max_iter=3).fit(X, y)  # two rows: fine


def test_partial_fit_needs_classes_on_the_first_call(classification_data):
    X, y = classification_data
    clf = NeuralBaggingClassifier(**SMALL)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    clf.partial_fit(X, y, classes=np.unique(y))
    clf.partial_fit(X, y)  # later calls do not need them
    assert clf.n_iter_ == 2


def test_progress_bar_stays_visible_when_it_ends(regression_data, capsys):
    X, y = regression_data
    NeuralBaggingRegressor(**SMALL, max_iter=3, tol=0.0, verbose=1).fit(X, y)
    err = capsys.readouterr().err
    last = err.rstrip(" ").split("\r")[-1]
    assert last.endswith("\n") and "3/3" in last  # the final state, not an erased line
