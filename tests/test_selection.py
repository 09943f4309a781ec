"""Ensemble selection: weights that predict, never worse than uniform, skipped members.

The fits use two architectures, one far too narrow ((1,) hidden unit), so that the
selection has clearly worse members to leave out.
"""

import pickle

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.metrics import log_loss
from sklearn.model_selection import GridSearchCV

from skensemble import NeuralBaggingClassifier, NeuralBaggingRegressor, _predict, _selection

pytestmark = pytest.mark.filterwarnings("ignore:Some inputs do not have OOB scores",
                                        "ignore::sklearn.exceptions.ConvergenceWarning")

MIXED = dict(n_estimators=6, hidden_layer_sizes=[(12,), (1,)], max_iter=15,
             learning_rate_init=0.02, random_state=0)
SAMPLING = pytest.mark.parametrize(
    "sampling", [dict(bootstrap=True), dict(early_stopping=True, validation_fraction=0.5)],
    ids=["oob", "holdout"])


def _fit(Estimator, data, **params):
    X, y = data
    return Estimator(**{**MIXED, **params}).fit(X, y)


def _weighted(est, X):
    """What predict should be: the weighted mean of all members' predictions."""
    w = est.ensemble_weights_
    if isinstance(est, NeuralBaggingClassifier):
        return np.tensordot(w, est.predict_proba_members(X), 1)
    return np.tensordot(w, est.predict_members(X), 1)


def _predicted(est, X):
    if isinstance(est, NeuralBaggingClassifier):
        return est.predict_proba(X)
    return est.predict(X)


def _validation_loss(est, X, y, weights):
    """The documented validation loss, computed densely from the public predictions."""
    mask = est._fitted.validation_mask()  # (E, N)
    has = mask.any(0)
    m = mask[:, has].astype(float)  # (E, n)
    if isinstance(est, NeuralBaggingClassifier):
        proba = est.predict_proba_members(X)[:, has]  # (E, n, K)
        codes = np.searchsorted(est.classes_, y[has])
        values = proba[:, np.arange(codes.size), codes][..., None]  # (E, n, 1)
    else:  # standardised units, as the estimator scores
        values = ((est.predict_members(X)[:, has] - est._fitted.targets.mean) / est._fitted.targets.scale)[..., None]
    mean = (m[..., None] * values).sum(0) / m.sum(0)[:, None]  # (n, D) validation average
    pred = mean + (weights[:, None, None] * m[..., None] * (values - mean)).sum(0)
    if isinstance(est, NeuralBaggingClassifier):
        return float(-np.log(np.clip(pred[:, 0], 1e-15, 1)).mean())
    target = (y[has] - est._fitted.targets.mean) / est._fitted.targets.scale
    return float(((pred[:, 0] - target) ** 2).mean())


@SAMPLING
def test_weights_reproduce_predict(task, sampling):
    Estimator, (X, y) = task
    est = _fit(Estimator, (X, y), ensemble_selection=20, **sampling)
    w = est.ensemble_weights_
    assert w.shape == (6,) and np.all(w >= 0)
    assert w.sum() == pytest.approx(1.0)
    assert (w == 0).any(), "the test data should give the selection members to drop"
    assert_allclose(_predicted(est, X), _weighted(est, X), rtol=1e-10, atol=1e-12)
    if isinstance(est, NeuralBaggingClassifier):
        assert_allclose(np.exp(est.predict_log_proba(X)), est.predict_proba(X), rtol=1e-10)
        assert_array_equal(est.predict(X), est.classes_[est.predict_proba(X).argmax(1)])
    else:
        members = est.predict_members(X)  # (E, n)
        mean, std = est.predict(X, return_std=True)
        expected = np.sqrt(np.tensordot(w, (members - mean) ** 2, 1))
        assert_allclose(std, expected, rtol=1e-8, atol=1e-12)


@SAMPLING
def test_selection_never_worse_than_uniform(task, sampling):
    Estimator, (X, y) = task
    est = _fit(Estimator, (X, y), ensemble_selection=20, **sampling)
    assert est.selection_score_ <= est.uniform_score_
    uniform = np.full(6, 1 / 6)
    assert _validation_loss(est, X, y, uniform) == pytest.approx(est.uniform_score_, rel=1e-8)
    assert _validation_loss(est, X, y, est.ensemble_weights_) == pytest.approx(
        est.selection_score_, rel=1e-8)


def test_uniform_score_is_the_out_of_bag_loss(task):
    Estimator, (X, y) = task
    est = _fit(Estimator, (X, y), ensemble_selection=5, bootstrap=True, oob_score=True,
               early_stopping=False)
    if isinstance(est, NeuralBaggingClassifier):
        oob = est.oob_decision_function_
        has = ~np.isnan(oob[:, 0])
        expected = log_loss(y[has], oob[has], labels=est.classes_)
    else:
        has = ~np.isnan(est.oob_prediction_)
        expected = np.mean(((est.oob_prediction_[has] - y[has]) / est._fitted.targets.scale) ** 2)
    assert est.uniform_score_ == pytest.approx(expected, rel=1e-8)


def test_zero_weight_members_are_not_computed(task, monkeypatch):
    Estimator, (X, y) = task
    est = _fit(Estimator, (X, y), ensemble_selection=20, bootstrap=True)
    kept = int((est.ensemble_weights_ > 0).sum())
    assert kept < 6
    ran = []
    forward = _predict.forward_members

    def counting(groups, X, activation, inverse=None, **kwargs):
        out = forward(groups, X, activation, inverse, **kwargs)
        ran.append(out.shape[0])
        return out

    monkeypatch.setattr(_predict, "forward_members", counting)
    _predicted(est, X)
    assert set(ran) == {kept}
    ran.clear()
    members = (est.predict_proba_members(X) if isinstance(est, NeuralBaggingClassifier)
               else est.predict_members(X))
    assert members.shape[0] == 6 and set(ran) == {6}  # every member, weighted or not


def test_to_torch_exports_only_selected_members(task):
    Estimator, (X, y) = task
    est = _fit(Estimator, (X, y), ensemble_selection=20, bootstrap=True)
    module = est.to_torch()
    flats = [v for k, v in module.state_dict().items() if k.endswith("_flat")]
    assert sum(f.shape[0] for f in flats) == int((est.ensemble_weights_ > 0).sum()) < 6
    with torch.no_grad():
        out = module(torch.as_tensor(X, dtype=torch.float32)).numpy()
    assert_allclose(out, _predicted(est, X), rtol=1e-4, atol=1e-5)
    x = torch.as_tensor(X[:5], dtype=torch.float32)
    program = torch.export.export(module, (x,))
    torch.testing.assert_close(program.module()(x), module(x))


def test_given_weights_cut_groups_in_member_order(task):
    """Any weights: members of several groups, renumbered after the cut, predict right."""
    Estimator, (X, y) = task
    est = _fit(Estimator, (X, y), hidden_layer_sizes=[(8,), (6, 4)])  # groups {0,2,4}, {1,3,5}
    est.ensemble_weights_ = np.array([0.0, 0.2, 0.0, 0.5, 0.3, 0.0])
    assert_allclose(_predicted(est, X), _weighted(est, X), rtol=1e-10, atol=1e-12)
    with torch.no_grad():
        out = est.to_torch()(torch.as_tensor(X, dtype=torch.float32)).numpy()
    assert_allclose(out, _predicted(est, X), rtol=1e-4, atol=1e-5)


def test_none_keeps_todays_predictions(task):
    Estimator, (X, y) = task
    est = _fit(Estimator, (X, y), bootstrap=True)
    assert_array_equal(est.ensemble_weights_, np.full(6, 1 / 6))
    assert not hasattr(est, "selection_score_") and not hasattr(est, "uniform_score_")
    # the reductions predict ran before ensemble_selection existed
    if isinstance(est, NeuralBaggingClassifier):
        proba = est._member_outputs(X, lambda p: p.mean(0))
        assert_array_equal(est.predict_proba(X), proba / proba.sum(axis=1, keepdims=True))
    else:
        res = est._member_outputs(
            X, lambda out: torch.stack([out.mean(0), out.std(0, correction=0)], dim=-1))
        mean, std = est.predict(X, return_std=True)
        assert_array_equal(mean, res[:, 0, 0] * est._fitted.targets.scale[0] + est._fitted.targets.mean[0])
        assert_array_equal(std, res[:, 0, 1] * est._fitted.targets.scale[0])


def test_persistence_keeps_the_weights(task, tmp_path):
    Estimator, (X, y) = task
    est = _fit(Estimator, (X, y), ensemble_selection=20, bootstrap=True)
    loaded = [pickle.loads(pickle.dumps(est))]
    sio = pytest.importorskip("skops.io")
    path = tmp_path / "model.skops"
    sio.dump(est, path)
    loaded.append(sio.load(path, trusted=sio.get_untrusted_types(file=path)))
    for again in loaded:
        assert_array_equal(again.ensemble_weights_, est.ensemble_weights_)
        assert again.selection_score_ == est.selection_score_
        assert again.uniform_score_ == est.uniform_score_
        assert_array_equal(_predicted(again, X), _predicted(est, X))


def test_warm_start_selects_among_all_members(task):
    Estimator, (X, y) = task
    est = _fit(Estimator, (X, y), n_estimators=4, ensemble_selection=20, bootstrap=True,
               warm_start=True)
    old = _weighted(est, X), est.ensemble_weights_.copy()
    est.set_params(n_estimators=7).fit(X, y)
    w = est.ensemble_weights_
    assert w.shape == (7,) and w.sum() == pytest.approx(1.0)
    assert est.selection_score_ <= est.uniform_score_
    assert _validation_loss(est, X, y, w) == pytest.approx(est.selection_score_, rel=1e-8)
    assert _validation_loss(est, X, y, np.full(7, 1 / 7)) == pytest.approx(
        est.uniform_score_, rel=1e-8)
    assert_allclose(_predicted(est, X), _weighted(est, X), rtol=1e-10, atol=1e-12)
    # the old members are unchanged: their old weights still give the old prediction
    est.ensemble_weights_ = np.concatenate([old[1], np.zeros(3)])
    assert_allclose(_predicted(est, X), old[0], rtol=1e-10, atol=1e-12)
    est.set_params(ensemble_selection=None).fit(X, y)  # resumed, and back to uniform
    assert_array_equal(est.ensemble_weights_, np.full(7, 1 / 7))
    assert not hasattr(est, "selection_score_")


def test_grid_search_and_clone(task):
    Estimator, (X, y) = task
    est = Estimator(**{**MIXED, "n_estimators": 4, "max_iter": 5}, bootstrap=True)
    grid = GridSearchCV(est, {"ensemble_selection": [None, 3]}, cv=2).fit(X, y)
    assert grid.best_params_["ensemble_selection"] in (None, 3)
    assert grid.best_estimator_.ensemble_weights_.shape == (4,)
    copy = clone(est.set_params(ensemble_selection=3))
    assert copy.get_params()["ensemble_selection"] == 3
    assert not hasattr(copy, "ensemble_weights_")


@pytest.mark.parametrize("value", [0, -2, 1.5, "auto"])
def test_bad_values_name_the_parameter(regression_data, value):
    with pytest.raises(ValueError, match="'ensemble_selection' parameter"):
        NeuralBaggingRegressor(ensemble_selection=value, bootstrap=True).fit(*regression_data)


def test_errors_name_the_fix(regression_data):
    X, y = regression_data
    with pytest.raises(ValueError, match="ensemble_selection=True is ambiguous"):
        NeuralBaggingRegressor(ensemble_selection=True, bootstrap=True).fit(X, y)
    with pytest.raises(ValueError, match="ensemble_selection=5 .* no member has any.*"
                                         "bootstrap=True"):
        NeuralBaggingRegressor(ensemble_selection=5, early_stopping=False).fit(X, y)
    reg = NeuralBaggingRegressor(n_estimators=2, max_iter=2, ensemble_selection=5)
    with pytest.raises(ValueError, match="partial_fit has none"):
        reg.partial_fit(X, y)
    reg.set_params(ensemble_selection=None).partial_fit(X, y)
    assert_array_equal(reg.ensemble_weights_, [0.5, 0.5])


def test_greedy_on_shared_rows_is_caruana():
    """Where every member validates on every row, the loss is the weighted ensemble's."""
    rng = np.random.RandomState(0)
    y = rng.normal(size=50)
    good = y + 0.1 * rng.normal(size=(2, 50))
    bad = y + 2.0 * rng.normal(size=(3, 50))
    values = np.concatenate([good, bad])  # (E=5, N=50)
    member, row = np.divmod(np.arange(250), 50)
    entries = _selection.Entries(member=member, row=row, values=values.reshape(-1, 1),
                                 row_weight=np.ones(50), n_members=5)

    def loss(pred, rows):
        return (pred[:, 0] - y[rows]) ** 2

    result = _selection.greedy(entries, 10, loss, n_bags=0)  # plain forward selection
    assert result.weights[2:].sum() == 0 and result.weights.sum() == pytest.approx(1)
    assert result.score == pytest.approx(np.mean((result.weights @ values - y) ** 2))
    assert result.uniform_score == pytest.approx(np.mean((values.mean(0) - y) ** 2))
    assert result.score < result.uniform_score
    # identical members (exact arithmetic): nothing beats uniform, which is kept
    y = rng.randint(-5, 5, size=50).astype(float)
    same = _selection.Entries(member=member, row=row, values=np.tile(y + 0.5, 5)[:, None],
                              row_weight=np.ones(50), n_members=5)
    for n_bags in (0, 20):
        kept = _selection.greedy(same, 10, loss, n_bags=n_bags)
        assert_array_equal(kept.weights, np.full(5, 0.2))
        assert kept.score == kept.uniform_score


def _shared_rows(values, y):
    """Entries of members ``values (E, N)`` that all validate on every row, squared loss."""
    E, N = values.shape
    member, row = np.divmod(np.arange(E * N), N)
    entries = _selection.Entries(member=member, row=row, values=values.reshape(-1, 1),
                                 row_weight=np.ones(N), n_members=E)
    return entries, lambda pred, rows: (pred[:, 0] - y[rows]) ** 2


def test_bagged_selection_drops_bad_members_and_is_reproducible():
    rng = np.random.RandomState(1)
    y = rng.normal(size=80)
    values = np.concatenate([y + 0.2 * rng.normal(size=(3, 80)),
                             y + 3.0 * rng.normal(size=(3, 80))])
    entries, loss = _shared_rows(values, y)
    result = _selection.greedy(entries, 20, loss, seed=5)
    assert result.weights[3:].sum() == 0 and result.weights[:3].min() > 0
    assert result.weights.sum() == pytest.approx(1)
    assert result.score == pytest.approx(np.mean((result.weights @ values - y) ** 2))
    assert result.score < result.uniform_score
    assert_array_equal(_selection.greedy(entries, 20, loss, seed=5).weights, result.weights)


def test_bagged_selection_keeps_uniform_where_plain_selection_overfits():
    """Equally good members with independent errors: the uniform average is what new rows
    reward; plain forward selection still finds a subset that wins on these rows."""
    rng = np.random.RandomState(0)
    y = rng.normal(size=40)
    values = y + rng.normal(size=(8, 40))
    entries, loss = _shared_rows(values, y)
    plain = _selection.greedy(entries, 30, loss, n_bags=0)
    assert plain.score < plain.uniform_score and np.ptp(plain.weights) > 0.1
    bagged = _selection.greedy(entries, 30, loss, seed=0)
    assert_array_equal(bagged.weights, np.full(8, 1 / 8))
    assert bagged.score == bagged.uniform_score == plain.uniform_score
    # on new rows with the same members' error structure, the plain weights lose
    y_new = rng.normal(size=20000)
    new = y_new + rng.normal(size=(8, 20000))
    assert np.mean((plain.weights @ new - y_new) ** 2) > np.mean((new.mean(0) - y_new) ** 2)


def test_subset_renumbers_rows_and_keeps_their_loss():
    rng = np.random.RandomState(2)
    y = rng.normal(size=30)
    member = np.repeat(np.arange(4), 12)
    row = np.concatenate([np.sort(rng.choice(30, 12, replace=False)) for _ in range(4)])
    used = np.unique(row)
    y, row = y[used], np.searchsorted(used, row)  # every row validated by some member
    entries = _selection.Entries(member, row, (y[row] + rng.normal(size=row.size))[:, None],
                                 rng.uniform(0.5, 2, size=used.size), 4)

    def loss(pred, rows):
        return (pred[:, 0] - y[rows]) ** 2

    factor = rng.poisson(1.0, used.size).astype(float)
    sub, sub_loss = _selection._subset(entries, factor, loss)
    zeroed = _selection.Entries(entries.member, entries.row, entries.values,
                                entries.row_weight * factor, 4)
    w = np.array([0.1, 0.2, 0.3, 0.4])
    assert sub.row_weight.size == (factor > 0).sum()
    assert _selection.ensemble_loss(sub, w, sub_loss) == pytest.approx(
        _selection.ensemble_loss(zeroed, w, loss), rel=1e-12)
