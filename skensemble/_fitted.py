"""The fitted state of an ensemble as one object, and what is read from it.

Owns :class:`FittedEnsemble`: everything a fit leaves behind (input transform, target
coding, member seeds and sampling plan, trained groups, history, ensemble weights,
out-of-bag results, how it trained), held by the estimators as ``_fitted``. The
scikit-learn-named fitted attributes (``loss_curve_``, ``ensemble_weights_``...) read
from it (:mod:`._attributes`), as LightGBM's estimators read their ``Booster``. Its
methods compute what is derived from the state: each member's rows and features
(recomputed from its seed), the columns members read, the members prediction runs,
one member's parameters.

Pure numpy and torch; must not train, validate user input or know about estimators.

Shape legend: E members, N training rows, k features one member reads, P parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from . import _engine, _history, _inputs, _sampling, _scaling, _tabular


@dataclass
class FittedEnsemble:
    """Everything one fit (or a warm start, or ``partial_fit`` calls) leaves behind.

    Attributes
    ----------
    schema : skensemble._tabular.Schema
        How raw columns become numeric values and categorical codes (missing values,
        levels).
    inputs : skensemble._scaling.InputTransform
        The input transform fitted on the training rows.
    bin_counts : list of int
        Every bin count the transform encodes (what members may read).
    targets : object
        The task's fitted target coding (:mod:`._tasks`): the class labels, or the
        regressor's standardisation.
    seeds : ndarray (E,) int64
        Each member's seed: its initial weights, rows, features, hold-out rows and drawn
        hyperparameters come from it.
    plan : skensemble._sampling.Plan
        How members sampled rows and features.
    groups : list of skensemble._groups.Group
        The trained members, in groups of one (padded) layout.
    archs : list of tuple
        Each member's hidden layers (``hidden_layer_sizes_``).
    history : skensemble._history.History
    features : ndarray (E, k) int64 or None
        Each member's features (None: all, in order).
    input_keys : ndarray (E,) int64 or None
        Each member's input key where members drew their encoding (``member_params``).
    member_params : list of dict or None
        Each member's drawn hyperparameters.
    sample_weight, stratify : ndarray (N,) or None
        What bootstrap draws and hold-outs were made with (to recompute them).
    partial_calls : int
        ``partial_fit`` calls since the last ``fit`` (their rows are not recomputed).
    early_stopping : bool
        Whether members stopped on validation rows.
    t : int
        Rows seen by the optimizer (scikit-learn's ``t_``).
    weights : ndarray (E,) float64
        Each member's weight in predictions (``ensemble_weights_``).
    selection_score, uniform_score : float or None
        Ensemble selection's scores (``ensemble_selection``).
    oob : dict or None
        The out-of-bag attributes by name (``oob_score_``...).
    engine, device : str or tuple of str
        What trained the members.
    report : skensemble._parallel.Report
        How the members were split over workers.
    hatching : skensemble._mothernets.Hatching or None
        What MotherNets training did (``init="mothernet"``).
    activation : str
        The hidden activation of groups without their own (the estimator's).
    """

    schema: _tabular.Schema
    inputs: _scaling.InputTransform
    bin_counts: list
    targets: object
    seeds: np.ndarray
    plan: _sampling.Plan
    groups: list
    archs: list
    history: _history.History
    features: np.ndarray = None
    input_keys: np.ndarray = None
    member_params: list = None
    sample_weight: np.ndarray = None
    stratify: np.ndarray = None
    partial_calls: int = 0
    early_stopping: bool = False
    t: int = 0
    weights: np.ndarray = None
    selection_score: float = None
    uniform_score: float = None
    oob: dict = None
    engine: object = None
    device: object = None
    report: object = None
    hatching: object = None
    activation: str = "relu"

    @property
    def n_members(self):
        return len(self.seeds)

    # ------------------------------------------------------------------ inputs
    def columns(self, features, members=None):
        """Input columns ``(E', width)`` the members (``members``; None: all) read, or None.

        ``features``: those members' feature subsets (or None). Members that drew their
        own ``numeric_encoding``/``n_bins`` read their own bins (``input_keys``).
        """
        keys = self.input_keys
        if keys is not None and members is not None:
            keys = keys[members]
        n = self.n_members if members is None else len(np.arange(self.n_members)[members])
        return self.inputs.columns(features, keys, n)

    @property
    def encoding(self):
        """The encoded space members' columns index (:class:`~skensemble._inputs.Encoding`)."""
        return _inputs.Encoding.of(self.inputs)

    def standardise(self, X):
        """Raw rows ``X`` (array or table) as the first layers read them: float32 ``(N, F)``."""
        return self.scaled(*self.schema.split(X))

    def scaled(self, A, codes=None):
        """Numeric values ``A (N, Fn)`` and codes ``(N, Fc)`` (:meth:`Schema.split`), scaled."""
        with np.errstate(over="ignore", invalid="ignore"):
            Xs = self.inputs.apply(A, codes)
        step = _scaling.chunk_rows(Xs.shape[1])  # checked in row chunks: no (N, F) mask
        if not all(np.isfinite(Xs[s : s + step]).all() for s in range(0, Xs.shape[0], step)):
            raise ValueError(
                "X has values too large for the network's float32 arithmetic after "
                "standardisation with the training data's mean and scale."
            )
        return Xs

    # --------------------------------------------------------------- sampling
    def draw_counts(self):
        """Each member's own number of rows (``member_params['max_samples']``), or None."""
        return draw_counts(self.member_params, self.plan)

    def member_draws(self):
        """Every member's rows, hold-out rows and features, recomputed from the seeds."""
        if self.partial_calls:
            raise AttributeError(
                "estimators_samples_ is not defined for ensembles trained by partial_fit.")
        return _sampling.member_samples(
            self.seeds, self.plan, self.sample_weight if self.plan.bootstrap else None,
            self.stratify, self.draw_counts())

    def validation_mask(self):
        """Boolean ``(E, N)``: the rows each member validates on.

        The rows it held out to stop on (``early_stopping`` without bootstrap, or with
        ``oob_score``), otherwise the rows it did not draw (out-of-bag).
        """
        rows, held, _ = self.member_draws()
        if held is not None:
            return _sampling.held_mask(held, self.plan.n_samples)
        return ~_sampling.in_bag_mask(rows, self.plan.n_samples)

    def in_ensemble(self):
        """Boolean ``(E,)``: the members that may weigh in (all but the pruned ones)."""
        reason = self.history.stop_reason
        if reason is None:
            return np.ones(self.n_members, dtype=bool)
        return np.asarray(reason) != "pruned"

    # ----------------------------------------------------------------- members
    def selected(self):
        """The members of positive ``weights``, as prediction runs them.

        Returns
        -------
        groups : list of Group
            The fitted groups cut to those members, renumbered ``0..E'-1`` in member
            order (all groups unchanged when every member weighs the same).
        columns : ndarray (E', width) or None
            The input columns they read (:meth:`columns`); None: every column.
        weights : ndarray (E',) float64 or None
            Their weights, summing to 1; None when every member weighs the same (the
            plain mean, computed exactly as without selection).
        """
        w = self.weights
        if w is None or np.all(w == w[0]):
            return self.groups, self.columns(self.features), None
        kept = np.flatnonzero(w > 0)  # (E',) sorted member positions
        groups = []
        for g in self.groups:
            keep = w[g.members] > 0  # (G,)
            if keep.any():
                groups.append(replace(g, members=np.searchsorted(kept, g.members[keep]),
                                      flat=g.flat[keep]))
        columns = self.columns(self.features)  # as wide as the widest group reads
        weights = w[kept]
        return groups, None if columns is None else columns[kept], weights / weights.sum()

    def member_width(self, member):
        """Inputs of one member's first layer (its own, where it drew its encoding)."""
        if self.input_keys is None:  # every member reads as many inputs
            return self.groups[0].sizes[0]
        k = None if self.features is None else self.features.shape[1]
        return self.inputs.n_inputs(k, int(self.input_keys[member]))

    def member_row(self, member):
        """Flat parameters ``(P_e,)`` of one member at its own architecture, and its sizes."""
        if not 0 <= member < self.n_members:
            raise IndexError(f"member={member} is out of range for {self.n_members} members.")
        sizes = (self.member_width(member), *self.archs[member], self.groups[0].sizes[-1])
        for g in self.groups:
            row = g.member_row(member, sizes)
            if row is not None:
                return row, sizes
        raise IndexError(f"member={member} is in no group.")  # pragma: no cover

    def member_layers(self, member):
        """One member's weights ``[(fan_in, fan_out)]`` and biases ``[(fan_out,)]``."""
        row, sizes = self.member_row(member)
        layers = _engine.Layout(sizes).views(torch.from_numpy(row[None]))
        return [W[0].numpy() for W, _ in layers], [b[0, 0].numpy() for _, b in layers]

    def stacked_layers(self):
        """Per layer, every member's ``(W (E, fan_in, fan_out), b (E, 1, fan_out))``.

        Only for members of one architecture that read the same inputs.
        """
        keys = self.input_keys
        if keys is not None and len(set(keys.tolist())) > 1:
            raise AttributeError(
                "coefs_ and intercepts_ stack members that read the same inputs; these "
                "members drew different numeric_encoding/n_bins (member_params): use "
                "get_member_params(member).")
        if len(self.groups) != 1 or len(set(self.archs)) != 1:
            raise AttributeError(
                "coefs_ and intercepts_ stack members of one architecture; this ensemble has "
                "several: use get_member_params(member)."
            )
        g = self.groups[0]
        flat = np.ascontiguousarray(g.flat[np.argsort(g.members)])
        return g.layout.views(torch.from_numpy(flat))


def draw_counts(member_params, plan):
    """Each member's own number of rows (``member_params['max_samples']``), or None."""
    if member_params is None or "max_samples" not in member_params[0]:
        return None
    return np.array([_sampling.count(p["max_samples"], plan.n_pool,
                                     "member_params['max_samples']")
                     for p in member_params], dtype=np.int64)
