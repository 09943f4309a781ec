"""weight_decay: decoupled weight decay (AdamW) on both estimators."""

import numpy as np
import pytest

from skensemble import NeuralBaggingClassifier, NeuralBaggingRegressor, _engine

KW = dict(n_estimators=3, hidden_layer_sizes=(16,), max_iter=30, random_state=0,
          early_stopping=False)


def _weight_norm(est):
    return sum(np.linalg.norm(np.concatenate([c.ravel() for c in est.get_member_params(e)[0]]))
               for e in range(est.n_estimators))


@pytest.mark.parametrize("engine", ["numba", "batched"])
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_decay_shrinks_the_weights_and_is_skipped_at_zero(regression_data, solver, engine,
                                                          monkeypatch):
    X, y = regression_data
    kw = dict(KW, solver=solver, learning_rate_init=0.01, engine=engine)
    plain = NeuralBaggingRegressor(**kw).fit(X, y)
    decayed = NeuralBaggingRegressor(**kw, weight_decay=5.0).fit(X, y)
    assert _weight_norm(decayed) < 0.8 * _weight_norm(plain)
    # a small decay still changes the members (it is not ignored)...
    small = NeuralBaggingRegressor(**kw, weight_decay=1e-3).fit(X, y)
    assert not np.array_equal(small.predict(X), plain.predict(X))
    # ...and without one the torch engines never run the decay step
    def no_decay(*args, **kwargs):
        raise AssertionError("decayed with weight_decay=0")

    monkeypatch.setattr(_engine, "decay_weights", no_decay)
    again = NeuralBaggingRegressor(**dict(kw, engine="batched")).fit(X, y)
    assert np.isfinite(again.predict(X)).all()
    with pytest.raises(AssertionError, match="decayed"):
        NeuralBaggingRegressor(**dict(kw, engine="batched"), weight_decay=1e-3).fit(X, y)


def test_classifier_takes_it_and_bad_values_name_it(classification_data):
    X, y = classification_data
    clf = NeuralBaggingClassifier(**KW, weight_decay=0.1).fit(X, y)
    assert clf.get_params()["weight_decay"] == 0.1 and clf.score(X, y) > 0.6
    with pytest.raises(ValueError, match="weight_decay"):
        NeuralBaggingClassifier(weight_decay=-1.0).fit(X, y)
