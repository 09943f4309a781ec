"""Bagging done properly: rows, features, out-of-bag, weights, stopping, warm start."""

import numpy as np
import pytest
import sklearn
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score

from skensemble import NeuralBaggingClassifier, NeuralBaggingRegressor

SMALL = dict(n_estimators=6, hidden_layer_sizes=(16,), max_iter=40, learning_rate_init=0.01,
             random_state=0)


def _members(est, X):
    if hasattr(est, "predict_proba_members"):
        return est.predict_proba_members(X)
    return est.predict_members(X)


# Six members: a few rows are drawn by all of them, so the missing-OOB warning is expected.
OOB_FEW = pytest.mark.filterwarnings("ignore:Some inputs do not have OOB scores")


@OOB_FEW
def test_oob_equals_mean_of_members_that_did_not_draw(task):
    Est, (X, y) = task
    est = Est(**SMALL, bootstrap=True, oob_score=True).fit(X, y)
    members = _members(est, X)  # (E, N) or (E, N, K)
    oob = est.oob_prediction_ if hasattr(est, "oob_prediction_") else est.oob_decision_function_
    for i in range(X.shape[0]):
        outside = [e for e, rows in enumerate(est.estimators_samples_) if i not in rows]
        if outside:
            np.testing.assert_allclose(oob[i], members[outside, i].mean(0), rtol=1e-6)
        else:
            assert np.all(np.isnan(oob[i]))
    assert 0.5 < est.oob_score_ <= 1.0


def test_oob_score_tracks_held_out_score(regression_data):
    X, y = regression_data
    reg = NeuralBaggingRegressor(n_estimators=20, hidden_layer_sizes=(16,), max_iter=60,
                                 learning_rate_init=0.01, bootstrap=True, oob_score=True,
                                 random_state=0).fit(X, y)
    train_score = reg.score(X, y)
    assert reg.oob_score_ < train_score  # honest: below the optimistic training score
    assert reg.oob_score_ > 0.8


def test_oob_warns_when_rows_lack_members(regression_data):
    X, y = regression_data
    with pytest.warns(UserWarning, match="do not have OOB scores"):
        NeuralBaggingRegressor(**{**SMALL, "n_estimators": 1}, bootstrap=True,
                               oob_score=True).fit(X, y)
    with pytest.raises(ValueError, match="bootstrap=True"):
        NeuralBaggingRegressor(**SMALL, oob_score=True).fit(X, y)


def test_estimators_samples_and_features(task):
    Est, (X, y) = task
    est = Est(**SMALL, bootstrap=True, max_samples=0.5, max_features=2,
              numeric_encoding="none").fit(X, y)  # the first layer reads 2 columns
    samples, features = est.estimators_samples_, est.estimators_features_
    assert len(samples) == len(features) == 6
    assert all(s.shape == (X.shape[0] // 2,) for s in samples)
    assert all(f.shape == (2,) and len(set(f)) == 2 for f in features)
    assert len({tuple(f) for f in features}) > 1  # members see different subsets
    assert est.coefs_[0].shape == (6, 2, 16)  # first layer reads only the member's features
    # recomputed from seeds: a refit with the same random_state draws the same
    again = Est(**SMALL, bootstrap=True, max_samples=0.5, max_features=2).fit(X, y)
    for a, b in zip(samples, again.estimators_samples_):
        np.testing.assert_array_equal(a, b)


def test_member_blind_to_features_outside_its_subset(task):
    Est, (X, y) = task
    est = Est(**SMALL, max_features=2, bootstrap_features=False).fit(X, y)
    before = _members(est, X)
    for e, feats in enumerate(est.estimators_features_):
        X2 = X.copy()
        others = np.setdiff1d(np.arange(X.shape[1]), feats)
        X2[:, others] = 1e3 * np.random.RandomState(e).normal(size=(X.shape[0], len(others)))
        np.testing.assert_array_equal(_members(est, X2)[e], before[e])
        changed = X.copy()
        changed[:, feats[0]] += 5.0
        assert not np.allclose(_members(est, changed)[e], before[e])


def test_bootstrap_features_draws_with_replacement(regression_data):
    X, y = regression_data
    reg = NeuralBaggingRegressor(**{**SMALL, "n_estimators": 12}, max_features=1.0,
                                 bootstrap_features=True).fit(X, y)
    assert any(len(set(f)) < X.shape[1] for f in reg.estimators_features_)
    assert np.all(np.isfinite(reg.predict(X)))


def test_stopped_member_receives_no_updates(regression_data):
    X, y = regression_data
    # a constant rate: an annealing schedule's rates depend on max_iter, which differs here
    params = dict(n_estimators=4, hidden_layer_sizes=(8,), learning_rate_init=0.01, tol=1e-3,
                  n_iter_no_change=3, random_state=0, engine="batched", batch_size=16,
                  learning_rate="constant")
    long = NeuralBaggingRegressor(**params, max_iter=400).fit(X, y)
    n = long.n_iter_per_member_
    first = int(np.argmin(n))
    assert n[first] < n.max()  # members stopped at different epochs
    # A fit cut at the first member's epoch count trained that member identically;
    # the long fit then left it untouched while the others went on.
    short = NeuralBaggingRegressor(**params, max_iter=int(n[first])).fit(X, y)
    np.testing.assert_allclose(long.coefs_[0][first], short.coefs_[0][first], rtol=1e-5,
                               atol=1e-6)
    assert not np.allclose(long.coefs_[0][np.argmax(n)], short.coefs_[0][np.argmax(n)])


def test_early_stopped_members_keep_best_validation_weights(regression_data):
    X, y = regression_data
    reg = NeuralBaggingRegressor(n_estimators=4, hidden_layer_sizes=(32,), max_iter=200,
                                 learning_rate_init=0.01, early_stopping=True, bootstrap=True,
                                 n_iter_no_change=5, random_state=0).fit(X, y)
    members = reg.predict_members(X)  # (E, N)
    for e, rows in enumerate(reg.estimators_samples_):
        oob = np.setdiff1d(np.arange(len(y)), rows)
        loss = 0.5 * np.mean(((members[e, oob] - y[oob]) / reg._fitted.targets.scale[0]) ** 2)
        np.testing.assert_allclose(loss, reg.best_validation_loss_[e], rtol=1e-4)


def test_warm_start_trains_only_new_members(task):
    Est, (X, y) = task
    est = Est(**{**SMALL, "n_estimators": 3}, warm_start=True, bootstrap=True)
    est.fit(X, y)
    old = _members(est, X)
    est.set_params(n_estimators=5)
    est.fit(X, y)
    new = _members(est, X)
    assert new.shape[0] == 5
    np.testing.assert_array_equal(new[:3], old)
    assert not np.allclose(new[3], new[4])
    assert est.loss_curve_.shape[1] == 5 and est.n_iter_per_member_.shape == (5,)
    assert len(est.estimators_samples_) == 5
    # the same n_estimators again: every member continues training
    n_before = est.n_iter_per_member_.copy()
    est.fit(X, y)
    assert np.all(est.n_iter_per_member_ > n_before)
    assert not np.allclose(_members(est, X)[:3], old)
    est.set_params(n_estimators=2)
    with pytest.raises(ValueError, match="n_estimators"):
        est.fit(X, y)


def test_partial_fit_runs_one_epoch_per_call(task):
    Est, (X, y) = task
    kwargs = {"classes": np.unique(y)} if Est is NeuralBaggingClassifier else {}
    est = Est(**SMALL)
    est.partial_fit(X, y, **kwargs)
    assert est.n_iter_ == 1 and est.loss_curve_.shape == (1, 6)
    w1 = est.coefs_[0].copy()
    est.partial_fit(X, y)
    assert est.n_iter_ == 2 and est.t_ == 2 * X.shape[0]
    assert not np.allclose(est.coefs_[0], w1)
    for _ in range(30):
        est.partial_fit(X, y)
    assert np.nanmean(est.loss_curve_[-1]) < np.nanmean(est.loss_curve_[0])
    # continuing a fitted ensemble
    fitted = Est(**SMALL).fit(X, y)
    n = fitted.n_iter_
    fitted.partial_fit(X, y)
    assert fitted.n_iter_ == n + 1


def test_partial_fit_classifier_needs_known_labels(classification_data):
    X, y = classification_data
    clf = NeuralBaggingClassifier(**SMALL).partial_fit(X[:20], y[:20], classes=np.unique(y))
    assert list(clf.classes_) == sorted(set(y))
    with pytest.raises(ValueError, match="not seen"):
        clf.partial_fit(X[:5], np.array(["zebra"] * 5, dtype=object))


def test_zero_weight_rows_never_drawn_and_ignored(regression_data):
    X, y = regression_data
    w = np.ones(len(y))
    w[::4] = 0
    y_bad = y.copy()
    y_bad[::4] = 1e6
    reg = NeuralBaggingRegressor(**SMALL, bootstrap=True).fit(X, y_bad, sample_weight=w)
    zero = set(np.flatnonzero(w == 0))
    assert all(not zero & set(rows) for rows in reg.estimators_samples_)
    keep = w > 0
    clean = NeuralBaggingRegressor(**SMALL, bootstrap=True).fit(X[keep], y[keep])
    assert abs(reg.score(X[keep], y[keep]) - clean.score(X[keep], y[keep])) < 0.05


@pytest.fixture
def routing():
    sklearn.set_config(enable_metadata_routing=True)
    yield
    sklearn.set_config(enable_metadata_routing=False)


def test_sample_weight_routed_through_search_and_cv(regression_data, routing):
    X, y = regression_data
    w = np.ones(len(y))
    w[::4] = 0
    y_bad = y.copy()
    y_bad[::4] = 1e4  # only harmless if the weights arrive
    reg = NeuralBaggingRegressor(**SMALL).set_fit_request(sample_weight=True)
    reg.set_score_request(sample_weight=True)
    cv = KFold(3, shuffle=True, random_state=0)
    routed = cross_val_score(reg, X, y_bad, cv=cv, params={"sample_weight": w})
    assert routed.min() > 0.9
    grid = GridSearchCV(reg, {"alpha": [1e-4, 1e-2]}, cv=cv).fit(X, y_bad, sample_weight=w)
    assert grid.best_score_ > 0.9
    unweighted = NeuralBaggingRegressor(**SMALL).fit(X, y_bad)
    keep = w > 0
    assert unweighted.score(X[keep], y[keep]) < 0.5 < grid.score(X[keep], y[keep])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_verbose_progress(regression_data, capsys):
    X, y = regression_data
    NeuralBaggingRegressor(**{**SMALL, "max_iter": 3}, verbose=0).fit(X, y)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    NeuralBaggingRegressor(**{**SMALL, "max_iter": 3}, verbose=1).fit(X, y)
    assert "epoch" in capsys.readouterr().err
    NeuralBaggingRegressor(**{**SMALL, "max_iter": 3}, verbose=2).fit(X, y)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and "members training 6/6" in lines[0]


def test_warm_start_resume_uses_new_learning_rate(regression_data):
    X, y = regression_data
    base = dict(n_estimators=2, hidden_layer_sizes=(8,), solver="sgd", max_iter=1,
                warm_start=True, random_state=0)
    a = NeuralBaggingRegressor(**base, learning_rate_init=0.05).fit(X, y)
    w = a.coefs_[0].copy()
    a.set_params(learning_rate_init=1e-9).fit(X, y)
    np.testing.assert_allclose(a.coefs_[0], w, atol=1e-6)  # a tiny rate barely moves them


@OOB_FEW
def test_oob_with_early_stopping_excludes_the_rows_each_member_stopped_on(task):
    # With oob_score=True, early stopping uses a per-member hold-out drawn before the
    # bootstrap sample; oob_score_ averages, per row, only the members that neither
    # drew the row nor stopped on it.
    Est, (X, y) = task
    est = Est(**SMALL, bootstrap=True, oob_score=True, early_stopping=True,
              validation_fraction=0.2).fit(X, y)
    rows, held, _ = est._fitted.member_draws()
    assert held is not None and len(held) == len(rows)
    members = _members(est, X)
    oob = est.oob_prediction_ if hasattr(est, "oob_prediction_") else est.oob_decision_function_
    for e in range(len(rows)):
        assert not set(held[e]) & set(rows[e])  # never trains on its stopping rows
        assert len(held[e]) == int(np.ceil(0.2 * X.shape[0]))
    for i in range(X.shape[0]):
        qualify = [e for e in range(len(rows)) if i not in rows[e] and i not in held[e]]
        if qualify:
            np.testing.assert_allclose(oob[i], members[qualify, i].mean(0), rtol=1e-6)
        else:
            assert np.all(np.isnan(oob[i]))
    assert est.validation_loss_curve_.shape[1] == len(rows)


@OOB_FEW
def test_oob_score_with_early_stopping_is_not_above_the_test_score():
    # Noisy data, members that overfit: stopping (and keeping the best weights) on the
    # rows that oob_score_ scores would make it optimistic. Over several splits the
    # out-of-bag score must not sit above the held-out test score.
    from sklearn.datasets import make_regression
    from sklearn.model_selection import train_test_split

    gaps = []
    for seed in range(5):
        X, y = make_regression(1000, 20, n_informative=2, noise=100, random_state=seed)
        Xa, Xb, ya, yb = train_test_split(X, y, train_size=150, random_state=seed)
        reg = NeuralBaggingRegressor(
            n_estimators=6, hidden_layer_sizes=(64,), bootstrap=True, early_stopping=True,
            oob_score=True, n_iter_no_change=30, learning_rate_init=0.01, max_iter=120,
            batch_size=32, random_state=seed).fit(Xa, ya)
        gaps.append(reg.oob_score_ - reg.score(Xb, yb))
    assert np.mean(gaps) < 0.02, gaps


@pytest.mark.parametrize("bootstrap_features", [False, True])
def test_partial_fit_honours_feature_subsets(task, bootstrap_features):
    Est, (X, y) = task
    est = Est(**{**SMALL, "max_iter": 1}, max_features=2, bootstrap_features=bootstrap_features,
              numeric_encoding="none")
    kwargs = {"classes": np.unique(y)} if hasattr(est, "predict_proba") else {}
    est.partial_fit(X, y, **kwargs)
    feats = est.estimators_features_
    assert all(f.shape == (2,) for f in feats)
    assert len({tuple(f) for f in feats}) > 1
    assert est.coefs_[0].shape[1] == 2  # the first layer reads only the member's features
    est.partial_fit(X, y)
    for a, b in zip(feats, est.estimators_features_):
        np.testing.assert_array_equal(a, b)  # kept across calls
    before = _members(est, X)
    for e, f in enumerate(feats):
        X2 = X.copy()
        X2[:, np.setdiff1d(np.arange(X.shape[1]), f)] = 1e3
        np.testing.assert_allclose(_members(est, X2)[e], before[e], rtol=1e-6)


def test_partial_fit_draws_per_call_rows_from_seed_sequences(regression_data):
    from skensemble import _sampling

    X, y = regression_data
    a = NeuralBaggingRegressor(**{**SMALL, "random_state": 3}, bootstrap=True)
    b = NeuralBaggingRegressor(**{**SMALL, "random_state": 3}, bootstrap=True)
    for _ in range(2):
        a.partial_fit(X, y)
        b.partial_fit(X, y)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    s1, s2 = _sampling.call_seeds(a._fitted.seeds, 1), _sampling.call_seeds(a._fitted.seeds, 2)
    assert len(set(s1) | set(s2)) == 2 * len(s1)  # every member, every call: its own stream
    expected = np.random.SeedSequence([int(a._fitted.seeds[0]), 1]).generate_state(1)[0]
    assert s1[0] == expected % _sampling.MAX_SEED
