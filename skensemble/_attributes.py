"""The scikit-learn-named fitted attributes, read from the fitted state.

A fitted estimator holds one :class:`~skensemble._fitted.FittedEnsemble` as ``_fitted``;
every public fitted attribute (``loss_curve_``, ``ensemble_weights_``, ``oob_score_``...)
is a read-only view of it, as LightGBM's estimators read theirs from their ``Booster``.
An attribute the fit did not produce (``oob_score_`` without ``oob_score=True``, the
validation curves without validation) raises ``AttributeError``, so ``hasattr`` says
whether it exists; every attribute of an unfitted estimator raises scikit-learn's
``NotFittedError`` (an ``AttributeError`` too).

Also the per-member read access: ``get_member_params``, ``coefs_``/``intercepts_``,
``estimators_samples_``/``estimators_features_`` (recomputed from the member seeds)
and ``to_torch()``. Must not train or predict.
"""

import numpy as np
from sklearn.exceptions import NotFittedError


class FittedAttribute:
    """A fitted attribute: ``read(fitted)``; None means "this fit has none".

    Read-only unless ``write(fitted, value)`` is given.
    """

    def __init__(self, read, absent="", doc=None, write=None):
        self.read, self.absent, self.write = read, absent, write
        self.__doc__ = doc

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        fitted = obj.__dict__.get("_fitted")
        if fitted is None:
            raise NotFittedError(
                f"This {type(obj).__name__} instance is not fitted yet, so it has no "
                f"{self.name}. Call 'fit' with appropriate arguments first.")
        value = self.read(fitted)
        if value is None:
            raise AttributeError(
                f"{type(obj).__name__} has no {self.name}: {self.absent or 'not computed'}.")
        return value

    def __set__(self, obj, value):
        fitted = obj.__dict__.get("_fitted")
        if self.write is None or fitted is None:
            raise AttributeError(f"{self.name} is set by fit; it cannot be assigned"
                                 + ("" if fitted is None or self.write is None else "."))
        self.write(fitted, value)


def _set_weights(fitted, value):
    """Assign ``ensemble_weights_``: one non-negative weight per member, not all zero."""
    w = np.asarray(value, dtype=np.float64)
    if w.shape != (fitted.n_members,) or not np.all(np.isfinite(w)) or (w < 0).any() \
            or not w.sum() > 0:
        raise ValueError(
            f"ensemble_weights_ must be {fitted.n_members} finite non-negative weights, "
            f"not all zero; got shape {w.shape}.")
    fitted.weights = w / w.sum()


def _history(name):
    return lambda f: getattr(f.history, name)


def _hatching(name):
    return lambda f: None if f.hatching is None else getattr(f.hatching, name)


def _oob(name):
    return lambda f: None if f.oob is None else f.oob.get(name)


class FittedAttributes:
    """Fitted attributes and per-member access of the estimators (a mixin)."""

    hidden_layer_sizes_ = FittedAttribute(lambda f: f.archs)
    member_params_ = FittedAttribute(
        lambda f: None if f.member_params is None else [dict(p) for p in f.member_params],
        "it is set by member_params")
    early_stopping_ = FittedAttribute(lambda f: f.early_stopping)
    loss_curve_ = FittedAttribute(_history("loss"))
    n_iter_per_member_ = FittedAttribute(_history("n_iter"))
    n_iter_ = FittedAttribute(lambda f: int(f.history.n_iter.max()))
    t_ = FittedAttribute(lambda f: f.t)
    fit_time_ = FittedAttribute(_history("seconds"))
    validation_loss_curve_ = FittedAttribute(_history("val_loss"),
                                             "members did not validate in this fit")
    validation_scores_ = FittedAttribute(_history("val_score"),
                                         "members did not validate in this fit")
    best_validation_loss_ = FittedAttribute(_history("best"),
                                            "members did not validate in this fit")
    stop_reason_ = FittedAttribute(_history("stop_reason"), "it is set by fit")
    engine_ = FittedAttribute(lambda f: f.engine)
    device_ = FittedAttribute(lambda f: f.device)
    ensemble_weights_ = FittedAttribute(lambda f: f.weights, write=_set_weights)
    selection_score_ = FittedAttribute(lambda f: f.selection_score,
                                       "it is set by fit with ensemble_selection")
    uniform_score_ = FittedAttribute(lambda f: f.uniform_score,
                                     "it is set by fit with ensemble_selection")
    oob_score_ = FittedAttribute(_oob("oob_score_"), "it is set by fit with oob_score=True")
    mothernet_hidden_layer_sizes_ = FittedAttribute(_hatching("hidden_layer_sizes"),
                                                    "it is set by init='mothernet'")
    mothernet_labels_ = FittedAttribute(_hatching("labels"), "it is set by init='mothernet'")
    mothernet_n_iter_ = FittedAttribute(_hatching("n_iter"), "it is set by init='mothernet'")
    mothernet_fit_time_ = FittedAttribute(_hatching("fit_time"),
                                          "it is set by init='mothernet'")

    def __sklearn_is_fitted__(self):
        return "_fitted" in self.__dict__

    def _state(self):
        """The fitted state; NotFittedError before ``fit``."""
        fitted = self.__dict__.get("_fitted")
        if fitted is None:
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. "
                                 "Call 'fit' with appropriate arguments first.")
        return fitted

    @property
    def estimators_samples_(self):
        """Rows each member trained on (with repeats under bootstrap): list of int arrays.

        With ``member_params['max_samples']`` each member's own sample, of its own size.
        """
        fitted = self._state()
        rows = fitted.member_draws()[0]
        counts = fitted.draw_counts()
        return list(rows) if counts is None else [r[:n] for r, n in zip(rows, counts)]

    @property
    def estimators_features_(self):
        """Features each member sees, in the order its first layer reads them."""
        fitted = self._state()
        if fitted.features is None:
            return [np.arange(self.n_features_in_) for _ in range(fitted.n_members)]
        return list(fitted.features)

    def get_member_params(self, member):
        """Weights and biases of one member, at its own architecture.

        Parameters
        ----------
        member : int
            Index of the member, in ``range(n_estimators)``.

        Returns
        -------
        coefs : list of ndarray
            ``coefs[i]`` has shape ``(fan_in, fan_out)`` (internally standardised units).
            The first layer's rows follow the member's inputs: the standardised values of
            its features (``estimators_features_``), then, with the piecewise-linear
            encoding, their bins (of the member's own ``n_bins`` where it drew one), then
            one all-zero column where that layout ends with one.
        intercepts : list of ndarray
            ``intercepts[i]`` has shape ``(fan_out,)``.
        """
        return self._state().member_layers(member)

    def to_torch(self):
        """The fitted ensemble as a plain ``torch.nn.Module``.

        The module applies the estimator's input scaling, every member and the
        aggregation: ``module(torch.as_tensor(X, dtype=torch.float32))`` returns the mean
        prediction (regressor) or the class probabilities in the order of ``classes_``
        (classifier), weighted by ``ensemble_weights_``. Members of weight 0 are left
        out of the module. It needs PyTorch only, and exports with ``torch.onnx.export``.

        Returns
        -------
        torch.nn.Module
            In eval mode, on the CPU; move it with ``.to(device)``.
        """
        from ._export import to_torch

        return to_torch(self._state())

    @property
    def coefs_(self):
        """Per layer, weights of every member: ``(n_estimators, fan_in, fan_out)``."""
        return [W.numpy() for W, _ in self._state().stacked_layers()]

    @property
    def intercepts_(self):
        """Per layer, biases of every member: ``(n_estimators, fan_out)``."""
        return [b.numpy()[:, 0, :] for _, b in self._state().stacked_layers()]
