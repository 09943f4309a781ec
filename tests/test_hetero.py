"""Ensembles of different architectures, and MotherNets."""

import numpy as np
import pytest
import torch
from torch import nn

from skensemble import NeuralBaggingClassifier, NeuralBaggingRegressor, _hetero, _pipeline, _scaling

ARCHS = [(12,), (8, 5), (16, 6), (4, 9, 3)]
ACT = {"relu": nn.ReLU, "tanh": nn.Tanh, "logistic": nn.Sigmoid, "identity": nn.Identity}


def test_member_architectures_cycle_and_sklearn_meaning():
    assert _hetero.member_architectures([(3,), (4, 5)], 5) == [(3,), (4, 5), (3,), (4, 5), (3,)]
    assert _hetero.member_architectures([10, 20], 2) == [(10, 20), (10, 20)]  # one architecture
    assert _hetero.member_architectures(7, 2) == [(7,), (7,)]
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        _hetero.member_architectures([(3,), (0,)], 2)
    groups = _hetero.group_by_depth([(3,), (4, 5), (6,), (2, 9)])
    assert [(list(m), w) for m, w in groups] == [([0, 2], (6,)), ([1, 3], (4, 9))]


@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
def test_members_equal_separate_torch_models(regression_data, activation):
    X, y = regression_data
    reg = NeuralBaggingRegressor(n_estimators=6, hidden_layer_sizes=ARCHS, activation=activation,
                                 max_iter=25, learning_rate_init=0.01, random_state=0).fit(X, y)
    assert reg.hidden_layer_sizes_ == [ARCHS[e % 4] for e in range(6)]
    members = reg.predict_members(X)  # (6, N)
    Xs = torch.from_numpy(_scaling.encoded(reg._fitted.inputs, X))
    for e in range(6):
        coefs, intercepts = reg.get_member_params(e)
        assert [c.shape[1] for c in coefs[:-1]] == list(ARCHS[e % 4])
        mods = []
        for i, (W, b) in enumerate(zip(coefs, intercepts)):
            lin = nn.Linear(*W.shape)
            with torch.no_grad():
                lin.weight.copy_(torch.as_tensor(W.T))
                lin.bias.copy_(torch.as_tensor(b))
            mods.append(lin)
            if i < len(coefs) - 1:
                mods.append(ACT[activation]())
        with torch.no_grad():
            out = nn.Sequential(*mods)(Xs).numpy()[:, 0] * reg._fitted.targets.scale[0] + reg._fitted.targets.mean[0]
        np.testing.assert_allclose(members[e], out, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
def test_padding_units_stay_inert_through_training(regression_data, activation, monkeypatch):
    # Padded groups are CUDA's choice (one stacked computation per depth); forced here.
    monkeypatch.setattr(_pipeline, "pad_groups", lambda p: True)
    X, y = regression_data
    reg = NeuralBaggingRegressor(n_estimators=2, hidden_layer_sizes=[(3, 9), (8, 2)],
                                 activation=activation, max_iter=20, learning_rate_init=0.05,
                                 solver="sgd", alpha=0.1, numeric_encoding="none",
                                 random_state=0).fit(X, y)
    (g,) = reg._fitted.groups
    assert g.sizes == (4, 8, 9, 1)
    for e, pos in zip(g.members, range(2)):
        arch = reg.hidden_layer_sizes_[e]
        true = (4, *arch, 1)
        back = _hetero.pad_rows(reg._fitted.member_row(e)[0][None], true, g.sizes, activation)
        np.testing.assert_array_equal(back[0], g.flat[pos])  # padding exactly as placed
        real = _hetero.pad_rows(np.ones((1, back.shape[1] - 0))[:, : reg._fitted.member_row(e)[0].size],
                                true, g.sizes, activation, fill_bias=False)[0] == 1
        assert np.all(g.opt_state[:, pos][:, ~real] == 0)  # no optimizer motion there


def test_heterogeneous_classifier_and_warm_start(classification_data):
    X, y = classification_data
    clf = NeuralBaggingClassifier(n_estimators=4, hidden_layer_sizes=[(8,), (6, 6)], max_iter=40,
                                  learning_rate_init=0.01, warm_start=True, random_state=0)
    clf.fit(X, y)
    before = clf.predict_proba_members(X)
    clf.set_params(n_estimators=6, hidden_layer_sizes=[(8,), (6, 6), (4, 4, 4)])
    with pytest.raises(ValueError, match="same architectures"):
        clf.fit(X, y)
    clf.set_params(hidden_layer_sizes=[(8,), (6, 6), (8,), (6, 6), (10,), (3, 12)])
    clf.fit(X, y)
    after = clf.predict_proba_members(X)
    np.testing.assert_allclose(after[:4], before, rtol=1e-6, atol=1e-7)
    assert clf.score(X, y) > 0.8
    with pytest.raises(AttributeError, match="get_member_params"):
        clf.coefs_
    np.testing.assert_allclose(clf.to_torch()(torch.as_tensor(X).float()).detach().numpy(),
                               clf.predict_proba(X), rtol=1e-4, atol=1e-5)


def test_mothernet_clusters_and_attributes(regression_data):
    X, y = regression_data
    archs = [(16,), (16,), (32, 16), (32, 16)]
    one = NeuralBaggingRegressor(n_estimators=4, hidden_layer_sizes=archs, init="mothernet",
                                 n_mothernets=1, max_iter=30, learning_rate_init=0.02,
                                 random_state=0).fit(X, y)
    np.testing.assert_array_equal(one.mothernet_labels_, [0, 0, 0, 0])
    assert one.mothernet_hidden_layer_sizes_ == [(16,)]
    assert one.mothernet_n_iter_.shape == (1,) and one.mothernet_fit_time_ > 0
    two = NeuralBaggingRegressor(n_estimators=4, hidden_layer_sizes=archs, init="mothernet",
                                 n_mothernets=2, max_iter=30, learning_rate_init=0.02,
                                 random_state=0).fit(X, y)
    np.testing.assert_array_equal(two.mothernet_labels_, [0, 0, 1, 1])
    assert two.mothernet_hidden_layer_sizes_ == [(16,), (32, 16)]
    every = NeuralBaggingRegressor(n_estimators=4, hidden_layer_sizes=archs, init="mothernet",
                                   n_mothernets=4, max_iter=30, learning_rate_init=0.02,
                                   random_state=0).fit(X, y)
    np.testing.assert_array_equal(every.mothernet_labels_, [0, 1, 2, 3])
    assert every.mothernet_hidden_layer_sizes_ == archs
    for est in (one, two, every):
        assert est.score(X, y) > 0.9
    with pytest.raises(ValueError, match="n_mothernets"):
        NeuralBaggingRegressor(n_estimators=2, init="mothernet", n_mothernets=3).fit(X, y)
    with pytest.raises(ValueError, match="max_features"):
        NeuralBaggingRegressor(n_estimators=2, init="mothernet", max_features=2).fit(X, y)


def test_hatched_members_start_as_their_mothernet(regression_data):
    # relu: widening and deepening are exact, so with no noise and (almost) no training
    # every member of a cluster computes its MotherNet's function.
    X, y = regression_data
    reg = NeuralBaggingRegressor(n_estimators=3, hidden_layer_sizes=[(8,), (16,), (12, 10)],
                                 init="mothernet", mothernet_noise=0.0, learning_rate_init=1e-12,
                                 max_iter=1, random_state=0).fit(X, y)
    members = reg.predict_members(X)
    np.testing.assert_allclose(members[1], members[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(members[2], members[0], rtol=1e-4, atol=1e-4)
    noisy = NeuralBaggingRegressor(**{**reg.get_params(), "mothernet_noise": 0.05}).fit(X, y)
    m = noisy.predict_members(X)
    assert not np.allclose(m[1], m[0])
    assert np.corrcoef(m[1], m[0])[0, 1] > 0.95


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_cpu_groups_by_architecture_and_equals_the_padded_fit(regression_data, activation,
                                                              monkeypatch):
    # On the CPU each architecture is its own group (no padding units to compute); the
    # members are the same networks as in the padded groups CUDA uses.
    X, y = regression_data
    kw = dict(n_estimators=5, hidden_layer_sizes=[(3, 9), (8, 2), (4,), (6,), (3, 9)],
              activation=activation, max_iter=15, random_state=0, engine="batched")
    exact = NeuralBaggingRegressor(**kw).fit(X, y)
    assert sorted(g.sizes[1:-1] for g in exact._fitted.groups) == [(3, 9), (4,), (6,), (8, 2)]
    monkeypatch.setattr(_pipeline, "pad_groups", lambda p: True)
    padded = NeuralBaggingRegressor(**kw).fit(X, y)
    assert len(padded._fitted.groups) == 2
    np.testing.assert_allclose(exact.predict_members(X), padded.predict_members(X),
                               rtol=1e-4, atol=1e-5)


def test_halving_prunes_members_not_mothernets(regression_data):
    X, y = regression_data
    archs = [(16,), (16,), (24,), (24,)]  # two MotherNets of one depth: one training group
    est = NeuralBaggingRegressor(n_estimators=4, hidden_layer_sizes=archs, init="mothernet",
                                 n_mothernets=2, max_iter=40, n_iter_no_change=5, tol=0.0,
                                 early_stopping=True, prune="halving", prune_keep=1e-9,
                                 random_state=0).fit(X, y)
    assert est.mothernet_hidden_layer_sizes_ == [(16,), (24,)]
    # neither MotherNet is stopped at the first checkpoint (epoch 5): both hatch members
    assert np.all(est.mothernet_n_iter_ > 5), est.mothernet_n_iter_
    assert "pruned" in set(est.stop_reason_)  # the members themselves are pruned
