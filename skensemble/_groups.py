"""Groups of members sharing one (padded) layout: building, cutting, padding and merging them.

Owns :class:`Group` (a group's weights, optimizer state and per-member values, as numpy
arrays), the initial parameters of new members, their grouping (one padded group per
depth, or one group per exact architecture), cutting a group into the members a chunk
trains and joining them back (:mod:`._parallel`), and the merging of new members into
fitted groups after a warm start. Pure numpy and torch; no training (:mod:`._training`
trains groups).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from . import _engine, _hetero
from ._hyperspace import GroupSettings


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
    vectors : dict of str to ndarray (E,) float64
        Each member's own value of a per-member quantity of the step, by the name of its
        :class:`skensemble._engine.Member` field: ``"lr"`` (its current learning rate,
        which schedules move; absent before training: the estimator's
        ``learning_rate_init``) and values that members drew (``member_params``); NaN
        marks "the estimator's value".
    settings : GroupSettings
        What the group's members share besides their layout (``member_params``'
        activation, label smoothing, weight decay; None fields: the estimator's).
    """

    members: np.ndarray
    sizes: tuple
    flat: np.ndarray
    opt_state: np.ndarray = None
    steps: np.ndarray = None
    vectors: dict = field(default_factory=dict)
    settings: GroupSettings = GroupSettings()

    @property
    def layout(self):
        """The group's :class:`~skensemble._engine.Layout`."""
        return _engine.Layout(self.sizes)

    def restarted(self):
        """The same weights with a new optimizer (a resumed fit, like scikit-learn's MLP).

        Drawn per-member values are kept; the learning rate starts again from them (or
        from the estimator's).
        """
        keep = {k: v for k, v in self.vectors.items() if k != "lr"}
        return Group(self.members, self.sizes, self.flat, vectors=keep, settings=self.settings)

    def take(self, idx):
        """The members ``idx`` (positions in this group): every per-member array cut."""
        E = len(self.members)
        if np.array_equal(idx, np.arange(E)):
            return self  # the whole group: no copy of its weights
        return replace(
            self, members=self.members[idx], flat=self.flat[idx],
            opt_state=None if self.opt_state is None else self.opt_state[:, idx],
            steps=None if self.steps is None else self.steps[idx],
            vectors={k: v[idx] for k, v in self.vectors.items()})

    def joined(self, parts):
        """The group with its members' state from ``parts = [(idx, trained piece)]``.

        ``idx`` are the positions in this group each piece holds; together they cover it.
        """
        order = np.concatenate([idx for idx, _ in parts])
        if len(parts) == 1 and np.array_equal(order, np.arange(len(self.members))):
            return parts[0][1]  # trained whole
        inverse = np.argsort(order)  # piece order -> the group's member order
        pieces = [p for _, p in parts]

        def cat(values, axis=0):
            if any(v is None for v in values):
                return None
            out = np.concatenate(values, axis)
            return out[:, inverse] if axis else out[inverse]

        return replace(
            pieces[0], members=self.members, sizes=self.sizes,
            flat=cat([p.flat for p in pieces]),
            opt_state=cat([p.opt_state for p in pieces], 1),
            steps=cat([p.steps for p in pieces]),
            vectors={k: cat([p.vectors[k] for p in pieces]) for k in pieces[0].vectors})

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


def make_groups(rows, archs, positions, n_in, n_out, activation, pad=True, settings=None):
    """Groups of members of equal depth, each padded to its widest member (``pad``).

    With ``pad=False`` one group per exact architecture instead: nothing is computed for
    padding units, at the price of one epoch loop per architecture (the CPU's choice,
    where a member-major kernel gains nothing from stacking members of other widths).
    With ``settings`` (each member's own :class:`GroupSettings`; ``member_params``)
    members of different settings never share a group, and each group records its own.
    ``n_in`` is one input width for all members or each member's own (members that drew
    their input encoding); the input width groups and pads like a hidden width.

    Parameters
    ----------
    rows : list of ndarray (P_e,)
        Initial parameters of each member at its own layout.
    archs : list of tuple
        Hidden widths of each member.
    positions : ndarray (E,) int64
        Each member's position in the ensemble.
    settings : list of GroupSettings or None

    Returns
    -------
    list of Group (without optimizer state)
    """
    groups = []
    grouping = _hetero.group_by_depth if pad else _hetero.group_by_architecture
    each = [GroupSettings()] * len(archs) if settings is None else list(settings)
    fan_in = _per_member(n_in, len(archs))
    for kind in dict.fromkeys(each):  # in first-seen order
        act = kind.activation or activation
        idx = np.array([i for i, k in enumerate(each) if k == kind], dtype=np.int64)
        for local, widths in grouping([(fan_in[i], *archs[i]) for i in idx]):
            local = idx[np.asarray(local)]
            sizes = (*widths, n_out)  # widths: the input width, then the hidden ones
            flat = np.concatenate([
                _hetero.pad_rows(rows[i][None], (fan_in[i], *archs[i], n_out), sizes, act)
                for i in local
            ])
            groups.append(Group(members=np.asarray(positions)[local], sizes=sizes, flat=flat,
                                settings=kind))
    return groups


def set_vectors(groups, vectors):
    """Give each group its members' drawn per-member values, in place.

    ``vectors``: ``{Member field: (E,) values of every member of the ensemble}``, indexed
    by member position (:func:`skensemble._hyperspace.vectors`).
    """
    for g in groups:
        for name, values in vectors.items():
            g.vectors[name] = np.asarray(values, dtype=np.float64)[g.members]


def merge_groups(old, new, activation, pad=True):
    """Groups after a warm start: each new group joins the old group of its depth, re-padded.

    With ``pad=False`` only a group of the very same layout is joined.
    """
    groups = [replace(g) for g in old]
    for g in new:
        same = [o for o in groups
                if o.settings == g.settings
                and (len(o.sizes) == len(g.sizes) if pad else o.sizes == g.sizes)]
        if not same:
            groups.append(g)
            continue
        o = same[0]
        sizes = tuple(max(a, b) for a, b in zip(o.sizes, g.sizes))
        act = o.settings.activation or activation

        def widen(grp):
            flat = _hetero.pad_rows(grp.flat, grp.sizes, sizes, act)
            state = np.stack([_hetero.pad_rows(s, grp.sizes, sizes, act, False)
                              for s in grp.opt_state])  # (S, E, P_padded)
            return flat, state

        (f_old, s_old), (f_new, s_new) = widen(o), widen(g)
        names = dict.fromkeys([*o.vectors, *g.vectors])  # a value one side lacks: NaN there
        o.vectors = {k: np.concatenate([_values(o, k), _values(g, k)]) for k in names}
        o.sizes = sizes
        o.members = np.concatenate([o.members, g.members])
        o.flat = np.concatenate([f_old, f_new])
        o.opt_state = np.concatenate([s_old, s_new], 1)
        o.steps = np.concatenate([o.steps, g.steps])
    return groups


def _values(group, name):
    """A group's per-member values of ``name``; NaN ("the estimator's") where it has none."""
    if name in group.vectors:
        return group.vectors[name]
    return np.full(len(group.members), np.nan)
