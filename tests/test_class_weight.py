"""class_weight: scikit-learn's class weights, multiplied into sample_weight.

Fitting with ``class_weight`` must give, bit for bit, what passing the product
``class_weight[y] * sample_weight`` as ``sample_weight`` gives: the same arithmetic on
the same weights (the product is formed before the weights are scaled to mean 1).
"""

import numpy as np
import pytest
from sklearn.utils.class_weight import compute_sample_weight

from skensemble import NeuralBaggingClassifier

FAST = dict(n_estimators=3, hidden_layer_sizes=(8,), max_iter=15, random_state=0)


@pytest.fixture
def imbalanced():
    """240 rows, three string classes of 150, 70 and 20 rows (early stopping on by 'auto')."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(240, 4))
    y = np.array(["a"] * 150 + ["b"] * 70 + ["c"] * 20, dtype=object)
    X[y == "b", 0] += 1.0
    X[y == "c", 1] += 1.5
    return X, y


def _same_fit(a, b, X):
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    np.testing.assert_array_equal(a.loss_curve_, b.loss_curve_)


@pytest.mark.filterwarnings("ignore:Some inputs do not have OOB scores")
@pytest.mark.parametrize("extra", [{}, dict(bootstrap=True, oob_score=True)])
def test_balanced_equals_its_sample_weight(imbalanced, extra):
    X, y = imbalanced
    a = NeuralBaggingClassifier(class_weight="balanced", **FAST, **extra).fit(X, y)
    b = NeuralBaggingClassifier(**FAST, **extra).fit(
        X, y, sample_weight=compute_sample_weight("balanced", y))
    _same_fit(a, b, X)
    assert a.early_stopping_  # validation read the weights too
    np.testing.assert_array_equal(a.validation_loss_curve_, b.validation_loss_curve_)
    np.testing.assert_array_equal(a.validation_scores_, b.validation_scores_)
    if extra:
        np.testing.assert_array_equal(a.oob_decision_function_, b.oob_decision_function_)
        assert a.oob_score_ == b.oob_score_
    plain = NeuralBaggingClassifier(**FAST, **extra).fit(X, y)
    assert not np.array_equal(plain.predict_proba(X), a.predict_proba(X))  # it acts


def test_balanced_raises_the_rare_class(imbalanced):
    X, y = imbalanced
    kw = dict(FAST, max_iter=40)
    plain = NeuralBaggingClassifier(**kw).fit(X, y).predict_proba(X)[:, 2]
    balanced = NeuralBaggingClassifier(class_weight="balanced", **kw).fit(X, y)
    assert balanced.predict_proba(X)[:, 2].mean() > plain.mean() + 0.05


def test_dict_equals_its_sample_weight(imbalanced):
    X, y = imbalanced
    cw = {"a": 0.5, "c": 4.0}  # "b" unnamed: weight 1
    a = NeuralBaggingClassifier(class_weight=cw, **FAST).fit(X, y)
    sw = compute_sample_weight(cw | {"b": 1.0}, y)
    np.testing.assert_array_equal(sw, np.select([y == "a", y == "c"], [0.5, 4.0], 1.0))
    _same_fit(a, NeuralBaggingClassifier(**FAST).fit(X, y, sample_weight=sw), X)


def test_combined_with_sample_weight(imbalanced):
    X, y = imbalanced
    sw = np.random.RandomState(1).uniform(0.2, 2.0, size=y.size)
    for cw in ("balanced", {"a": 0.25, "b": 2.0, "c": 3.0}):
        a = NeuralBaggingClassifier(class_weight=cw, **FAST).fit(X, y, sample_weight=sw)
        product = sw * compute_sample_weight(cw, y)
        _same_fit(a, NeuralBaggingClassifier(**FAST).fit(X, y, sample_weight=product), X)


def test_integer_labels_and_warm_start(imbalanced):
    X, y = imbalanced
    yi = np.searchsorted(["a", "b", "c"], y)  # 0, 1, 2
    cw = {0: 1.0, 2: 5.0}
    a = NeuralBaggingClassifier(class_weight=cw, warm_start=True, **FAST).fit(X, yi)
    b = NeuralBaggingClassifier(warm_start=True, **FAST)
    sw = compute_sample_weight(cw | {1: 1.0}, yi)
    b.fit(X, yi, sample_weight=sw)
    a.set_params(n_estimators=5).fit(X, yi)  # the new members read the weights too
    b.set_params(n_estimators=5).fit(X, yi, sample_weight=sw)
    _same_fit(a, b, X)


def test_partial_fit_takes_a_dict_per_call(imbalanced):
    X, y = imbalanced
    cw = {"a": 0.5, "c": 3.0}
    a = NeuralBaggingClassifier(class_weight=cw, **FAST)
    b = NeuralBaggingClassifier(**FAST)
    classes = ["a", "b", "c"]
    # the second batch has no "c" row: the dict still names it (a known class)
    for rows in (slice(0, 240, 2), slice(1, 200, 2)):
        a.partial_fit(X[rows], y[rows], classes=classes)
        sw = np.select([y[rows] == "a", y[rows] == "c"], [0.5, 3.0], 1.0)
        b.partial_fit(X[rows], y[rows], classes=classes, sample_weight=sw)
    _same_fit(a, b, X)


def test_partial_fit_refuses_balanced(imbalanced):
    X, y = imbalanced
    clf = NeuralBaggingClassifier(class_weight="balanced", **FAST)
    with pytest.raises(ValueError, match="class_weight='balanced'.*partial_fit.*dict"):
        clf.partial_fit(X, y, classes=["a", "b", "c"])


@pytest.mark.parametrize("cw, match", [
    ({"a": 1.0, "z": 2.0}, r"class_weight names \['z'\].*classes are \['a', 'b', 'c'\]"),
    ({"a": -1.0}, "finite non-negative"),
    ({"a": np.nan}, "finite non-negative"),
    ({"a": "heavy"}, "finite non-negative"),
    ({"a": 0.0, "b": 0.0, "c": 0.0}, r"no positive entry \(times class_weight\)"),
])
def test_bad_dicts_raise(imbalanced, cw, match):
    X, y = imbalanced
    with pytest.raises(ValueError, match=match):
        NeuralBaggingClassifier(class_weight=cw, **FAST).fit(X, y)


def test_bad_kinds_raise(imbalanced):
    X, y = imbalanced
    with pytest.raises(ValueError, match="class_weight"):
        NeuralBaggingClassifier(class_weight="auto", **FAST).fit(X, y)


def test_partial_fit_dict_names_classes_given(imbalanced):
    X, y = imbalanced
    clf = NeuralBaggingClassifier(class_weight={"d": 2.0}, **FAST)
    with pytest.raises(ValueError, match=r"names \['d'\]"):
        clf.partial_fit(X, y, classes=["a", "b", "c"])
    clf = NeuralBaggingClassifier(class_weight={"d": 2.0}, **FAST)
    clf.partial_fit(X[y != "c"], y[y != "c"], classes=["a", "b", "c", "d"])  # known: fine
    assert list(clf.classes_) == ["a", "b", "c", "d"]
