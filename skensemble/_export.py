"""Export a fitted ensemble as a plain ``torch.nn.Module`` (serve with PyTorch alone)."""

import numpy as np
import torch
from torch import nn

from . import _engine


class EnsembleModule(nn.Module):
    """The fitted ensemble as one module: scaling, every member, and the aggregation.

    ``forward(X)`` takes a float tensor ``(n, n_features)`` in the original units and
    returns the mean prediction ``(n,)`` / ``(n, n_outputs)`` (regression) or the
    averaged class probabilities ``(n, n_classes)`` (classification), in float32. All
    state is registered as buffers, so ``state_dict``, ``.to(device)``,
    ``torch.jit.trace`` and ``torch.onnx.export`` work as for any module.
    """

    def __init__(self, flat, sizes, activation, x_mean, x_scale, features=None,
                 classification=False, y_mean=None, y_scale=None, squeeze=False):
        super().__init__()
        layout = _engine.Layout(sizes)
        flat = torch.as_tensor(np.asarray(flat, dtype=np.float32))
        self.n_layers = layout.n_layers
        for i, (W, b) in enumerate(layout.views(flat)):
            self.register_buffer(f"weight{i}", W.contiguous())  # (E, fan_in, fan_out)
            self.register_buffer(f"bias{i}", b.contiguous())  # (E, 1, fan_out)
        self.register_buffer("x_mean", torch.as_tensor(x_mean, dtype=torch.float32))
        self.register_buffer("x_scale", torch.as_tensor(x_scale, dtype=torch.float32))
        self.has_features = features is not None
        if self.has_features:
            self.register_buffer("features", torch.as_tensor(features, dtype=torch.int64))
        self.activation = activation
        self.classification = classification
        self.squeeze = squeeze
        if not classification:
            self.register_buffer("y_mean", torch.as_tensor(y_mean, dtype=torch.float32))
            self.register_buffer("y_scale", torch.as_tensor(y_scale, dtype=torch.float32))

    def forward(self, X):
        """Ensemble output for ``X (n, F)``."""
        h = (X - self.x_mean) / self.x_scale  # the estimator's internal standardisation
        E = self.weight0.shape[0]
        if self.has_features:
            h = h[:, self.features].permute(1, 0, 2)  # (n, E, k) -> (E, n, k)
        else:
            h = h.unsqueeze(0).expand(E, -1, -1)  # (E, n, F)
        for i in range(self.n_layers):
            h = torch.baddbmm(getattr(self, f"bias{i}"), h, getattr(self, f"weight{i}"))
            if i < self.n_layers - 1:
                h = _engine.activate(h, self.activation)
        if self.classification:
            return torch.softmax(h, dim=-1).mean(0)  # (n, K)
        out = h.mean(0) * self.y_scale + self.y_mean  # (n, O)
        return out[:, 0] if self.squeeze else out


def to_torch(est):
    """Build the :class:`EnsembleModule` of a fitted estimator (weights copied)."""
    classification = hasattr(est, "classes_")
    return EnsembleModule(
        est._flat, est._layout_sizes, est.activation, est._x_mean, est._x_scale,
        features=est._features, classification=classification,
        y_mean=None if classification else est._y_mean,
        y_scale=None if classification else est._y_scale,
        squeeze=False if classification else est._y_1d,
    ).eval()
