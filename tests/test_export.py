"""to_torch(): the ensemble served by PyTorch alone; saved-format checks."""

import pickle

import numpy as np
import pytest
import torch

from skensemble import NeuralBaggingClassifier, NeuralBaggingRegressor

SMALL = dict(n_estimators=4, hidden_layer_sizes=(8, 6), max_iter=30, learning_rate_init=0.01,
             random_state=0)


@pytest.mark.parametrize("params", [{}, {"max_features": 2, "bootstrap": True},
                                    {"activation": "tanh"}])
def test_to_torch_regressor_matches_predict(regression_data, params):
    X, y = regression_data
    X = X * 100 + 7  # scaling must be folded in
    reg = NeuralBaggingRegressor(**SMALL, **params).fit(X, y)
    module = reg.to_torch()
    assert isinstance(module, torch.nn.Module)
    with torch.no_grad():
        out = module(torch.as_tensor(X, dtype=torch.float32)).numpy()
    assert out.shape == (len(y),)
    np.testing.assert_allclose(out, reg.predict(X), rtol=1e-4, atol=1e-4)
    Y = np.column_stack([y, 2 * y])
    out2 = NeuralBaggingRegressor(**SMALL).fit(X, Y).to_torch()(torch.as_tensor(X).float())
    assert out2.shape == (len(y), 2)


def test_to_torch_classifier_matches_predict_proba(classification_data):
    X, y = classification_data
    clf = NeuralBaggingClassifier(**SMALL, max_features=3).fit(X, y)
    with torch.no_grad():
        proba = clf.to_torch()(torch.as_tensor(X, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=1e-4, atol=1e-5)


def test_to_torch_exports_and_keeps_state(regression_data):
    X, y = regression_data
    module = NeuralBaggingRegressor(**SMALL, max_features=3).fit(X, y).to_torch()
    x = torch.as_tensor(X[:5], dtype=torch.float32)
    program = torch.export.export(module, (x,))  # the graph ONNX export starts from
    torch.testing.assert_close(program.module()(x), module(x))
    assert {"g0_flat", "x_mean", "x_scale", "y_mean"} <= set(module.state_dict())


def test_unpickling_other_format_raises(regression_data):
    X, y = regression_data
    reg = NeuralBaggingRegressor(**SMALL).fit(X, y)
    state = reg.__getstate__()
    assert state["_skensemble_format"] >= 1
    state["_skensemble_format"] = 999
    blank = NeuralBaggingRegressor.__new__(NeuralBaggingRegressor)
    with pytest.raises(ValueError, match="cannot read it"):
        blank.__setstate__(state)
    again = pickle.loads(pickle.dumps(reg))  # the current format loads
    np.testing.assert_array_equal(again.predict(X), reg.predict(X))
