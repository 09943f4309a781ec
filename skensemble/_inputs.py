"""What each member's first layer reads: the scaled columns, and their bins, never materialized.

The input transform (:mod:`._scaling`) maps raw rows to their scaled values ``Z (N, F)``
(float32, the one copy of the training data a fit keeps). The piecewise-linear encoding
of a value over its feature's quantile bins is *not* stored: each member's first layer
reads, per input row ``r`` of its weight matrix, one column ``src[r]`` of ``Z`` and maps it
by ``clamp((z - lo[r]) * inv[r], low[r], high[r])``:

- a value row: ``lo = 0``, ``inv = 1``, no clamp (the value itself);
- a bin row: the ramp of that bin, clamped to [0, 1], except that a feature's first bin
  extends below (``low = -inf``) and its last above (``high = inf``);
- a padding row (a member whose inputs are narrower than its group's): ``inv = 0``, so 0.

Categorical features reach the first layer as one input per level (a one-hot, ``code``).
This is the same function as the materialized encoding of :meth:`._scaling.InputTransform
.columns`' column space (values, bins, levels, a zero column), computed where needed: the
torch engines and predictions compute a batch's or chunk's inputs from ``Z`` (memory
bounded by the batch), and the member-major kernels exploit the structure. A value's
ramps over its feature's ``n`` bins are 1 for the bins below its bin ``j``, a fraction for
bin ``j`` and 0 above, so the first layer's product with them is a prefix sum of the bin
rows up to ``j`` plus the fraction times row ``j``: O(1) per feature instead of O(n); a
level's one-hot reads one row (:attr:`FirstLayer.run_row`, :attr:`FirstLayer.run_n`
describe each feature's run of bin or level rows for that).

Shape legend: E members, W first-layer inputs of the group, S features one member reads
(its slots), F columns of ``Z``, n rows, T bins, L levels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Encoding:
    """The encoded column space ``columns`` index: values, bins, levels, one zero column.

    Columns ``0..F-1`` are the features' values (``Z``'s columns: numeric ones scaled,
    categorical ones as codes, which no first layer reads as numbers), then ``T`` bins,
    then one column per level of each categorical feature (a one-hot), then zeros.

    Attributes
    ----------
    n_features, n_numeric : int
        F features, of which the first Fn are numeric.
    n_columns : int
        Columns of the space (F where it has no bins and no levels).
    lo, inv : ndarray (T,) float64
        Start and inverse width of each bin.
    feature : ndarray (T,) int64
        The value each bin encodes.
    first, last : ndarray (T,) bool
        Whether a bin is its feature's first (open below) / last (open above).
    level_feature, level_code : ndarray (L,) int64
        The categorical feature and the code of each level column.
    """

    n_features: int
    n_columns: int
    lo: np.ndarray
    inv: np.ndarray
    feature: np.ndarray
    first: np.ndarray
    last: np.ndarray
    n_numeric: int = None
    level_feature: np.ndarray = None
    level_code: np.ndarray = None

    @classmethod
    def plain(cls, n_features):
        """Columns that are the values themselves: no bins, no levels, no zero column."""
        empty = np.zeros(0)
        return cls(n_features, n_features, empty, empty, np.zeros(0, np.int64),
                   empty.astype(bool), empty.astype(bool), n_features)

    @classmethod
    def of(cls, transform):
        """The encoding of a fitted :class:`~skensemble._scaling.InputTransform`."""
        F, Fn = transform.n_features, transform.n_numeric
        if transform.levels is None:
            lf = lc = np.zeros(0, np.int64)
        else:
            lf = np.repeat(np.arange(Fn, F), transform.levels)
            lc = np.concatenate([np.arange(m) for m in transform.levels]).astype(np.int64)
        if transform.lo is None:
            empty = np.zeros(0)
            return cls(F, transform.n_columns, empty, empty, np.zeros(0, np.int64),
                       empty.astype(bool), empty.astype(bool), Fn, lf, lc)
        return cls(F, transform.n_columns, np.asarray(transform.lo, np.float64),
                   np.asarray(transform.inv_width, np.float64),
                   np.asarray(transform.bin_feature, np.int64),
                   np.asarray(transform.first) > 0, np.asarray(transform.last) > 0, Fn,
                   lf, lc)

    def first_layer(self, columns, n_members, width):
        """What ``n_members`` first layers of ``width`` inputs read (:class:`FirstLayer`).

        ``columns (E, w)``: each member's columns of the encoded space (w <= width; the
        rest pad), or None: every member reads every column in order. Returns None where
        members read ``Z`` itself (values only, every column in order): no map at all.
        """
        F = self.n_features
        Fn = F if self.n_numeric is None else self.n_numeric
        T = self.lo.size
        lf = np.zeros(0, np.int64) if self.level_feature is None else self.level_feature
        lc = np.zeros(0, np.int64) if self.level_code is None else self.level_code
        if columns is None:
            if self.n_columns == F and width == F:
                return None
            columns = np.tile(np.arange(self.n_columns), (n_members, 1))
        c = np.asarray(columns, dtype=np.int64)
        E, w = c.shape
        value = c < F
        if np.any(value & (c >= Fn)):
            raise ValueError("a first layer cannot read a categorical feature's codes")
        is_bin = (c >= F) & (c < F + T)
        is_level = (c >= F + T) & (c < F + T + lf.size)
        t = np.where(is_bin, c - F, 0)
        lv = np.where(is_level, c - F - T, 0)

        def pick(a, idx, fill):
            return a[idx] if a.size else np.full(idx.shape, fill)

        src = np.zeros((E, width), np.int64)
        lo, inv, low, high = (np.zeros((E, width)) for _ in range(4))
        code = np.full((E, width), -1.0)
        src[:, :w] = np.where(value, c, np.where(
            is_bin, pick(self.feature, t, 0), np.where(is_level, pick(lf, lv, 0), 0)))
        lo[:, :w] = np.where(is_bin, pick(self.lo, t, 0.0), 0.0)
        inv[:, :w] = np.where(value, 1.0, np.where(is_bin, pick(self.inv, t, 0.0), 0.0))
        low[:, :w] = np.where(value | (is_bin & pick(self.first, t, False)), -np.inf, 0.0)
        high[:, :w] = np.where(value | (is_bin & pick(self.last, t, False)), np.inf,
                               np.where(is_bin, 1.0, 0.0))
        code[:, :w] = np.where(is_level, pick(lc, lv, 0), -1.0)
        slots = [self._slots(c[e], value[e], is_bin[e], is_level[e], t[e], lv[e], lf, lc)
                 for e in range(E)]  # set-up: one short scan per member
        S = {len(x) for x in slots}
        if len(S) > 1:
            raise ValueError("every member of a group must read as many features")
        arr = np.array(slots, dtype=np.int64).reshape(E, -1, 4)  # (E, S, 4)
        return FirstLayer(src=src, lo=lo, inv=inv, low=low, high=high, code=code,
                          slot_src=arr[..., 0].copy(), value_row=arr[..., 1].copy(),
                          run_row=arr[..., 2].copy(), run_n=arr[..., 3].copy(),
                          one_hot=bool(is_level.any()))

    def _slots(self, c, value, is_bin, is_level, t, lv, lf, lc):
        """One member's features in the order it reads them: (column, value row, run, n).

        Its values come first (one row each); each numeric value's bins follow later in
        one run of ascending rows (up to the next value's first bin), each categorical
        feature's levels in one run from code 0; padding ends the row.
        """
        w = c.size
        k = int(value.sum())
        if not np.all(value[:k]) or np.any(value[k:]):
            raise ValueError("first-layer columns must list the values first")
        slots = [[int(c[s]), s, 0, 0] for s in range(k)]
        row = k
        while row < w and (is_bin[row] or is_level[row]):
            n = 1
            if is_bin[row]:
                f = int(self.feature[t[row]])
                while (row + n < w and is_bin[row + n] and self.feature[t[row + n]] == f
                       and not self.first[t[row + n]]):
                    n += 1
                slot = next(x for x in slots if x[0] == f and x[1] >= 0 and x[3] == 0)
                slot[2], slot[3] = row, n
            else:
                f = int(lf[lv[row]])
                while (row + n < w and is_level[row + n] and lf[lv[row + n]] == f
                       and lc[lv[row + n]] == lc[lv[row + n - 1]] + 1):
                    n += 1
                slots.append([f, -1, row, n])
            row += n
        return slots


@dataclass
class FirstLayer:
    """Per member, what each input of its first layer reads, and the features behind them.

    Arrays are numpy (host, float64) or torch tensors on a device (:meth:`to`). Input ``r``
    of member ``e`` is ``clamp((Z[:, src] - lo) * inv, low, high)``, or, where ``code >=
    0``, the one-hot ``Z[:, src] == code`` (a categorical feature's level).

    Attributes
    ----------
    src : (E, W) int64
        The column of ``Z`` each input reads.
    lo, inv, low, high : (E, W) float
        The affine map and clamp of each input (see the module docstring).
    code : (E, W) float
        The level of a one-hot input, -1 elsewhere.
    slot_src, value_row, run_row, run_n : (E, S) int64
        The S features each member reads (its slots): their column of ``Z``, the row of
        their value (-1 for a categorical feature), and their run of bin rows (numeric) or
        level rows (categorical): ``run_n`` rows from ``run_row`` (0: none).
    one_hot : bool
        Whether some input is a one-hot (``code >= 0`` somewhere), known when the map is
        made: a forward pass never asks the device.
    """

    src: object
    lo: object
    inv: object
    low: object
    high: object
    code: object
    slot_src: object
    value_row: object
    run_row: object
    run_n: object
    one_hot: bool = False

    _FIELDS = ("src", "lo", "inv", "low", "high", "code", "slot_src", "value_row", "run_row",
               "run_n")
    _INT = ("src", "slot_src", "value_row", "run_row", "run_n")

    @property
    def width(self):
        return self.src.shape[1]

    @property
    def has_runs(self):
        """Whether some member reads bins or levels (the structured kernels' case)."""
        return bool((self.run_n > 0).any())

    def _map(self, fn):
        return FirstLayer(**{f: fn(f, getattr(self, f)) for f in self._FIELDS},
                          one_hot=self.one_hot)

    def to(self, device, dtype=torch.float32):
        """The same as tensors on ``device`` (floats as ``dtype``)."""
        def t(name, a):
            dt = torch.int64 if name in self._INT else dtype
            return a.to(device, dt) if torch.is_tensor(a) else torch.as_tensor(
                np.ascontiguousarray(a)).to(device, dt)

        return self._map(t)

    def take(self, idx):
        """The members ``idx``."""
        def cut(name, a):
            out = a[idx]
            return out.contiguous() if torch.is_tensor(out) else np.ascontiguousarray(out)

        return self._map(cut)

    def narrowed(self, width):
        """The first ``width`` inputs (a group whose members read fewer than the widest)."""
        if width == self.width:
            return self

        def cut(name, a):
            return a if name.startswith("slot") or name in ("value_row", "run_row",
                                                            "run_n") else a[:, :width]

        return self._map(cut)

    def apply(self, x):
        """Inputs ``(E, n, W)`` from each member's gathered columns ``x (E, n, W)``."""
        ramp = torch.maximum(torch.minimum((x - self.lo[:, None]) * self.inv[:, None],
                                           self.high[:, None]), self.low[:, None])
        if not self.one_hot:
            return ramp
        code = self.code[:, None]
        return torch.where(code >= 0, (x == code).to(ramp.dtype), ramp)


def member_inputs(X, idx, first):
    """Each member's first-layer inputs on its rows: ``X (N, F)``, ``idx (E, b)`` -> ``(E, b, W)``.

    ``first`` None: ``X``'s rows themselves (every member reads every column in order).
    """
    if first is None:
        return X[idx]  # (E, b, F)
    x = X[idx.unsqueeze(-1), first.src.unsqueeze(1)]  # (E, b, 1) x (E, 1, W) -> (E, b, W)
    return first.apply(x)


def shared_inputs(X, first):
    """Every member's first-layer inputs on the same rows ``X (n, F)``: ``(E, n, W)`` or ``X``.

    With ``first`` None the rows themselves ``(n, F)``, shared by all members.
    """
    if first is None:
        return X
    x = X[:, first.src].permute(1, 0, 2)  # (n, E, W) -> (E, n, W)
    return first.apply(x)
