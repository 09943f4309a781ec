"""prune="halving" and stop_reason_: why and when each member stopped."""

import numpy as np
import pytest

from skensemble import NeuralBaggingClassifier, NeuralBaggingRegressor, _training


@pytest.fixture
def data():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(400, 4))
    return X, X[:, 0] - np.tanh(2 * X[:, 1]) + 0.1 * rng.normal(size=400)


# rates far apart: the slow members are clearly worse at the checkpoints
KW = dict(n_estimators=8, hidden_layer_sizes=(16,), max_iter=60, early_stopping=True,
          n_iter_no_change=5, tol=0.0, random_state=0,
          member_params={"learning_rate_init": [1e-5, 3e-3]})


def test_halving_stops_the_worse_half_at_the_checkpoints(data):
    X, y = data
    est = NeuralBaggingRegressor(**KW, prune="halving").fit(X, y)
    reasons = est.stop_reason_
    pruned = reasons == "pruned"
    assert pruned.sum() >= 4  # the first checkpoint alone stops half of the 8
    # pruned at a checkpoint: epochs 5, 10, 20, 40
    assert set(est.n_iter_per_member_[pruned]) <= {5, 10, 20, 40}
    first = est.n_iter_per_member_ == 5
    assert first.sum() == 4 and np.all(pruned[first])
    # the pruned at the first checkpoint were worse there than those going on
    at5 = np.nanmin(est.validation_loss_curve_[:5], axis=0)
    assert at5[first].min() >= at5[~first].max()
    rates = np.array([p["learning_rate_init"] for p in est.member_params_])
    assert np.all(rates[first] == 1e-5)  # the slow learners went first
    assert set(reasons) <= {"pruned", "no improvement", "max_iter"}
    # pruned members keep their best weights: the loss recomputed equals the best
    assert np.all(np.isfinite(est.best_validation_loss_))


def test_without_prune_every_member_runs_until_its_own_stop(data):
    X, y = data
    est = NeuralBaggingRegressor(**KW).fit(X, y)
    assert "pruned" not in set(est.stop_reason_)
    assert set(est.stop_reason_) <= {"no improvement", "max_iter"}
    short = NeuralBaggingRegressor(**dict(KW, max_iter=3)).fit(X, y)
    assert set(short.stop_reason_) == {"max_iter"}


def test_halving_helper_keeps_the_better_half():
    best = np.array([3.0, 1.0, np.inf, 2.0, 0.5])
    active = np.array([True, True, True, True, False])
    out = _training._halving(active, best)
    assert out.tolist() == [True, False, True, False, False]  # 4 active: the worse 2
    assert not _training._halving(np.array([True, False]), best[:2]).any()


def test_stop_reasons_survive_warm_start_and_the_classifier(data):
    X, y = data
    est = NeuralBaggingRegressor(**dict(KW, n_estimators=4), warm_start=True).fit(X, y)
    old = est.stop_reason_.copy()
    est.set_params(n_estimators=6).fit(X, y)
    assert est.stop_reason_.shape == (6,) and list(est.stop_reason_[:4]) == list(old)
    clf = NeuralBaggingClassifier(**KW, prune="halving").fit(X, (y > 0).astype(int))
    assert "pruned" in set(clf.stop_reason_)


def test_prune_needs_validation(data):
    X, y = data
    with pytest.raises(ValueError, match="prune='halving'.*early_stopping"):
        NeuralBaggingRegressor(**dict(KW, early_stopping=False), prune="halving").fit(X, y)
    with pytest.raises(ValueError, match="prune"):
        NeuralBaggingRegressor(prune="thirds").fit(X, y)
