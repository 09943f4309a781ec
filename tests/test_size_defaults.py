"""The defaults that follow the data's size: batch_size="auto", learning_rate="auto" and
the tails of robust scaling (skensemble._pipeline.recipe, skensemble._scaling.ASINH_ROWS).

Each resolved default is bound to the explicit parameters it stands for: a default fit
equals, bit for bit, the fit given those values. The thresholds are lowered with
monkeypatch so the large-data rules run on a few hundred rows.
"""

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from skensemble import NeuralBaggingClassifier, NeuralBaggingRegressor, _pipeline, _scaling

SMALL = dict(n_estimators=3, hidden_layer_sizes=(8,), random_state=0)


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    X[:, 0] = rng.standard_t(1.5, n)  # heavy tails
    y = X[:, 1] + np.sin(X[:, 2]) + 0.1 * rng.standard_normal(n)
    return X, y


def _settings(**kw):
    params = NeuralBaggingRegressor(**kw).get_params()
    return _pipeline.Settings(params)


# ----------------------------------------------------------------- the rule itself
def test_recipe_mid_sized_data_keeps_the_early_stopping_defaults():
    r = _pipeline.recipe(_settings(), 5_000, validates=True)
    assert (r.batch_size, r.learning_rate, r.max_iter, r.lr_scale) == (64, "constant", 200, 1.0)


def test_recipe_large_data_takes_big_batches_and_a_cosine_budget():
    n = _pipeline.LARGE_ROWS
    r = _pipeline.recipe(_settings(), n, validates=True)
    assert r.batch_size == _pipeline.LARGE_BATCH
    assert r.learning_rate == "warmup_cosine"
    assert r.max_iter == _pipeline.LARGE_MAX_EPOCHS  # 40K rows: the budget's cap
    assert r.lr_scale == pytest.approx(np.sqrt(_pipeline.LARGE_BATCH / _pipeline.AUTO_BATCH))
    below = _pipeline.recipe(_settings(), n - 1, validates=True)
    assert (below.batch_size, below.learning_rate) == (64, "constant")


def test_recipe_large_data_budget_is_rows_visited_within_its_bounds():
    # epochs = LARGE_ROW_PASSES / rows, within [LARGE_EPOCHS, LARGE_MAX_EPOCHS]
    passes = _pipeline.LARGE_ROW_PASSES
    epochs = {n: _pipeline.recipe(_settings(), n).max_iter
              for n in (50_000, 90_000, passes // 20, 10**6, 10**7)}
    assert epochs[90_000] == 30 and epochs[passes // 20] == 20
    assert epochs[50_000] == round(passes / 50_000)
    assert epochs[10**6] == epochs[10**7] == _pipeline.LARGE_EPOCHS
    assert sorted(epochs.values(), reverse=True) == list(epochs.values())


def test_recipe_small_data_anneals_when_auto_early_stopping_cannot_validate():
    r = _pipeline.recipe(_settings(), 150, validates=False)
    assert (r.batch_size, r.learning_rate, r.max_iter) == (64, "warmup_cosine",
                                                          _pipeline.SMALL_EPOCHS)
    # early_stopping=False asked for max_iter epochs: kept constant, as before
    r = _pipeline.recipe(_settings(early_stopping=False), 150, validates=False)
    assert (r.learning_rate, r.max_iter) == ("constant", 200)


def test_recipe_keeps_explicit_values_and_caps_the_budget_by_max_iter():
    r = _pipeline.recipe(_settings(batch_size=32, learning_rate="constant"), 10**6)
    assert (r.batch_size, r.learning_rate, r.max_iter, r.lr_scale) == (32, "constant", 200, 1.0)
    r = _pipeline.recipe(_settings(max_iter=5), 10**6)
    assert (r.learning_rate, r.max_iter) == ("warmup_cosine", 5)
    # an int max_iter is the annealing's length, on small data too
    r = _pipeline.recipe(_settings(max_iter=300), 150, validates=False)
    assert (r.learning_rate, r.max_iter) == ("warmup_cosine", 300)
    # partial_fit calls have no end to anneal towards
    r = _pipeline.recipe(_settings(), 10**6, partial=True)
    assert r.learning_rate == "constant"


# --------------------------------------------------- default fits = explicit fits
def test_small_data_default_fit_equals_the_explicit_cosine_fit_and_does_not_warn():
    X, y = _data(150)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        auto = NeuralBaggingRegressor(**SMALL).fit(X, y)
    explicit = NeuralBaggingRegressor(**SMALL, learning_rate="warmup_cosine",
                                      max_iter=_pipeline.SMALL_EPOCHS).fit(X, y)
    np.testing.assert_array_equal(auto.predict(X), explicit.predict(X))
    assert int(np.max(auto.n_iter_)) <= _pipeline.SMALL_EPOCHS


def test_small_data_constant_schedule_still_warns_when_it_runs_out():
    X, y = _data(150)
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        NeuralBaggingRegressor(**SMALL, learning_rate="constant", max_iter=3).fit(X, y)


@pytest.mark.parametrize("Est", [NeuralBaggingRegressor, NeuralBaggingClassifier])
def test_large_data_default_fit_equals_the_explicit_large_recipe(monkeypatch, Est):
    monkeypatch.setattr(_pipeline, "LARGE_ROWS", 300)
    monkeypatch.setattr(_pipeline, "LARGE_BATCH", 32)
    X, y = _data(400)
    if Est is NeuralBaggingClassifier:
        y = (y > np.median(y)).astype(int)
    auto = Est(**SMALL).fit(X, y)
    explicit = Est(**SMALL, batch_size=32, learning_rate="warmup_cosine",
                   max_iter=_pipeline.large_epochs(400),
                   learning_rate_init=2e-3 * np.sqrt(32 / 64)).fit(X, y)
    out = (lambda e: e.predict_proba(X)) if Est is NeuralBaggingClassifier else (
        lambda e: e.predict(X))
    np.testing.assert_array_equal(out(auto), out(explicit))
    assert int(np.max(auto.n_iter_)) <= _pipeline.LARGE_MAX_EPOCHS


def test_partial_fit_with_auto_learning_rate_runs_constant(monkeypatch):
    monkeypatch.setattr(_pipeline, "LARGE_ROWS", 100)
    X, y = _data(300)
    auto = NeuralBaggingRegressor(**SMALL, batch_size=16)
    const = NeuralBaggingRegressor(**SMALL, batch_size=16, learning_rate="constant")
    for _ in range(2):
        auto.partial_fit(X, y)
        const.partial_fit(X, y)
    np.testing.assert_array_equal(auto.predict(X), const.predict(X))


# ------------------------------------------------------------ tails of the scaling
def test_robust_scaling_compresses_tails_by_asinh_from_asinh_rows(monkeypatch):
    X = np.random.default_rng(0).normal(size=(500, 4))  # no long tail
    small = _scaling.fit_input_transform(X, None, robust=True)
    assert small.asinh is None
    monkeypatch.setattr(_scaling, "ASINH_ROWS", 500)
    large = _scaling.fit_input_transform(X, None, robust=True)
    assert large.asinh is not None
    far = np.array([[1e4, 0.0, 0.0, 0.0], [1e5, 0.0, 0.0, 0.0]])
    z_small = small.apply(far)[:, 0]
    z_large = large.apply(far)[:, 0]
    # the smooth clip saturates: two far values become one; asinh keeps them apart
    assert z_small[1] - z_small[0] < 1e-3
    assert z_large[1] - z_large[0] > 1.0
    t = large.tensors()
    u = ((far[:, 0] - large.mean[0]) / large.scale[0] - large.center[0]) / (
        large.spread[0] * _scaling.CLIP)
    np.testing.assert_allclose(z_large, _scaling.CLIP * np.arcsinh(u), rtol=1e-6)
    assert "asinh" in t and "asinh" not in small.tensors()


def test_long_tailed_features_take_asinh_tails_below_asinh_rows(monkeypatch):
    # with TAIL_SHARE set (off by default), a feature with that share of its rows or more
    # beyond +-CLIP (robust units) takes asinh tails; a normal one keeps the clipping
    rng = np.random.default_rng(0)
    n = 2000
    X = np.column_stack([rng.normal(size=n), rng.standard_cauchy(size=n),
                         rng.exponential(size=n) ** 3])
    assert _scaling.fit_input_transform(X, None, robust=True).asinh is None  # off
    monkeypatch.setattr(_scaling, "TAIL_SHARE", 0.05)
    tr = _scaling.fit_input_transform(X, None, robust=True)
    assert tr.asinh.tolist() == [0.0, 1.0, 1.0]
    far = np.array([[1e3, 1e4, 1e4], [1e4, 1e5, 1e5]])
    Z = tr.apply(far)
    u = ((far - tr.mean) / tr.scale - tr.center) / (tr.spread * _scaling.CLIP)
    np.testing.assert_allclose(Z[:, 1:], _scaling.CLIP * np.arcsinh(u[:, 1:]), rtol=1e-6)
    np.testing.assert_allclose(Z[:, 0], _scaling.CLIP * u[:, 0] / np.hypot(1, u[:, 0]),
                               rtol=1e-6)
    assert Z[1, 1] - Z[0, 1] > 1.0 and Z[1, 0] - Z[0, 0] < 1e-3
    # weights count: the same rows with the tail's rows weighted near zero keep the clip
    w = np.where(np.abs(X[:, 1] - np.median(X[:, 1])) > 3, 1e-6, 1.0)
    wtr = _scaling.fit_input_transform(X, w, robust=True)
    assert wtr.asinh[1] == 0.0
    # no long tail anywhere: no asinh array at all
    assert _scaling.fit_input_transform(X[:, :1], None, robust=True).asinh is None


def test_asinh_tails_predict_and_export_alike(monkeypatch):
    monkeypatch.setattr(_scaling, "ASINH_ROWS", 200)
    X, y = _data(300)
    est = NeuralBaggingRegressor(**SMALL, max_iter=5).fit(X, y)
    assert est._fitted.inputs.asinh is not None
    Xt = X.copy()
    Xt[:3, 0] = [1e3, -1e4, 1e5]
    module = est.to_torch()
    with torch.no_grad():
        exported = module(torch.as_tensor(Xt)).numpy().reshape(-1)
    np.testing.assert_allclose(exported, est.predict(Xt), rtol=1e-5, atol=1e-6)

