"""Read access to a fitted ensemble's members: their parameters, and export.

Owns ``estimators_samples_``/``estimators_features_`` (recomputed from the member
seeds), ``get_member_params``, ``coefs_``/``intercepts_``, the members that
``ensemble_weights_`` keeps, and ``to_torch()`` for the estimators (a mixin of
:class:`skensemble._base.BaseNeuralBagging`). Must not train or predict: it only reads
the fitted groups (``_groups``, ``hidden_layer_sizes_``, ``ensemble_weights_``).
"""

from dataclasses import replace

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from . import _engine, _sampling


class FittedMembers:
    """Per-member views of the fitted groups."""

    def _member_draws(self):
        """Recompute every member's rows, hold-out rows and features from the stored seeds."""
        check_is_fitted(self, "_groups")
        if getattr(self, "_partial_calls", 0):
            raise AttributeError(
                "estimators_samples_ is not defined for ensembles trained by partial_fit.")
        return _sampling.member_samples(
            self._seeds, self._plan_,
            self._sample_weight if self._plan_.bootstrap else None, self._stratify,
            self._draw_counts(getattr(self, "member_params_", None), self._plan_),
        )

    @property
    def estimators_samples_(self):
        """Rows each member trained on (with repeats under bootstrap): list of int arrays.

        With ``member_params['max_samples']`` each member's own sample, of its own size.
        """
        rows = self._member_draws()[0]
        counts = self._draw_counts(getattr(self, "member_params_", None), self._plan_)
        return list(rows) if counts is None else [r[:n] for r, n in zip(rows, counts)]

    @property
    def estimators_features_(self):
        """Features each member sees, in the order its first layer reads them."""
        check_is_fitted(self, "_groups")
        if self._features is None:
            return [np.arange(self.n_features_in_) for _ in range(len(self._seeds))]
        return list(self._features)

    def _selected_members(self):
        """The members of positive ``ensemble_weights_``, as prediction runs them.

        Returns
        -------
        groups : list of Group
            The fitted groups cut to those members, renumbered ``0..E'-1`` in member
            order (all groups unchanged when every member weighs the same).
        columns : ndarray (E', width) or None
            The input columns they read (:meth:`_columns`); None: every column.
        weights : ndarray (E',) float64 or None
            Their weights, summing to 1; None when every member weighs the same (the
            plain mean, computed exactly as without selection).
        """
        check_is_fitted(self, "_groups")
        w = getattr(self, "ensemble_weights_", None)
        if w is None or np.all(w == w[0]):
            return self._groups, self._columns(self._features), None
        kept = np.flatnonzero(w > 0)  # (E',) sorted member positions
        groups = []
        for g in self._groups:
            keep = w[g.members] > 0  # (G,)
            if keep.any():
                groups.append(replace(g, members=np.searchsorted(kept, g.members[keep]),
                                      flat=g.flat[keep]))
        columns = self._columns(self._features)  # as wide as the widest group reads
        weights = w[kept]
        return groups, None if columns is None else columns[kept], weights / weights.sum()

    def _member_row(self, member):
        """Flat parameters ``(P_e,)`` of one member at its own architecture, and its sizes."""
        if not 0 <= member < len(self._seeds):
            raise IndexError(f"member={member} is out of range for {len(self._seeds)} members.")
        g = self._groups[0]
        sizes = (self._member_width(member), *self.hidden_layer_sizes_[member], g.sizes[-1])
        for g in self._groups:
            row = g.member_row(member, sizes)
            if row is not None:
                return row, sizes
        raise IndexError(f"member={member} is in no group.")  # pragma: no cover

    def _member_width(self, member):
        """Inputs of one member's first layer (its own, where it drew its encoding)."""
        keys = getattr(self, "_input_keys", None)
        if keys is None:  # every member reads as many inputs
            return self._groups[0].sizes[0]
        k = None if self._features is None else self._features.shape[1]
        return self._input.n_inputs(k, int(keys[member]))

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
        check_is_fitted(self, "_groups")
        row, sizes = self._member_row(member)
        layers = _engine.Layout(sizes).views(torch.from_numpy(row[None]))
        return [W[0].numpy() for W, _ in layers], [b[0, 0].numpy() for _, b in layers]

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
        check_is_fitted(self)
        from ._export import to_torch

        return to_torch(self)


    def _stacked_layers(self):
        check_is_fitted(self, "_groups")
        keys = getattr(self, "_input_keys", None)
        if keys is not None and len(set(keys.tolist())) > 1:
            raise AttributeError(
                "coefs_ and intercepts_ stack members that read the same inputs; these "
                "members drew different numeric_encoding/n_bins (member_params): use "
                "get_member_params(member).")
        if len(self._groups) != 1 or len(set(self.hidden_layer_sizes_)) != 1:
            raise AttributeError(
                "coefs_ and intercepts_ stack members of one architecture; this ensemble has "
                "several: use get_member_params(member)."
            )
        g = self._groups[0]
        flat = np.ascontiguousarray(g.flat[np.argsort(g.members)])
        return g.layout.views(torch.from_numpy(flat))

    @property
    def coefs_(self):
        """Per layer, weights of every member: ``(n_estimators, fan_in, fan_out)``."""
        return [W.numpy() for W, _ in self._stacked_layers()]

    @property
    def intercepts_(self):
        """Per layer, biases of every member: ``(n_estimators, fan_out)``."""
        return [b.numpy()[:, 0, :] for _, b in self._stacked_layers()]
