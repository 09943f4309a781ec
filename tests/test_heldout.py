"""HeldOutRows: the mixin that owns out-of-bag scores and ensemble weights.

The behaviour is tested where it shows (tests/test_bagging.py for out-of-bag scores,
tests/test_selection.py for selection); this module checks the mixin's own contract.
"""

import numpy as np
import pytest

from skensemble import NeuralBaggingRegressor
from skensemble._heldout import HeldOutRows


def test_the_estimators_get_oob_and_selection_from_the_mixin():
    assert issubclass(NeuralBaggingRegressor, HeldOutRows)
    for name in ("_compute_oob", "_select_members", "_validation_mask", "_check_selection"):
        assert getattr(NeuralBaggingRegressor, name) is getattr(HeldOutRows, name)


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
