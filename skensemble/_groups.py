"""Groups of members sharing one (padded) layout: building, padding and merging them.

Owns :class:`Group` (a group's weights and optimizer state, as numpy arrays), the initial
parameters of new members, their grouping (one padded group per depth, or one group per
exact architecture) and the merging of new members into fitted groups after a warm
start. Pure numpy and torch; no training (:mod:`._training` trains groups).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from . import _engine, _hetero


@dataclass
class Group:
    """Members sharing one (padded) layout, and their training state, as numpy arrays.

    Attributes
    ----------
    members : ndarray (E,) int64
        Positions of the group's members in the ensemble.
    sizes : tuple of int
        Padded layout ``(F or k, H_1, ..., O)``.
    flat : ndarray (E, P) float32
        Parameters.
    opt_state : ndarray (S, E, P) float32 or None
        Optimizer state; None starts a new optimizer.
    steps : ndarray (E,) int64 or None
        Optimizer steps taken by each member.
    lr : ndarray (E,) float64 or None
        Each member's current learning rate (the adaptive schedule lowers it).
    alpha : ndarray (E,) float64 or None
        Each member's own L2 strength (``member_params``); None: the estimator's alpha.
    activation : str or None
        The group's own activation (``member_params``); None: the estimator's.
    label_smoothing : float or None
        The group's own label smoothing (``member_params``, classification); None: the
        estimator's.
    weight_decay : float or None
        The group's own decoupled weight decay (``member_params``); None: the estimator's.
    """

    members: np.ndarray
    sizes: tuple
    flat: np.ndarray
    opt_state: np.ndarray = None
    steps: np.ndarray = None
    lr: np.ndarray = None
    alpha: np.ndarray = None
    activation: str = None
    label_smoothing: float = None
    weight_decay: float = None

    @property
    def layout(self):
        """The group's :class:`~skensemble._engine.Layout`."""
        return _engine.Layout(self.sizes)

    def restarted(self):
        """The same weights with a new optimizer (a resumed fit, like scikit-learn's MLP)."""
        return Group(self.members, self.sizes, self.flat, alpha=self.alpha,
                     activation=self.activation, label_smoothing=self.label_smoothing,
                     weight_decay=self.weight_decay)

    def member_row(self, member, sizes):
        """Flat parameters ``(P_e,)`` of ``member`` at its own layout ``sizes``, or None."""
        pos = np.flatnonzero(self.members == member)
        if not pos.size:
            return None
        return _hetero.unpad_row(self.flat[pos[0]], self.sizes, sizes)


def _per_member(n_in, n):
    """``n_in`` (one for all members, or each member's own) as a list of ``n`` ints."""
    return [int(n_in)] * n if np.ndim(n_in) == 0 else [int(v) for v in n_in]


def random_rows(archs, init_seeds, n_in, n_out, activation):
    """Glorot initial parameters of each member at its own layout: list of ``(P_e,)`` arrays.

    ``n_in`` and ``activation``: one for all members, or a list of each member's own.
    """
    acts = [activation] * len(archs) if isinstance(activation, str) else activation
    return [
        _engine.init_parameters(_engine.Layout((fan_in, *arch, n_out)), [seed], act)[0]
        .numpy()
        for arch, seed, act, fan_in in zip(archs, init_seeds, acts,
                                           _per_member(n_in, len(archs)))
    ]  # set-up: a small draw each


def make_groups(rows, archs, positions, n_in, n_out, activation, pad=True, kinds=None):
    """Groups of members of equal depth, each padded to its widest member (``pad``).

    With ``pad=False`` one group per exact architecture instead: nothing is computed for
    padding units, at the price of one epoch loop per architecture (the CPU's choice,
    where a member-major kernel gains nothing from stacking members of other widths).
    With ``kinds`` (each member's own ``(activation, label_smoothing, weight_decay)``,
    each None for the estimator's; ``member_params``) members of different kinds never
    share a group, and each group records its own. ``n_in`` is one input width for all
    members or each member's own (members that drew their input encoding); the input
    width groups and pads like a hidden width.

    Parameters
    ----------
    rows : list of ndarray (P_e,)
        Initial parameters of each member at its own layout.
    archs : list of tuple
        Hidden widths of each member.
    positions : ndarray (E,) int64
        Each member's position in the ensemble.

    Returns
    -------
    list of Group (without optimizer state)
    """
    groups = []
    grouping = _hetero.group_by_depth if pad else _hetero.group_by_architecture
    each = [(None, None, None)] * len(archs) if kinds is None else [tuple(k) for k in kinds]
    fan_in = _per_member(n_in, len(archs))
    for kind in dict.fromkeys(each):  # in first-seen order
        act = kind[0] or activation
        idx = np.array([i for i, k in enumerate(each) if k == kind], dtype=np.int64)
        for local, widths in grouping([(fan_in[i], *archs[i]) for i in idx]):
            local = idx[np.asarray(local)]
            sizes = (*widths, n_out)  # widths: the input width, then the hidden ones
            flat = np.concatenate([
                _hetero.pad_rows(rows[i][None], (fan_in[i], *archs[i], n_out), sizes, act)
                for i in local
            ])
            groups.append(Group(members=np.asarray(positions)[local], sizes=sizes, flat=flat,
                                activation=kind[0], label_smoothing=kind[1],
                                weight_decay=kind[2]))
    return groups


def merge_groups(old, new, activation, pad=True):
    """Groups after a warm start: each new group joins the old group of its depth, re-padded.

    With ``pad=False`` only a group of the very same layout is joined.
    """
    groups = [replace(g) for g in old]
    for g in new:
        same = [o for o in groups
                if _kind(o) == _kind(g)
                and (len(o.sizes) == len(g.sizes) if pad else o.sizes == g.sizes)]
        if not same:
            groups.append(g)
            continue
        o = same[0]
        sizes = tuple(max(a, b) for a, b in zip(o.sizes, g.sizes))

        act = o.activation or activation

        def widen(grp):
            flat = _hetero.pad_rows(grp.flat, grp.sizes, sizes, act)
            state = np.stack([_hetero.pad_rows(s, grp.sizes, sizes, act, False)
                              for s in grp.opt_state])  # (S, E, P_padded)
            return flat, state

        (f_old, s_old), (f_new, s_new) = widen(o), widen(g)
        o.sizes = sizes
        o.members = np.concatenate([o.members, g.members])
        o.flat = np.concatenate([f_old, f_new])
        o.opt_state = np.concatenate([s_old, s_new], 1)
        o.steps = np.concatenate([o.steps, g.steps])
        o.lr = np.concatenate([o.lr, g.lr])
        if o.alpha is not None or g.alpha is not None:
            o.alpha = np.concatenate([_alphas(o), _alphas(g)])
    return groups


def _kind(group):
    """What members must share to share a group, besides depth or layout."""
    return group.activation, group.label_smoothing, group.weight_decay


def _alphas(group):
    """A group's per-member L2 strengths; NaN marks "the estimator's alpha"."""
    if group.alpha is not None:
        return group.alpha
    return np.full(len(group.members), np.nan)
