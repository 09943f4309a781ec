"""loss="quantile": the pinball loss, one output per quantile, and what reads it.

The engines' agreement with the reference on the pinball loss is in tests/test_contract.py
(its cases come from each engine's declared losses); here: the loss and its slope, the
estimator's shapes, ordering, coverage, scores, out-of-bag and held-out machinery, export,
persistence and errors.
"""

import pickle

import numpy as np
import pytest
import torch
from sklearn.metrics import d2_pinball_score

from skensemble import NeuralBaggingRegressor, _dispatch, _engine, _engines
from skensemble._engine import Hyper
from skensemble._tasks import QuantileRegression, QuantileTargets

FAST = dict(n_estimators=4, hidden_layer_sizes=(16,), max_iter=30, random_state=0)


def _hetero(n, seed):
    """A heteroscedastic set: noise grows with |x_0|, so quantiles are not mean + const."""
    rng = np.random.RandomState(seed)
    X = rng.uniform(-2, 2, size=(n, 3))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] + (0.2 + 0.8 * np.abs(X[:, 0])) * rng.normal(size=n)
    return X, y


@pytest.fixture
def hetero():
    return _hetero(300, 0)


# ----------------------------------------------------------------- the loss itself
def test_pinball_loss_and_slope():
    out = torch.tensor([[[0.0, 2.0], [1.0, 1.0], [3.0, -1.0]]])  # (1, 3, 2)
    Y = torch.tensor([[[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]]])
    taus = (0.1, 0.8)
    rows = _engine.per_row_loss(out, Y, "quantile", taus)
    r = out - Y  # above the target: (1 - tau) * r; below: tau * (-r)
    expect = torch.where(r > 0, (1 - torch.tensor(taus)) * r, -torch.tensor(taus) * r).sum(-1)
    torch.testing.assert_close(rows, expect)
    # the slope is autograd's gradient of the loss (at a tie: -tau)
    p = out.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_engine.per_row_loss(p, Y, "quantile", taus).sum(), p)
    torch.testing.assert_close(_engine.output_delta(out, Y, "quantile", taus), grad)
    assert grad[0, 1, 0] == -0.1  # out == y
    with pytest.raises(ValueError, match="one quantile per output"):
        _engine.per_row_loss(out, Y, "quantile", (0.5,))


def test_member_scores_are_d2_of_the_pinball():
    task = QuantileRegression((0.25, 0.75), single=False)
    rng = np.random.RandomState(0)
    y = torch.tensor(rng.normal(size=40))
    Y = y[None, :, None].expand(3, 40, 2)  # (E, Nv, O)
    w = torch.ones(3, 40, dtype=torch.float64)
    const = torch.stack([torch.quantile(y, 0.25, interpolation="lower"),
                         torch.quantile(y, 0.75, interpolation="lower")])
    out = torch.stack([Y[0], const.expand(40, 2), Y[0] + 0.3])  # perfect, constant, shifted
    scores = task.member_scores(out, Y, w).numpy()
    assert scores[0] == 1.0 and abs(scores[1]) < 1e-12
    shifted = np.mean([d2_pinball_score(y.numpy(), y.numpy() + 0.3, alpha=a)
                       for a in (0.25, 0.75)])
    assert scores[2] < 1 and scores[2] == pytest.approx(shifted, abs=0.05)


# ----------------------------------------------------------------- the estimator
def test_shapes_and_ascending_levels(hetero):
    X, y = hetero
    reg = NeuralBaggingRegressor(loss="quantile", quantile=[0.9, 0.1, 0.5], **FAST).fit(X, y)
    np.testing.assert_array_equal(reg.quantiles_, [0.1, 0.5, 0.9])
    pred, std = reg.predict(X, return_std=True)
    assert pred.shape == std.shape == (300, 3) and reg.n_outputs_ == 1
    assert np.all(np.diff(pred, axis=1) >= 0)
    assert reg.predict_members(X).shape == (4, 300, 3)
    one = NeuralBaggingRegressor(loss="quantile", quantile=0.5, **FAST).fit(X, y)
    assert one.predict(X).shape == (300,) and one.predict_members(X).shape == (4, 300)
    listed = NeuralBaggingRegressor(loss="quantile", quantile=[0.5], **FAST).fit(X, y)
    np.testing.assert_array_equal(listed.predict(X)[:, 0], one.predict(X))
    assert not hasattr(NeuralBaggingRegressor(**FAST).fit(X, y), "quantiles_")


def test_crossing_quantiles_are_sorted(hetero):
    # one epoch from random weights: the members' close quantiles cross on many rows
    X, y = hetero
    reg = NeuralBaggingRegressor(loss="quantile", quantile=[0.45, 0.5, 0.55],
                                 **dict(FAST, max_iter=1)).fit(X, y)
    raw = reg._member_outputs(X, lambda out: out.mean(0))  # (n, 3) standardised means
    decoded = reg._fitted.targets.decode(raw)
    assert np.any(np.diff(decoded, axis=1) < 0)  # they do cross
    pred = reg.predict(X)
    np.testing.assert_allclose(pred, np.sort(decoded, axis=1), rtol=1e-12, atol=1e-12)
    assert np.all(np.diff(pred, axis=1) >= 0)
    assert np.all(np.diff(reg.predict_members(X), axis=-1) >= 0)
    module = reg.to_torch()
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.from_numpy(X)).numpy(), pred, atol=1e-5)


def test_coverage_on_held_out_rows():
    X, y = _hetero(1500, 0)
    Xt, yt = _hetero(3000, 1)
    reg = NeuralBaggingRegressor(loss="quantile", quantile=[0.1, 0.5, 0.9], n_estimators=4,
                                 hidden_layer_sizes=(32,), max_iter=100,
                                 random_state=0).fit(X, y)
    cover = (yt[:, None] <= reg.predict(Xt)).mean(0)
    np.testing.assert_allclose(cover, [0.1, 0.5, 0.9], atol=0.04)
    # it learnt the spread: the 80% interval is wider where the noise is
    pred = reg.predict(Xt)
    width = pred[:, 2] - pred[:, 0]
    assert width[np.abs(Xt[:, 0]) > 1.5].mean() > 2 * width[np.abs(Xt[:, 0]) < 0.5].mean()


def test_score_is_mean_d2_pinball(hetero):
    X, y = hetero
    reg = NeuralBaggingRegressor(loss="quantile", quantile=[0.2, 0.7], **FAST).fit(X, y)
    pred = reg.predict(X)
    sw = np.linspace(0.5, 2, y.size)
    expect = np.mean([d2_pinball_score(y, pred[:, j], alpha=a, sample_weight=sw)
                      for j, a in enumerate((0.2, 0.7))])
    assert reg.score(X, y, sample_weight=sw) == pytest.approx(expect, rel=1e-12)
    assert 0 < reg.score(X, y) < 1


@pytest.mark.filterwarnings("ignore:Some inputs do not have OOB scores")
def test_out_of_bag_and_validation(hetero):
    X, y = hetero
    reg = NeuralBaggingRegressor(loss="quantile", quantile=[0.1, 0.9], bootstrap=True,
                                 oob_score=True, **FAST).fit(X, y)
    oob = reg.oob_prediction_
    has = ~np.isnan(oob[:, 0])
    assert oob.shape == (300, 2) and np.all(np.diff(oob[has], axis=1) >= 0)
    assert reg.oob_score_ == pytest.approx(
        np.mean([d2_pinball_score(y[has], oob[has, j], alpha=a)
                 for j, a in enumerate((0.1, 0.9))]), rel=1e-12)
    # early stopping ('auto': 300 rows) on each member's validation pinball loss
    assert reg.early_stopping_
    curve = reg.validation_loss_curve_
    best = np.nanmin(curve, axis=0)
    np.testing.assert_allclose(reg.best_validation_loss_, best, rtol=1e-6)
    assert np.all(reg.validation_scores_[0] < 1)


def test_ensemble_selection_minimises_the_pinball(hetero):
    X, y = hetero
    reg = NeuralBaggingRegressor(loss="quantile", quantile=0.8, ensemble_selection=10,
                                 member_params={"learning_rate_init": [1e-4, 1e-2]},
                                 **FAST).fit(X, y)
    assert reg.selection_score_ <= reg.uniform_score_
    assert reg.predict(X).shape == (300,)


def test_partial_fit_and_warm_start(hetero):
    X, y = hetero
    a = NeuralBaggingRegressor(loss="quantile", quantile=[0.25, 0.75], **FAST)
    a.partial_fit(X, y)
    a.partial_fit(X, y)
    assert a.predict(X).shape == (300, 2)
    w = NeuralBaggingRegressor(loss="quantile", quantile=0.5, warm_start=True, **FAST).fit(X, y)
    w.set_params(n_estimators=6).fit(X, y)
    assert w.predict_members(X).shape == (6, 300)
    with pytest.raises(ValueError, match="cannot train it with loss='quantile' with quantiles"):
        w.set_params(quantile=0.6).fit(X, y)
    with pytest.raises(ValueError, match="cannot train it with loss='squared_error'"):
        w.set_params(loss="squared_error", quantile=None).fit(X, y)
    with pytest.raises(ValueError, match="cannot train it with loss='quantile'"):
        a.set_params(quantile=[0.1, 0.9]).partial_fit(X, y)


def test_export_and_persistence(hetero, tmp_path):
    X, y = hetero
    reg = NeuralBaggingRegressor(loss="quantile", quantile=[0.1, 0.5, 0.9],
                                 **FAST).fit(X, y)
    with torch.no_grad():
        got = reg.to_torch()(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(got, reg.predict(X), atol=1e-5)
    again = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(again.predict(X), reg.predict(X))
    np.testing.assert_array_equal(again.quantiles_, reg.quantiles_)
    sio = pytest.importorskip("skops.io")
    path = tmp_path / "q.skops"
    sio.dump(reg, path)
    untrusted = sio.get_untrusted_types(file=path)
    assert all(name.startswith("skensemble.") for name in untrusted), untrusted
    assert "skensemble._tasks.QuantileTargets" in untrusted
    loaded = sio.load(path, trusted=untrusted)
    np.testing.assert_array_equal(loaded.predict(X), reg.predict(X))


# ---------------------------------------------------------------- engines, errors
def test_engines_declare_the_pinball_loss():
    request = _engines.Request(Hyper(loss="quantile", quantiles=(0.5,), batch_size=8),
                               (3, 4, 1))
    for name in ("reference", "batched", "graphed", "numba"):
        assert _engines.ENGINES[name].refusal(request) is None
    assert "loss='quantile'" in _engines.ENGINES["triton"].refusal(request)
    cpu = torch.device("cpu")
    assert _dispatch.select_engine("auto", request, cpu) == "numba"
    assert _dispatch.select_engine("batched", request, cpu) == "batched"


@pytest.mark.parametrize("engine", ["numba", "batched"])
def test_estimator_runs_the_named_engine(hetero, engine):
    X, y = hetero
    reg = NeuralBaggingRegressor(loss="quantile", quantile=[0.3, 0.6], engine=engine,
                                 device="cpu", **dict(FAST, max_iter=3)).fit(X, y)
    assert reg.engine_ == engine


def test_fixed_seed_is_reproducible(hetero):
    X, y = hetero
    kw = dict(loss="quantile", quantile=[0.3, 0.6], **FAST)
    a = NeuralBaggingRegressor(**kw).fit(X, y).predict(X)
    np.testing.assert_array_equal(a, NeuralBaggingRegressor(**kw).fit(X, y).predict(X))


@pytest.mark.parametrize("params, match", [
    (dict(loss="quantile"), "needs quantile="),
    (dict(quantile=0.5), r"read only with loss='quantile'"),
    (dict(loss="quantile", quantile=[0.5, 0.5]), "twice"),
    (dict(loss="quantile", quantile=[0.1, 1.0]), r"float in \(0, 1\)"),
    (dict(loss="quantile", quantile=[]), "non-empty"),
    (dict(loss="quantile", quantile=[[0.1, 0.2]]), r"float in \(0, 1\)"),
    (dict(loss="quantile", quantile=1.2), "quantile"),
    (dict(loss="quantile", quantile=0.0), "quantile"),
    (dict(loss="pinball"), "loss"),
])
def test_bad_parameters_raise(hetero, params, match):
    X, y = hetero
    with pytest.raises(ValueError, match=match):
        NeuralBaggingRegressor(**params, **FAST).fit(X, y)


def test_one_target_only(hetero):
    X, y = hetero
    with pytest.raises(ValueError, match="one target; y has 2 columns"):
        NeuralBaggingRegressor(loss="quantile", quantile=0.5, **FAST).fit(X, np.c_[y, y])
    # one column is one target
    reg = NeuralBaggingRegressor(loss="quantile", quantile=0.5, **FAST).fit(X, y[:, None])
    assert reg.predict(X).shape == (300,)


def test_targets_sort_and_code():
    t = QuantileTargets(one_d=False, n_outputs=1, mean=np.array([1.0]), unit=np.array([1.0]),
                        scale=np.array([2.0]), div=np.array([2.0]), quantiles=(0.1, 0.9))
    np.testing.assert_array_equal(t.encode(np.array([3.0, 1.0])), [[1.0, 1.0], [0.0, 0.0]])
    np.testing.assert_array_equal(t.order(np.array([[2.0, 1.0], [np.nan, np.nan]])),
                                  [[1.0, 2.0], [np.nan, np.nan]])
