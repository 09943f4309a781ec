"""Ensembles of different architectures: grouping members and padding them exactly.

Members of the same depth form one group, trained as one stacked computation; within a
group each hidden layer is as wide as its widest member, and narrower members are
padded with *inert* units:

- incoming weights, outgoing weights and bias zero, so the unit's pre-activation is 0
  and it contributes nothing downstream;
- for ``logistic`` (whose value at 0 is 0.5) the bias is :data:`DEAD_BIAS` instead, so
  the unit outputs exactly 0 in float32 and its derivative ``a (1 - a)`` is exactly 0.

Every gradient that touches an inert unit is then exactly zero (its outgoing weights
see ``a = 0``; its incoming weights see an error multiplied by a zero outgoing weight
or a zero derivative), L2 keeps zero weights at zero, and adam/sgd move nothing whose
gradient and state are zero. So padding is exact through training in every engine,
with no masks and no change to the kernels. Members of different depths go to
different groups: an identity layer is not inert for tanh or logistic.

Owns the architecture list, grouping by depth and padding/unpadding of flat rows
(numpy). Must not train or hold training state (groups as trained live in
:mod:`._training`).
"""

import numpy as np

from ._engine import Layout

DEAD_BIAS = -1.0e4  # sigmoid(-1e4) == 0.0 exactly in float32 and float64


def member_architectures(hidden_layer_sizes, n_estimators):
    """One hidden-layer tuple per member.

    An int or a flat sequence of ints is one architecture for every member (scikit-
    learn's meaning); a sequence of tuples gives one per member, cycled.

    Returns
    -------
    list of tuple of int, length ``n_estimators``
    """
    def as_arch(value):
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            value = (value,)
        try:
            arch = tuple(value)
        except TypeError:
            arch = None
        if arch is None or not all(
            isinstance(w, (int, np.integer)) and not isinstance(w, bool) for w in arch
        ):
            raise ValueError(
                "hidden_layer_sizes must be an int, a sequence of ints (one architecture), "
                f"or a sequence of tuples (one per member, cycled); got {hidden_layer_sizes!r}."
            )
        if any(w < 1 for w in arch):
            raise ValueError(f"hidden_layer_sizes must be positive widths, got {arch}.")
        return tuple(int(w) for w in arch)

    items = hidden_layer_sizes
    if isinstance(items, (list, tuple)) and items and all(
        isinstance(v, (list, tuple)) for v in items
    ):
        archs = [as_arch(v) for v in items]
        return [archs[e % len(archs)] for e in range(n_estimators)]
    return [as_arch(items)] * n_estimators


def group_by_architecture(archs):
    """Members grouped by exact architecture, in order of first appearance (no padding).

    Returns
    -------
    list of (members (G,) int64, hidden widths tuple)
    """
    groups = {}
    for e, arch in enumerate(archs):
        groups.setdefault(tuple(int(h) for h in arch), []).append(e)
    return [(np.asarray(members, dtype=np.int64), arch) for arch, members in groups.items()]


def group_by_depth(archs):
    """Members grouped by depth, in order of first appearance.

    Returns
    -------
    list of (members (G,) int64, padded hidden widths tuple)
    """
    groups = {}
    for e, arch in enumerate(archs):
        groups.setdefault(len(arch), []).append(e)
    out = []
    for members in groups.values():
        depth = len(archs[members[0]])
        widths = tuple(int(max(archs[e][i] for e in members)) for i in range(depth))
        out.append((np.asarray(members, dtype=np.int64), widths))
    return out


def pad_rows(rows, sizes, padded_sizes, activation, fill_bias=True):
    """Embed flat rows of layout ``sizes`` into the wider layout ``padded_sizes``.

    Parameters
    ----------
    rows : ndarray (E, P)
        Parameters (or optimizer state) of members with layout ``sizes``.
    sizes, padded_sizes : tuple
        Full layouts ``(F, H..., O)`` of equal depth, ``padded >= sizes`` elementwise.
    fill_bias : bool
        Whether inert hidden units get :data:`DEAD_BIAS` (parameters of logistic nets);
        optimizer state is padded with zeros.

    Returns
    -------
    ndarray (E, P_padded)
    """
    src, dst = Layout(sizes), Layout(padded_sizes)
    out = np.zeros((rows.shape[0], dst.n_params), dtype=rows.dtype)
    n_layers = src.n_layers
    for i in range(n_layers):
        fi, fo = sizes[i], sizes[i + 1]
        Fi, Fo = padded_sizes[i], padded_sizes[i + 1]
        sw, sb, _ = src.offsets[i]
        dw, db, _ = dst.offsets[i]
        W = rows[:, sw:sb].reshape(-1, fi, fo)  # (E, fi, fo)
        Wp = np.zeros((rows.shape[0], Fi, Fo), dtype=rows.dtype)
        Wp[:, :fi, :fo] = W
        out[:, dw:db] = Wp.reshape(rows.shape[0], -1)
        bias = np.zeros((rows.shape[0], Fo), dtype=rows.dtype)
        if fill_bias and activation == "logistic" and i < n_layers - 1:
            bias[:, fo:] = DEAD_BIAS
        bias[:, :fo] = rows[:, sb : sb + fo]
        out[:, db : db + Fo] = bias
    return out


def unpad_row(row, padded_sizes, sizes):
    """The parameters of one member of layout ``sizes`` out of its padded row ``(P_padded,)``."""
    src, dst = Layout(padded_sizes), Layout(sizes)
    out = np.empty(dst.n_params, dtype=row.dtype)
    for i in range(dst.n_layers):
        fi, fo = sizes[i], sizes[i + 1]
        Fi, Fo = padded_sizes[i], padded_sizes[i + 1]
        sw, sb, _ = src.offsets[i]
        dw, db, de = dst.offsets[i]
        out[dw:db] = row[sw:sb].reshape(Fi, Fo)[:fi, :fo].ravel()
        out[db:de] = row[sb : sb + fo]
    return out
