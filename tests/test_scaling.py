"""Input scaling: weighted quantiles, robust clipping, piecewise-linear encoding, export."""

import numpy as np
import pytest
import torch

from skensemble import NeuralBaggingClassifier, NeuralBaggingRegressor, _scaling


def test_weighted_quantiles_match_numpy_and_ignore_zero_weights():
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((501, 3))
    qs = [0.1, 0.25, 0.5, 0.9]
    np.testing.assert_allclose(_scaling.weighted_quantiles(Z, None, qs),
                               np.quantile(Z, qs, axis=0, method="hazen"), atol=1e-12)
    w = np.r_[np.zeros(100), np.ones(401)]
    np.testing.assert_allclose(_scaling.weighted_quantiles(Z, w, qs),
                               np.quantile(Z[100:], qs, axis=0, method="hazen"), atol=1e-12)
    # integer weights act as repeats (up to the interpolation between repeats)
    w2 = np.r_[np.full(250, 2.0), np.ones(251)]
    rep = np.r_[Z[:250], Z[:250], Z[250:]]
    np.testing.assert_allclose(_scaling.weighted_quantiles(Z, w2, [0.5]),
                               np.quantile(rep, [0.5], axis=0), atol=0.02)


def _data():
    rng = np.random.default_rng(1)
    return np.c_[rng.lognormal(sigma=2, size=800) * 1e6,  # heavy tail, huge units
                 rng.integers(0, 2, 800),  # binary
                 rng.standard_normal(800),
                 np.full(800, 7.0)]  # constant


def test_robust_scaling_clips_smoothly_and_keeps_order():
    X = _data()
    std = _scaling.fit_input_transform(X, None).apply(X)
    rob = _scaling.fit_input_transform(X, None, robust=True).apply(X)
    assert std[:, 0].max() > 10  # the tail dominates after standardisation ...
    assert np.abs(rob).max() < _scaling.CLIP  # ... and is bounded after robust clipping
    for d in range(3):  # monotone per feature
        o = np.argsort(X[:, d], kind="stable")
        assert np.all(np.diff(rob[o, d]) >= 0)
    assert np.all(rob[:, 3] == rob[0, 3])  # constant stays constant
    # the median maps to 0 (median of an odd count is a data point)
    med = _scaling.fit_input_transform(X[:799], None, robust=True).apply(X[:799])
    assert np.min(np.abs(med[:, 2])) < 1e-6


def test_piecewise_linear_encoding():
    X = _data()
    tr = _scaling.fit_input_transform(X, None, n_bins=8)
    assert tr.apply(X).shape == (800, 4)  # what a fit keeps: the scaled values only
    A = _scaling.encoded(tr, X)  # the encoded space, as a matrix for inspection
    # bins only for the features with 3+ distinct values (0 and 2), then a zero column
    np.testing.assert_array_equal(np.unique(tr.bin_feature), [0, 2])
    assert A.shape == (800, 4 + 16 + 1) and tr.n_columns == 21
    assert np.all(A[:, -1] == 0)
    e = A[:, 4 + 8 : 4 + 16]  # feature 2's bins
    assert e[:, 1:-1].min() >= 0 and e[:, 1:-1].max() <= 1
    assert np.all(np.diff(e, axis=1) <= 1e-6)  # ones before the fraction, zeros after
    o = np.argsort(X[:, 2])
    assert np.all(np.diff(e[o].sum(1)) >= -1e-6)  # the encoding's sum grows with the value
    assert e[o[0], 0] < 0 or np.isclose(e[o[0], 0], 0)  # the first bin extends below
    # members' columns: values, then their features' bins, padded with the zero column
    cols = tr.columns(np.array([[2, 1], [1, 3]]))
    assert cols.shape == (2, tr.n_inputs(2)) == (2, 2 + 16)
    np.testing.assert_array_equal(cols[0], [2, 1, *range(12, 20), *[20] * 8])
    np.testing.assert_array_equal(cols[1], [1, 3, *[20] * 16])


@pytest.mark.parametrize("Est", [NeuralBaggingRegressor, NeuralBaggingClassifier])
@pytest.mark.parametrize("kw", [dict(input_scaling="robust"),
                                dict(numeric_encoding="piecewise_linear", n_bins=4),
                                dict(input_scaling="robust", numeric_encoding="piecewise_linear",
                                     n_bins=3, max_features=2, bootstrap=True)])
def test_estimators_with_input_transforms(Est, kw):
    X = _data()
    y = (np.log(X[:, 0]) + X[:, 2] > 14) if Est is NeuralBaggingClassifier else np.log(X[:, 0])
    est = Est(n_estimators=3, hidden_layer_sizes=(8,), max_iter=20, learning_rate_init=0.01,
              random_state=0, **kw).fit(X, y)
    k = 2 if "max_features" in kw else None
    assert est.get_member_params(0)[0][0].shape[0] == est._fitted.inputs.n_inputs(k)
    assert est.score(X, y) > 0.6
    module = est.to_torch()
    out = module(torch.as_tensor(X)).numpy()
    ref = est.predict_proba(X) if Est is NeuralBaggingClassifier else est.predict(X)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    # a refit with the same random_state is identical
    again = Est(**est.get_params()).fit(X, y)
    np.testing.assert_array_equal(again.predict(X), est.predict(X))


def test_zero_weight_rows_do_not_move_the_transform():
    X = _data()
    w = np.ones(800)
    w[:100] = 0
    X2 = X.copy()
    X2[:100, 0] = 1e30  # outliers that carry no weight
    a = _scaling.fit_input_transform(X[100:], None, robust=True, n_bins=4)
    b = _scaling.fit_input_transform(X2, w, robust=True, n_bins=4)
    np.testing.assert_allclose(a.apply(X[100:]), b.apply(X2[100:]), rtol=1e-6, atol=1e-6)


def test_several_bin_counts_encode_each_set_as_alone():
    # members that drew n_bins 4 or 8 read exactly what a transform of that count gives
    rng = np.random.RandomState(3)
    X = np.column_stack([rng.normal(size=300), rng.randint(0, 2, 300), rng.exponential(size=300)])
    both = _scaling.fit_input_transform(X, None, robust=True, n_bins=[8, 4])
    np.testing.assert_array_equal(np.unique(both.bin_set), [4, 8])
    wide = _scaling.encoded(both, X)
    for count in (4, 8):
        alone = _scaling.fit_input_transform(X, None, robust=True, n_bins=count)
        cols = both.columns(None, np.array([count]))
        assert cols.shape[1] == both.n_inputs(None, count) == alone.n_columns
        np.testing.assert_array_equal(wide[:, cols[0]], _scaling.encoded(alone, X))
    # the values alone, and a member reading feature subsets of one set
    np.testing.assert_array_equal(both.columns(None, np.array([0]))[0][:3], [0, 1, 2])
    cols = both.columns(np.array([[2, 1]]), np.array([4]))
    alone = _scaling.fit_input_transform(X, None, robust=True, n_bins=4)
    np.testing.assert_array_equal(wide[:, cols[0]], _scaling.encoded(alone, X)[:, alone.columns(
        np.array([[2, 1]]))[0]])
    # one set whose members read every column in order needs no gather
    assert both.columns(None, None) is None
    one = _scaling.fit_input_transform(X, None, n_bins=4)
    assert one.columns(None, np.array([4, 4])) is None
    assert one.columns(None, np.array([4, 0])).shape == (2, one.n_columns)


def test_bins_have_no_width_of_a_rounding_error_and_export_agrees():
    # 24 quantiles of 12 rows interpolate between the same values: edges 1e-17 apart made
    # bins of that width, whose ramps torch and numba computed differently (to_torch()
    # disagreed with predict by 0.33)
    import torch

    from skensemble import NeuralBaggingRegressor

    X = np.array([[5, 1, 3], [7, 6, -3], [3, 0, 0], [1, 0, 4], [2, 0, 1], [1, 4, -1],
                  [1, -3, -8], [2, 3, -2], [7, -4, 0], [-1, 5, 4], [0, 1, -3], [3, 2, 1]],
                 float)
    y = X.sum(1)
    tr = _scaling.fit_input_transform(X, None, robust=True, n_bins=24)
    widths = 1.0 / tr.inv_width
    assert widths.min() > 1e-6
    est = NeuralBaggingRegressor(random_state=0, n_bins=24, max_iter=5).fit(X, y)
    with torch.no_grad():
        out = est.to_torch()(torch.as_tensor(X)).numpy().reshape(-1)
    np.testing.assert_allclose(out, est.predict(X), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("weighted", [False, True])
def test_quantiles_read_by_column_blocks_equal_one_block(monkeypatch, weighted):
    # The set-up reads the quantiles' sample a block of columns at a time (memory bounded
    # by the block): every statistic is a column's own, so any block width gives the same
    # transform, bit for bit (sampled rows, weights, two bin counts, long tails on).
    rng = np.random.default_rng(3)
    X = np.c_[_data()[:, :3], rng.exponential(size=800) ** 3, rng.normal(size=(800, 3))]
    w = rng.uniform(0.0, 2.0, 800) if weighted else None
    monkeypatch.setattr(_scaling, "QUANTILE_ROWS", 500)  # a sample, as for large data
    monkeypatch.setattr(_scaling, "TAIL_SHARE", 0.05)
    fits = []
    for cells in (10**9, 1000, 1):  # one block; two columns a block; one column a block
        monkeypatch.setattr(_scaling, "QUANTILE_CELLS", cells)
        fits.append(_scaling.fit_input_transform(X, w, robust=True, n_bins=[4, 8]))
    one = fits[0]
    assert one.lo.size > 0 and set(one.bin_set) == {4, 8} and one.asinh is not None
    for other in fits[1:]:
        for name in ("mean", "scale", "center", "spread", "asinh", "lo", "inv_width",
                     "bin_feature", "first", "last", "bin_set"):
            np.testing.assert_array_equal(getattr(one, name), getattr(other, name))
