"""_heldout: out-of-bag scores and ensemble weights, as functions over the fitted state.

The behaviour is tested where it shows (tests/test_bagging.py for out-of-bag scores,
tests/test_selection.py for selection); this module checks the functions' own contract.
"""

import numpy as np
import pytest
import torch

from skensemble import NeuralBaggingRegressor, _heldout


def test_the_functions_read_only_the_fitted_state_and_the_task(regression_data):
    # no calls back up through the estimator: the same weights from the state alone
    X, y = regression_data
    est = NeuralBaggingRegressor(n_estimators=4, hidden_layer_sizes=(4,), max_iter=5,
                                 bootstrap=True, oob_score=True, ensemble_selection=3,
                                 random_state=0).fit(X, y)
    fitted, task = est._fitted, est._task()
    Xs = fitted.standardise(X)
    Y = task.encode(y, fitted.targets)
    cpu = torch.device("cpu")
    w = _heldout.select(fitted, task, Xs, Y, None, 3, cpu)
    np.testing.assert_array_equal(w.weights, est.ensemble_weights_)
    oob = _heldout.oob(fitted, task, Xs, y, cpu)
    assert oob["oob_score_"] == est.oob_score_


def test_a_fit_without_selection_weighs_members_equally_and_drops_stale_scores(
        regression_data):
    X, y = regression_data
    est = NeuralBaggingRegressor(n_estimators=4, hidden_layer_sizes=(4,), max_iter=5,
                                 bootstrap=True, ensemble_selection=3, random_state=0)
    est.fit(X, y)
    assert hasattr(est, "selection_score_") and hasattr(est, "uniform_score_")
    est.set_params(ensemble_selection=None).fit(X, y)
    np.testing.assert_array_equal(est.ensemble_weights_, np.full(4, 0.25))
    assert not hasattr(est, "selection_score_") and not hasattr(est, "uniform_score_")
    with pytest.raises(ValueError, match="no member has any"):
        NeuralBaggingRegressor(ensemble_selection=3, early_stopping=False).fit(X, y)
