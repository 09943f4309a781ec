"""label_smoothing: members fit smoothed one-hot targets; validation uses the true labels."""

import numpy as np
import pytest
from sklearn.base import clone

from skensemble import NeuralBaggingClassifier, _training
from skensemble._hyperspace import GroupSettings

KW = dict(n_estimators=3, hidden_layer_sizes=(8,), max_iter=40, random_state=0,
          early_stopping=True, n_iter_no_change=5)


@pytest.fixture
def separable():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 3))
    y = np.digitize(X[:, 0], [-0.5, 0.5])  # 3 classes, a clean threshold rule
    return X, y


def test_zero_is_the_default_and_changes_nothing(separable):
    X, y = separable
    a = NeuralBaggingClassifier(**KW).fit(X, y)
    b = NeuralBaggingClassifier(**KW, label_smoothing=0.0).fit(X, y)
    assert NeuralBaggingClassifier().get_params()["label_smoothing"] == 0.0
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert clone(b).get_params()["label_smoothing"] == 0.0


def test_members_fit_smoothed_targets_and_validate_on_true_labels(separable, monkeypatch):
    X, y = separable
    seen = []
    real = _training.train_group

    def spy(group, data, *args, **kwargs):
        seen.append(data)
        return real(group, data, *args, **kwargs)

    monkeypatch.setattr(_training, "train_group", spy)
    trained = dict(KW, max_iter=200)  # long enough that the unsmoothed members get sure
    clf = NeuralBaggingClassifier(**trained, label_smoothing=0.3).fit(X, y)
    data = seen[-1]
    onehot = np.eye(3)[y]
    np.testing.assert_array_equal(data.Y, onehot)  # the labels travel; training smooths them
    assert data.label_smoothing == 0.3
    fit_on, validate_on = _training._targets(data, GroupSettings())
    np.testing.assert_allclose(fit_on, 0.7 * onehot + 0.1, rtol=1e-6)
    np.testing.assert_array_equal(validate_on, onehot)
    # a group's own value wins over the estimator's (member_params)
    own, _ = _training._targets(data, GroupSettings(label_smoothing=0.0))
    np.testing.assert_array_equal(own, onehot)
    # smoothed members cannot be sure: no class gets near 0 or 1 on easy rows
    sharp = NeuralBaggingClassifier(**trained).fit(X, y).predict_proba(X)
    smooth = clf.predict_proba(X)
    assert smooth.max() < sharp.max() and smooth.min() > sharp.min()
    # the smoothed target's top is 0.8: most rows stay near it (a few far from the
    # class boundaries go above, where the network extrapolates), the unsmoothed go on
    assert np.median(smooth.max(1)) < 0.85 < np.median(sharp.max(1))
    assert clf.score(X, y) > 0.9


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2.0, "0.1"])
def test_bad_values_name_the_parameter(separable, bad):
    X, y = separable
    with pytest.raises(ValueError, match="label_smoothing"):
        NeuralBaggingClassifier(label_smoothing=bad).fit(X, y)
