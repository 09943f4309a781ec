"""Export a fitted ensemble as a plain ``torch.nn.Module`` (serve with PyTorch alone)."""

import numpy as np
import torch
from torch import nn

from . import _engine


class EnsembleModule(nn.Module):
    """The fitted ensemble as one module: scaling, every member, and the aggregation.

    ``forward(X)`` takes a float tensor ``(n, n_features)`` in the original units and
    returns the mean prediction ``(n,)`` / ``(n, n_outputs)`` in float64 (regression;
    targets may exceed float32's range) or the averaged class probabilities
    ``(n, n_classes)`` in float32 (classification). All
    state is registered as buffers, so ``state_dict``, ``.to(device)``,
    ``torch.export.export`` and ONNX export work as for any module.

    Parameters
    ----------
    groups : list of dict
        Per group of members sharing a (padded) layout: ``members (G,)``, ``sizes``,
        ``flat (G, P)``.
    activation : str
    x_mean, x_scale, x_unit : ndarray (F,)
        The estimator's input standardisation, folded in.
    features : ndarray (E, k) or None
        Each member's feature subset.
    classification : bool
    y_mean, y_scale : ndarray (O,) or None
        The regressor's target standardisation, undone at the end.
    squeeze : bool
        Return ``(n,)`` for a single-output regressor fitted on a 1-D ``y``.
    """

    def __init__(self, groups, activation, x_mean, x_scale, x_unit, features=None,
                 classification=False, y_mean=None, y_scale=None, squeeze=False):
        super().__init__()
        self.layers_per_group = []
        for k, g in enumerate(groups):
            layout = _engine.Layout(g["sizes"])
            flat = torch.as_tensor(np.asarray(g["flat"], dtype=np.float32))
            for i, (W, b) in enumerate(layout.views(flat)):
                self.register_buffer(f"g{k}_weight{i}", W.contiguous())  # (G, fan_in, fan_out)
                self.register_buffer(f"g{k}_bias{i}", b.contiguous())  # (G, 1, fan_out)
            if features is not None:
                self.register_buffer(f"g{k}_features",
                                     torch.as_tensor(features[g["members"]], dtype=torch.int64))
            self.layers_per_group.append(layout.n_layers)
        members = np.concatenate([g["members"] for g in groups])
        # member e's output sits at row inverse[e] of the concatenated group outputs
        self.register_buffer("inverse", torch.as_tensor(np.argsort(members), dtype=torch.int64))
        # the estimator's standardisation, in float64 as it computes it
        self.register_buffer("x_unit", torch.as_tensor(x_unit, dtype=torch.float64))
        self.register_buffer("x_mean", torch.as_tensor(x_mean / x_unit, dtype=torch.float64))
        self.register_buffer("x_scale", torch.as_tensor(x_scale / x_unit, dtype=torch.float64))
        self.has_features = features is not None
        self.activation = activation
        self.classification = classification
        self.squeeze = squeeze
        if not classification:
            self.register_buffer("y_mean", torch.as_tensor(y_mean, dtype=torch.float64))
            self.register_buffer("y_scale", torch.as_tensor(y_scale, dtype=torch.float64))

    def _group(self, k, X):
        """Raw outputs ``(G, n, O)`` of group ``k`` on standardised ``X (n, F)``."""
        G = getattr(self, f"g{k}_weight0").shape[0]
        if self.has_features:
            h = X[:, getattr(self, f"g{k}_features")].permute(1, 0, 2)  # (n, G, k) -> (G, n, k)
        else:
            h = X.unsqueeze(0).expand(G, -1, -1)  # (G, n, F)
        n_layers = self.layers_per_group[k]
        for i in range(n_layers):
            h = torch.baddbmm(getattr(self, f"g{k}_bias{i}"), h, getattr(self, f"g{k}_weight{i}"))
            if i < n_layers - 1:
                h = _engine.activate(h, self.activation)
        return h

    def forward(self, X):
        """Ensemble output for ``X (n, F)``."""
        Xs = ((X.double() / self.x_unit - self.x_mean) / self.x_scale).float()
        out = torch.cat([self._group(k, Xs) for k in range(len(self.layers_per_group))])
        out = out[self.inverse]  # (E, n, O) in member order
        if self.classification:
            return torch.softmax(out, dim=-1).mean(0)  # (n, K)
        out = out.double().mean(0) * self.y_scale + self.y_mean  # (n, O) float64
        return out[:, 0] if self.squeeze else out


def to_torch(est):
    """Build the :class:`EnsembleModule` of a fitted estimator (weights copied)."""
    classification = hasattr(est, "classes_")
    return EnsembleModule(
        est._groups, est.activation, est._x_mean, est._x_scale, est._x_unit,
        features=est._features,
        classification=classification,
        y_mean=None if classification else est._y_mean,
        y_scale=None if classification else est._y_scale,
        squeeze=False if classification else est._y_1d,
    ).eval()
