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
    out = _training._halving(active, best, 10)
    assert out.tolist() == [True, False, True, False, False]  # 4 active: the worse 2
    assert not _training._halving(np.array([True, False]), best[:2], 10).any()
    # at most n_spare stop: the worst first
    assert _training._halving(active, best, 1).tolist() == [False, False, True, False, False]
    assert not _training._halving(active, best, 0).any()
    assert not _training._halving(active, best, -2).any()


@pytest.mark.parametrize("keep, floor", [(1e-9, 1), (0.25, 2), (0.5, 4), (1.0, 8)])
def test_prune_keep_is_the_floor_of_members_left_unpruned(data, keep, floor):
    X, y = data
    est = NeuralBaggingRegressor(**KW, prune="halving", prune_keep=keep).fit(X, y)
    pruned = est.stop_reason_ == "pruned"
    # 8 members, checkpoints at 5, 10, 20, 40: halving stops 4, 2, 1 (the slow learners
    # are clearly worse) until exactly ``floor`` members are left unpruned; a member that
    # stopped on its own (no improvement) counts towards the floor
    assert (~pruned).sum() == floor
    assert (pruned & (est.n_iter_per_member_ == 5)).sum() == min(4, 8 - floor)
    assert set(est.n_iter_per_member_[pruned]) <= {5, 10, 20, 40}
    np.testing.assert_allclose(est.ensemble_weights_[~pruned], 1 / (~pruned).sum())


def test_members_that_stopped_on_their_own_count_towards_the_floor(data, monkeypatch):
    X, y = data
    calls = []
    real = _training._halving

    def spy(active, best, n_spare):
        calls.append((active.copy(), n_spare))
        return real(active, best, n_spare)

    monkeypatch.setattr(_training, "_halving", spy)
    est = NeuralBaggingRegressor(
        n_estimators=12, hidden_layer_sizes=(16,), max_iter=80, early_stopping=True,
        n_iter_no_change=5, tol=1e-3, random_state=0, prune="halving", prune_keep=0.25,
        member_params={"learning_rate_init": [1e-5, 3e-3, 1e-1]}).fit(X, y)
    reason, n_iter = est.stop_reason_, est.n_iter_per_member_
    own_before_a_checkpoint = False
    for k, (active, n_spare) in enumerate(calls):
        epoch = 5 * 2**k
        pruned_before = int(np.sum((reason == "pruned") & (n_iter < epoch)))
        assert n_spare == 12 - pruned_before - 3  # floor: ceil(0.25 * 12)
        own_before_a_checkpoint |= bool(active.sum() < 12 - pruned_before)
    assert own_before_a_checkpoint  # the case this test is about did happen
    assert (reason != "pruned").sum() >= 3


@pytest.mark.parametrize("keep, n, floor", [(0.55, 100, 55), (0.28, 25, 7), (0.07, 100, 7),
                                            (0.5, 7, 4), (1e-9, 70, 1), (1.0, 9, 9)])
def test_prune_floor_rounds_up_without_floating_point_error(keep, n, floor):
    assert _training.prune_floor(keep, n) == floor


def test_prune_keep_default_keeps_half(data):
    X, y = data
    est = NeuralBaggingRegressor(**dict(KW, n_estimators=16, max_iter=200),
                                 prune="halving").fit(X, y)
    assert est.prune_keep == 0.5
    pruned = est.stop_reason_ == "pruned"
    assert pruned.sum() == 8 and set(est.n_iter_per_member_[pruned]) == {5}
    with pytest.raises(ValueError, match="prune_keep"):
        NeuralBaggingRegressor(prune="halving", prune_keep=0.0).fit(X, y)
    with pytest.raises(ValueError, match="prune_keep"):
        NeuralBaggingRegressor(prune="halving", prune_keep=1.5).fit(X, y)


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


def test_pruned_members_leave_the_ensemble(data):
    X, y = data
    est = NeuralBaggingRegressor(**KW, prune="halving").fit(X, y)
    pruned = est.stop_reason_ == "pruned"
    w = est.ensemble_weights_
    assert pruned.any() and np.all(w[pruned] == 0)
    np.testing.assert_allclose(w[~pruned], 1 / (~pruned).sum())
    members = est.predict_members(X)  # all members, the pruned ones too
    assert members.shape[0] == KW["n_estimators"]
    np.testing.assert_allclose(est.predict(X), members[~pruned].mean(0), rtol=1e-5, atol=1e-6)
    torch = pytest.importorskip("torch")
    module = est.to_torch()
    with torch.no_grad():
        out = module(torch.as_tensor(X, dtype=torch.float32)).numpy().reshape(-1)
    np.testing.assert_allclose(out, est.predict(X), rtol=1e-4, atol=1e-5)
    # the classifier too, and its probabilities
    yc = (y > 0).astype(int)
    clf = NeuralBaggingClassifier(**KW, prune="halving").fit(X, yc)
    cut = clf.stop_reason_ == "pruned"
    assert cut.any() and np.all(clf.ensemble_weights_[cut] == 0)
    np.testing.assert_allclose(clf.predict_proba(X),
                               clf.predict_proba_members(X)[~cut].mean(0), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.filterwarnings("ignore:Some inputs do not have OOB")  # 4 of 8 are left
def test_selection_and_oob_leave_pruned_members_out(data):
    X, y = data
    sel = NeuralBaggingRegressor(**KW, prune="halving", ensemble_selection=20).fit(X, y)
    pruned = sel.stop_reason_ == "pruned"
    assert pruned.any() and np.all(sel.ensemble_weights_[pruned] == 0)
    assert sel.selection_score_ <= sel.uniform_score_  # uniform over the members kept
    # out-of-bag: the average of the unpruned members on the rows each did not draw
    kw = dict(KW, bootstrap=True, oob_score=True)
    est = NeuralBaggingRegressor(**kw, prune="halving").fit(X, y)
    pruned = est.stop_reason_ == "pruned"
    assert pruned.any()
    members = est.predict_members(X)  # (E, N)
    rows, held, _ = est._fitted.member_draws()
    oob = np.ones((len(members), len(X)), dtype=bool)
    oob[np.arange(len(members))[:, None], rows] = False
    for e, h in enumerate(held):
        oob[e, h] = False
    oob[pruned] = False
    has = oob.any(0)
    expected = (members * oob).sum(0)[has] / oob.sum(0)[has]
    np.testing.assert_allclose(est.oob_prediction_[has], expected, rtol=1e-4, atol=1e-5)
    assert np.all(np.isnan(est.oob_prediction_[~has]))


def test_pruned_members_stay_out_after_warm_start_and_partial_fit(data):
    X, y = data
    est = NeuralBaggingRegressor(**KW, prune="halving", warm_start=True).fit(X, y)
    pruned = est.stop_reason_ == "pruned"
    est.set_params(n_estimators=10, prune=None).fit(X, y)  # two more, no pruning
    assert est.ensemble_weights_.shape == (10,)
    assert np.all(est.ensemble_weights_[:8][pruned] == 0)
    assert np.all(est.ensemble_weights_[8:] > 0)
    est.partial_fit(X, y)
    assert np.all(est.ensemble_weights_[:8][pruned] == 0)
    np.testing.assert_allclose(est.ensemble_weights_.sum(), 1.0)


def test_uniform_score_is_the_average_of_the_members_not_pruned(data):
    X, y = data
    est = NeuralBaggingRegressor(**KW, prune="halving", ensemble_selection=20).fit(X, y)
    keep = est.stop_reason_ != "pruned"
    assert not keep.all()
    mask = est._fitted.validation_mask() & keep[:, None]  # (E, N) rows each kept member validates
    scored = mask.any(0)
    z = (est.predict_members(X) - est._fitted.targets.mean[0]) / est._fitted.targets.scale[0]  # standardised (E, N)
    mean = (z * mask).sum(0)[scored] / mask.sum(0)[scored]
    target = (y[scored] - est._fitted.targets.mean[0]) / est._fitted.targets.scale[0]
    np.testing.assert_allclose(est.uniform_score_, np.mean((mean - target) ** 2), rtol=1e-4)


def test_a_pruned_warm_start_after_partial_fit_keeps_its_reasons(data):
    # partial_fit records no stop reasons; members added by a pruned fit still leave
    X, y = data
    est = NeuralBaggingRegressor(**dict(KW, n_estimators=2), warm_start=True)
    est.partial_fit(X, y)
    est.set_params(n_estimators=10, prune="halving").fit(X, y)
    reasons = est.stop_reason_
    assert reasons.shape == (10,) and reasons[0] is None and reasons[1] is None
    pruned = reasons == "pruned"
    assert pruned[2:].any() and np.all(est.ensemble_weights_[pruned] == 0)
    assert np.all(est.ensemble_weights_[:2] > 0)
