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

This is the same function as the materialized encoding of :meth:`._scaling.InputTransform
.columns`' column space (values, bins, a zero column), computed where it is needed: the
torch engines and predictions compute a batch's or chunk's inputs from ``Z`` (memory
bounded by the batch), and the member-major kernels exploit the structure. A value's
ramps over its feature's ``n`` bins are 1 for the bins below its bin ``j``, a fraction for
bin ``j`` and 0 above, so the first layer's product with them is a prefix sum of the bin
rows up to ``j`` plus the fraction times row ``j``: O(1) per feature instead of O(n)
(:attr:`FirstLayer.bin_row`, :attr:`FirstLayer.n_bins` describe each value's run of bin
rows for that).

Shape legend: E members, W first-layer inputs of the group, k values (rows 0..k-1 of
every member are its values), F columns of ``Z``, n rows, T bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Encoding:
    """The encoded column space ``columns`` index: ``F`` values, ``T`` bins, one zero column.

    Attributes
    ----------
    n_features : int
        F: the scaled values, columns ``0..F-1``.
    lo, inv : ndarray (T,) float64
        Start and inverse width of each bin (column ``F + t``).
    feature : ndarray (T,) int64
        The value each bin encodes.
    first, last : ndarray (T,) bool
        Whether a bin is its feature's first (open below) / last (open above).
    """

    n_features: int
    n_columns: int
    lo: np.ndarray
    inv: np.ndarray
    feature: np.ndarray
    first: np.ndarray
    last: np.ndarray

    @classmethod
    def plain(cls, n_features):
        """Columns that are the values themselves: no bins, no zero column."""
        empty = np.zeros(0)
        return cls(n_features, n_features, empty, empty, np.zeros(0, np.int64),
                   empty.astype(bool), empty.astype(bool))

    @classmethod
    def of(cls, transform):
        """The encoding of a fitted :class:`~skensemble._scaling.InputTransform`."""
        F = transform.mean.size
        if transform.lo is None:
            return cls.plain(F)
        return cls(F, transform.n_columns, np.asarray(transform.lo, np.float64),
                   np.asarray(transform.inv_width, np.float64),
                   np.asarray(transform.bin_feature, np.int64),
                   np.asarray(transform.first) > 0, np.asarray(transform.last) > 0)

    def first_layer(self, columns, n_members, width):
        """What ``n_members`` first layers of ``width`` inputs read (:class:`FirstLayer`).

        ``columns (E, w)``: each member's columns of the encoded space (w <= width; the
        rest pad), or None: every member reads every column in order. Returns None where
        members read ``Z`` itself (no bins, every column in order): no mapping at all.
        """
        F = self.n_features
        if columns is None:
            if self.n_columns == F and width == F:
                return None
            columns = np.tile(np.arange(self.n_columns), (n_members, 1))
        columns = np.asarray(columns, dtype=np.int64)
        E, w = columns.shape
        src = np.zeros((E, width), np.int64)
        lo = np.zeros((E, width))
        inv = np.zeros((E, width))
        low = np.zeros((E, width))
        high = np.zeros((E, width))
        c = columns
        value = c < F
        is_bin = (c >= F) & (c < F + self.lo.size)
        t = np.where(is_bin, c - F, 0)
        pick = (lambda a, fill: a[t] if a.size else np.full(t.shape, fill))  # noqa: E731
        src[:, :w] = np.where(value, c, np.where(is_bin, pick(self.feature, 0), 0))
        lo[:, :w] = np.where(is_bin, pick(self.lo, 0.0), 0.0)
        inv[:, :w] = np.where(value, 1.0, np.where(is_bin, pick(self.inv, 0.0), 0.0))
        low[:, :w] = np.where(value | (is_bin & pick(self.first, False)), -np.inf, 0.0)
        high[:, :w] = np.where(value | (is_bin & pick(self.last, False)), np.inf,
                               np.where(is_bin, 1.0, 0.0))
        # the values come first in every member's row (InputTransform.columns); each
        # value's bins follow in one run of ascending rows
        k = int(value.sum(1).max()) if value.size else 0
        if not np.all(value[:, :k]) or np.any(value[:, k:]):
            raise ValueError("first-layer columns must list the values first")
        bin_row = np.zeros((E, k), np.int64)
        n_bins = np.zeros((E, k), np.int64)
        for e in range(E):  # set-up: one short scan per member
            row = k
            for s in range(k):
                n = 0
                # the run: this value's bins in order, up to the next value's first bin
                while (row + n < w and is_bin[e, row + n]
                       and self.feature[t[e, row + n]] == c[e, s]
                       and (n == 0 or not self.first[t[e, row + n]])):
                    n += 1
                bin_row[e, s], n_bins[e, s] = row, n
                row += n
        return FirstLayer(src=src, lo=lo, inv=inv, low=low, high=high, k=k, bin_row=bin_row,
                          n_bins=n_bins)


@dataclass
class FirstLayer:
    """Per member, what each input of its first layer reads: ``clamp((Z[:, src] - lo) * inv)``.

    Arrays are numpy (host, float64) or torch tensors on a device (:meth:`to`).

    Attributes
    ----------
    src : (E, W) int64
        The column of ``Z`` each input reads.
    lo, inv, low, high : (E, W) float
        The affine map and clamp of each input (see the module docstring).
    k : int
        Inputs ``0..k-1`` of every member are values (``lo = 0``, ``inv = 1``, no clamp).
    bin_row, n_bins : (E, k) int64
        The run of bin rows of each value: ``n_bins`` rows from ``bin_row`` (0: none).
    """

    src: object
    lo: object
    inv: object
    low: object
    high: object
    k: int
    bin_row: object
    n_bins: object

    @property
    def width(self):
        return self.src.shape[1]

    def to(self, device, dtype=torch.float32):
        """The same as tensors on ``device`` (floats as ``dtype``)."""
        def t(a, dt):
            return a.to(device, dt) if torch.is_tensor(a) else torch.as_tensor(
                np.ascontiguousarray(a)).to(device, dt)

        return FirstLayer(src=t(self.src, torch.int64), lo=t(self.lo, dtype),
                          inv=t(self.inv, dtype), low=t(self.low, dtype),
                          high=t(self.high, dtype), k=self.k,
                          bin_row=t(self.bin_row, torch.int64),
                          n_bins=t(self.n_bins, torch.int64))

    def take(self, idx):
        """The members ``idx``."""
        def cut(a):
            out = a[idx]
            return out.contiguous() if torch.is_tensor(out) else np.ascontiguousarray(out)

        return FirstLayer(src=cut(self.src), lo=cut(self.lo), inv=cut(self.inv),
                          low=cut(self.low), high=cut(self.high), k=self.k,
                          bin_row=cut(self.bin_row), n_bins=cut(self.n_bins))

    def narrowed(self, width):
        """The first ``width`` inputs (a group whose members read fewer than the widest)."""
        if width == self.width:
            return self
        if width < self.k:
            raise ValueError(f"a first layer of {width} inputs cannot read {self.k} values")
        return FirstLayer(src=self.src[:, :width], lo=self.lo[:, :width],
                          inv=self.inv[:, :width], low=self.low[:, :width],
                          high=self.high[:, :width], k=self.k, bin_row=self.bin_row,
                          n_bins=self.n_bins)

    def apply(self, x):
        """Inputs ``(E, n, W)`` from each member's gathered columns ``x (E, n, W)``."""
        return torch.maximum(torch.minimum((x - self.lo[:, None]) * self.inv[:, None],
                                           self.high[:, None]), self.low[:, None])


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
