"""Export a fitted ensemble as a plain ``torch.nn.Module`` (serve with PyTorch alone).

Owns the module's buffers and its scaling/aggregation. Must not have a forward pass of
its own: it calls :func:`skensemble._predict.forward_members`, as ``predict`` does.
"""

import numpy as np
import torch
from torch import nn

from . import _inputs, _predict, _scaling


class EnsembleModule(nn.Module):
    """The fitted ensemble as one module: scaling, its members, and the aggregation.

    ``forward(X)`` takes a float tensor ``(n, n_features)`` in the original units and
    returns the mean prediction ``(n,)`` / ``(n, n_outputs)`` (or ``(n, n_quantiles)``,
    sorted per row) in float64 (regression;
    targets may exceed float32's range) or the averaged class probabilities
    ``(n, n_classes)`` in float32 (classification); weighted means with ``weights``. All
    state is registered as buffers, so ``state_dict``, ``.to(device)``,
    ``torch.export.export`` and ONNX export work as for any module.

    Parameters
    ----------
    groups : list of skensemble._training.Group
        The fitted groups of members (weights are copied into buffers).
    activation : str
    inputs : skensemble._scaling.InputTransform
        The estimator's input scaling, applied first (buffers ``x_<name>``).
    columns : ndarray (E, w) or None
        Each member's columns of the encoded space (its values and bins); each group's
        first-layer map is kept as buffers ``g<k>_<field>``
        (:class:`skensemble._inputs.FirstLayer`).
    classification : bool
    y_mean, y_scale : ndarray (O,) or None
        The regressor's target standardisation, undone at the end.
    squeeze : bool
        Return ``(n,)`` for a single-output regressor fitted on a 1-D ``y`` (or on one
        ``quantile`` float).
    sort_outputs : bool
        Sort each row's outputs (a regressor's quantiles, ascending, as ``predict``).
    weights : ndarray (E,) or None
        Each member's weight in the average (buffer ``weights``, float64); None: the
        plain mean.
    fill : ndarray (F,) or None
        The value a missing (NaN) input is replaced by: its column's training median.
    indicator : ndarray (F,) bool or None
        Columns that had missing values in training: a 0/1 missing indicator of each
        follows the columns, as in the estimator.
    """

    def __init__(self, groups, activation, inputs, columns=None,
                 classification=False, y_mean=None, y_scale=None, squeeze=False,
                 weights=None, fill=None, indicator=None, sort_outputs=False):
        super().__init__()
        self.sort_outputs = bool(sort_outputs)
        self.imputes = fill is not None
        if self.imputes:  # NaN -> the training median, then the fit's missing indicators
            self.register_buffer("fill", torch.as_tensor(fill, dtype=torch.float64))
            flagged = np.flatnonzero(indicator)
            self.flags = [int(i) for i in flagged]  # static: the exported graph's shape
        self.layouts = [g.layout for g in groups]
        self.activations = [g.settings.activation or activation for g in groups]  # own
        encoding = _inputs.Encoding.of(inputs)
        self.mapped = []  # whether each group's first layer reads a map (else X itself)
        self.one_hot = []  # whether that map has one-hot inputs
        for k, g in enumerate(groups):
            self.register_buffer(f"g{k}_flat", torch.as_tensor(g.flat, dtype=torch.float32))
            cols = None if columns is None else columns[g.members, : g.sizes[0]]
            first = encoding.first_layer(cols, len(g.members), g.sizes[0])
            self.mapped.append(first is not None)
            self.one_hot.append(first is not None and first.one_hot)
            if first is not None:
                first = first.to("cpu", torch.float32)
                for name in _inputs.FirstLayer._FIELDS:
                    self.register_buffer(f"g{k}_{name}", getattr(first, name))
        inverse = _predict.member_inverse(groups)
        self.reorder = inverse is not None
        if self.reorder:  # member e's output is row inverse[e] of the groups' outputs
            self.register_buffer("inverse", torch.as_tensor(inverse, dtype=torch.int64))
        # the estimator's input transform, in float64 as it computes it
        self.input_names = list(inputs.tensors())
        for name, value in inputs.tensors().items():
            self.register_buffer(f"x_{name}", value)
        self.activation = activation
        self.classification = classification
        self.squeeze = squeeze
        if not classification:
            self.register_buffer("y_mean", torch.as_tensor(y_mean, dtype=torch.float64))
            self.register_buffer("y_scale", torch.as_tensor(y_scale, dtype=torch.float64))
        self.weighted = weights is not None
        if self.weighted:
            self.register_buffer("weights", torch.as_tensor(weights, dtype=torch.float64))

    def forward(self, X):
        """Ensemble output for ``X (n, F)`` (NaN: missing)."""
        if self.imputes:
            missing = torch.isnan(X)
            X = torch.where(missing, self.fill.to(X.dtype), X)
            if self.flags:
                X = torch.cat([X, missing[:, self.flags].to(X.dtype)], dim=1)
        Xs = _scaling.transform(X, {n: getattr(self, f"x_{n}") for n in self.input_names})
        groups = [(getattr(self, f"g{k}_flat"), layout, self._first(k), self.activations[k])
                  for k, layout in enumerate(self.layouts)]
        # the same forward pass as the estimator's predict
        out = _predict.forward_members(groups, Xs, self.activation,
                                       self.inverse if self.reorder else None)  # (E, n, O)
        if self.classification:
            proba = torch.softmax(out, dim=-1)  # (E, n, K)
            if self.weighted:
                return (proba * self.weights.to(proba.dtype)[:, None, None]).sum(0)  # (n, K)
            return proba.mean(0)  # (n, K)
        out = out.double()  # (E, n, O)
        mean = (out * self.weights[:, None, None]).sum(0) if self.weighted else out.mean(0)
        out = mean * self.y_scale + self.y_mean  # (n, O) float64
        if self.sort_outputs:  # quantiles never cross (the estimator's rearrangement)
            out = torch.sort(out, dim=-1).values
        return out[:, 0] if self.squeeze else out

    def _first(self, k):
        """Group ``k``'s first-layer map, rebuilt from its buffers (None: it reads X)."""
        if not self.mapped[k]:
            return None
        return _inputs.FirstLayer(**{n: getattr(self, f"g{k}_{n}")
                                     for n in _inputs.FirstLayer._FIELDS},
                                  one_hot=self.one_hot[k])


def to_torch(fitted):
    """Build the :class:`EnsembleModule` of a fitted ensemble (weights copied).

    ``fitted``: a :class:`~skensemble._fitted.FittedEnsemble`. Only the members of
    positive ensemble weights are exported.
    """
    targets = fitted.targets
    classification = hasattr(targets, "classes")
    schema = fitted.schema
    if schema.categorical.size:
        raise ValueError(
            "to_torch() exports a module over numeric inputs; this ensemble reads "
            f"categorical columns ({', '.join(map(str, schema.names[schema.categorical][:5]))}"
            "), which a tensor cannot carry. Use predict, or encode them as numbers before "
            "fit (e.g. a OneHotEncoder in a Pipeline) to export.")
    groups, columns, weights = fitted.selected()
    return EnsembleModule(
        groups, fitted.activation, fitted.inputs,
        columns=columns,
        classification=classification,
        y_mean=None if classification else targets.mean,
        y_scale=None if classification else targets.scale,
        squeeze=False if classification else targets.one_d,
        weights=weights,
        fill=schema.fill,
        indicator=schema.indicator,
        sort_outputs=bool(getattr(targets, "quantiles", ())),
    ).eval()
