"""Columns as they come: DataFrames with categorical, string, boolean and missing values."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skensemble import NeuralBaggingClassifier, NeuralBaggingRegressor

FAST = dict(max_iter=8, random_state=0, batch_size=32)


def _frame(n=240, seed=0):
    """Numeric (with missing values), category, object strings, string dtype, booleans."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "num": rng.normal(size=n),
        "count": rng.integers(0, 50, n).astype(float),
        "colour": pd.Categorical(rng.choice(["red", "green", "blue", "rare"], n,
                                            p=[0.4, 0.3, 0.29, 0.01])),
        "city": rng.choice(np.array(["Oslo", "Rome", "Lima", None], dtype=object), n),
        "kind": pd.array(rng.choice(["a", "b"], n), dtype="string"),
        "flag": rng.random(n) < 0.3,
    })
    df.loc[rng.random(n) < 0.15, "num"] = np.nan
    signal = (df["num"].fillna(0) + 2 * (df["colour"] == "red") - (df["city"] == "Rome")
              + df["flag"])
    return df, signal.to_numpy(dtype=float)


def _hand_design(df, levels, weight=None):
    """The inputs a first layer reads, built with pandas: standardised numbers, indicators,
    booleans; one-hot levels (kept ones, then "infrequent", then "missing"), unscaled."""
    numeric = df[["num", "count", "flag"]].astype(float)
    numeric["num_missing"] = df["num"].isna().astype(float)
    numeric["num"] = numeric["num"].fillna(df["num"].median())
    values = (numeric - numeric.mean()) / numeric.std(ddof=0)
    parts = [values.to_numpy()]
    for column in ("colour", "city", "kind"):
        raw = df[column].astype(object)
        kept = levels[column]
        hot = np.zeros((len(df), len(kept) + 2))
        for i, v in enumerate(raw):
            if pd.isna(v):
                hot[i, -1] = 1
            elif v in kept:
                hot[i, kept.index(v)] = 1
            else:
                hot[i, -2] = 1
        parts.append(hot)
    return np.concatenate(parts, 1)


def test_a_dataframe_fits_and_predicts_as_its_hand_one_hot_encoding():
    # No preprocessing: category, object and string columns become one-hot levels (each
    # member's first-layer rows for them: its learned embedding), missing numbers a
    # median and an indicator. The members compute what a hand-made one-hot design
    # matrix gives through their own weights.
    df, signal = _frame()
    y = (signal > np.median(signal)).astype(int)
    clf = NeuralBaggingClassifier(4, numeric_encoding="none", input_scaling="standard",
                                  min_frequency=6, **FAST).fit(df, y)
    names = clf.get_feature_names_out()
    assert list(names[:4]) == ["num", "count", "flag", "num_missing"]
    assert "colour_rare" not in names and "colour_infrequent" in names  # 1%: < 6 rows
    assert list(clf.feature_names_in_) == list(df.columns)
    levels = {"colour": ["blue", "green", "red"], "city": ["Lima", "Oslo", "Rome"],
              "kind": ["a", "b"]}
    Z = _hand_design(df, levels)
    assert Z.shape[1] == names.size
    h = torch.from_numpy(np.c_[Z, np.zeros(len(df))])  # + the input that pads (reads 0)
    Ws, bs = clf.coefs_, clf.intercepts_
    proba = 0
    for e in range(4):
        a = h
        for i, (W, b) in enumerate(zip(Ws, bs)):
            a = a @ torch.from_numpy(W[e]).double() + torch.from_numpy(b[e]).double()
            a = torch.relu(a) if i < len(Ws) - 1 else a
        proba = proba + torch.softmax(a, 1) / 4
    np.testing.assert_allclose(clf.predict_proba(df), proba.numpy(), atol=2e-5)


@pytest.mark.parametrize("engine", ["batched", "numba"])
def test_unseen_and_missing_categories_at_predict_time(engine):
    df, signal = _frame()
    reg = NeuralBaggingRegressor(3, engine=engine, **FAST).fit(df, signal)
    new = df.head(20).copy()
    new["colour"] = pd.Categorical(["purple"] * 20)  # never seen
    rare = df.head(20).copy()
    rare["colour"] = pd.Categorical(["rare"] * 20)  # seen, too rare to keep
    np.testing.assert_array_equal(reg.predict(new), reg.predict(rare))  # both "infrequent"
    gone = df.head(20).copy()
    gone["city"] = None
    gone["count"] = np.nan  # a column without missing values in training: its median
    median = df.head(20).copy()
    median["count"] = df["count"].median()
    out = reg.predict(gone)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(
        out, reg.predict(median.assign(city=pd.Series([None] * 20, dtype=object))))
    assert not np.allclose(out, reg.predict(df.head(20)))  # "missing" is its own level


def test_predictions_do_not_depend_on_the_rows_around_them():
    df, signal = _frame()
    reg = NeuralBaggingRegressor(3, **FAST).fit(df, signal)
    whole = reg.predict(df)
    np.testing.assert_allclose(reg.predict(df.iloc[7:30]), whole[7:30], rtol=1e-6)


def test_polars_equals_pandas():
    pl = pytest.importorskip("polars")
    df, signal = _frame()
    df = df.drop(columns=["kind"])
    frame = pl.DataFrame({
        "num": df["num"].to_numpy(), "count": df["count"].to_numpy(),
        "colour": pl.Series(df["colour"].astype(str).to_list(), dtype=pl.Categorical),
        "city": pl.Series([None if pd.isna(v) else v for v in df["city"]], dtype=pl.String),
        "flag": df["flag"].to_numpy(),
    })
    a = NeuralBaggingRegressor(3, **FAST).fit(df, signal)
    b = NeuralBaggingRegressor(3, **FAST).fit(frame, signal)
    np.testing.assert_array_equal(a.predict(df), b.predict(frame))
    assert list(b.feature_names_in_) == list(df.columns)


def test_categorical_features_names_columns_of_an_array():
    df, signal = _frame()
    X = df[["num", "count", "colour"]].astype(object).to_numpy()
    by_index = NeuralBaggingRegressor(3, categorical_features=[2], **FAST).fit(X, signal)
    by_mask = NeuralBaggingRegressor(3, categorical_features=[False, False, True],
                                     **FAST).fit(X, signal)
    np.testing.assert_array_equal(by_index.predict(X), by_mask.predict(X))
    assert list(by_index.get_feature_names_out()[:3]) == ["x0", "x1", "x0_missing"]
    frame = df[["num", "count", "city"]].assign(city=df["city"].fillna("none"))
    by_name = NeuralBaggingRegressor(3, categorical_features=["count"], **FAST)
    by_name.fit(frame.assign(city=frame["city"].map({"Oslo": 0, "Rome": 1, "Lima": 2,
                                                     "none": 3})), signal)
    assert "count_infrequent" in by_name.get_feature_names_out()  # read as categories


def test_numeric_arrays_with_missing_values():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    y = X @ [1.0, -2.0, 0.5]
    X[rng.random(200) < 0.2, 1] = np.nan
    reg = NeuralBaggingRegressor(3, **FAST).fit(X, y)
    assert list(reg.get_feature_names_out()) == ["x0", "x1", "x2", "x1_missing"]
    assert np.isfinite(reg.predict(X)).all()
    Xq = X[:5].copy()
    Xq[:, 2] = np.nan  # never missing in training: imputed, no indicator
    module = reg.to_torch()
    np.testing.assert_allclose(module(torch.from_numpy(Xq)).numpy(), reg.predict(Xq),
                               rtol=1e-5, atol=1e-6)


def test_warm_start_and_partial_fit_keep_the_fitted_reading():
    df, signal = _frame()
    reg = NeuralBaggingRegressor(2, warm_start=True, **FAST).fit(df, signal)
    names = reg.get_feature_names_out()
    reg.set_params(n_estimators=4).fit(df.head(100), signal[:100])  # levels kept as fitted
    np.testing.assert_array_equal(reg.get_feature_names_out(), names)
    assert reg.predict(df).shape == (len(df),)
    part = NeuralBaggingRegressor(2, **FAST)
    part.partial_fit(df.head(120), signal[:120])
    part.partial_fit(df.tail(120), signal[-120:])
    assert np.isfinite(part.predict(df)).all()
    with pytest.raises(ValueError, match="feature"):
        part.partial_fit(df.drop(columns=["flag"]), signal)


def test_in_a_pipeline_and_cross_validation():
    df, signal = _frame()
    pipe = make_pipeline(FunctionTransformer(lambda d: d.assign(num2=d["num"] * 2)),
                         NeuralBaggingRegressor(2, **FAST))
    scores = cross_val_score(pipe, df, signal, cv=2)
    assert np.isfinite(scores).all()


def test_max_categories_and_weighted_min_frequency():
    df, signal = _frame()
    reg = NeuralBaggingRegressor(2, max_categories=2, min_frequency=1, **FAST)
    reg.fit(df, signal)
    colour = [n for n in reg.get_feature_names_out() if n.startswith("colour_")]
    assert colour == ["colour_green", "colour_red", "colour_infrequent", "colour_missing"]
    w = np.where(df["colour"] == "rare", 100.0, 1.0)  # "rare" now weighs the most
    heavy = NeuralBaggingRegressor(2, max_categories=1, **FAST).fit(df, signal, w)
    assert "colour_rare" in heavy.get_feature_names_out()


@pytest.mark.parametrize("column, message", [
    (pd.Series([np.nan] * 240), "no value at all"),
    (pd.Series([None] * 240, dtype=object), "no value at all"),
    (pd.Series(["a", 1] * 120, dtype=object), "mixes types"),
    (pd.Series([1.0, np.inf] * 120), "infinite"),
])
def test_bad_columns_are_refused_by_name(column, message):
    df, signal = _frame()
    df["bad"] = column
    with pytest.raises(ValueError, match=f"'bad'.*{message}|{message}.*'bad'|"
                                         f"Column 'bad' .*{message}"):
        NeuralBaggingRegressor(2, **FAST).fit(df, signal)


def test_clear_errors_for_strings_and_bad_specifications():
    df, signal = _frame()
    X = np.c_[df["num"].to_numpy(), df["city"].fillna("x").to_numpy()]
    with pytest.raises(ValueError, match="categorical_features"):
        NeuralBaggingRegressor(2, **FAST).fit(X, signal)  # strings in an array
    with pytest.raises(ValueError, match="names 'zip'"):
        NeuralBaggingRegressor(2, categorical_features=["zip"], **FAST).fit(df, signal)
    with pytest.raises(ValueError, match="boolean mask must have 6"):
        NeuralBaggingRegressor(2, categorical_features=[True], **FAST).fit(df, signal)
    with pytest.raises(ValueError, match="column 9"):
        NeuralBaggingRegressor(2, categorical_features=[9], **FAST).fit(df, signal)
    reg = NeuralBaggingRegressor(2, **FAST).fit(df, signal)
    with pytest.raises(ValueError, match="categorical columns"):
        reg.to_torch()
    with pytest.raises(ValueError, match="input_features"):
        reg.get_feature_names_out(["a", "b"])
