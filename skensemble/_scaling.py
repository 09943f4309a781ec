"""Input and target scaling: weighted, unit-safe standardisation and the float32 copy.

Owns: the column statistics of a fit (under ``sample_weight``), the input transform
(standardisation, robust scaling with smooth clipping, the quantile bins of the
piecewise-linear encoding) and the one float32 copy of the scaled values that the
engines read. The encoding itself is never materialized here: the first layers compute
it from the scaled values (:mod:`._inputs`). Must not validate user input (the facade
does) nor know about members, devices or engines.
"""

from dataclasses import dataclass

import numpy as np
import torch

from ._predict import trim_heap

CHUNK = 65536  # rows per pass over big arrays: temporaries stay small ...
CHUNK_CELLS = 1 << 20  # ... and at most this many values, for wide arrays (8 MB in float64)


def chunk_rows(width):
    """Rows per pass over an array ``width`` values wide (:data:`CHUNK`, fewer when wide)."""
    return int(min(CHUNK, max(1024, CHUNK_CELLS // max(int(width), 1))))


def weighted_standardisation(A, weight):
    """Column means, scales and units of ``A (N, D)`` under row weights (None: equal).

    Standardised values are ``(A / unit - mean / unit) / (scale / unit)``. Working in
    units of each column's largest magnitude keeps every intermediate finite for values
    up to float64's limits, and keeps tiny columns (1e-30) from underflowing. Passes in
    row chunks, so no temporary of ``A``'s size is made. Rows of weight zero are skipped.

    A column whose spread is below 1e-12 of its magnitude is constant up to rounding:
    it gets its magnitude as scale, so what remains after centring is ~1e-12 or less
    instead of rounding noise blown up to signal.

    Returns
    -------
    mean, scale, unit : ndarray (D,)
    constant : ndarray (D,) bool
    """
    n = A.shape[0]
    w = np.ones(n) if weight is None else np.asarray(weight, dtype=np.float64)
    total = w.sum()

    step = chunk_rows(A.shape[1])

    def chunks():  # rows that carry weight, in chunks: the others have no say at all
        for s in range(0, n, step):
            keep = w[s : s + step] > 0
            yield A[s : s + step][keep], w[s : s + step][keep]

    unit = np.zeros(A.shape[1])
    for part, _ in chunks():
        if part.size:
            unit = np.maximum(unit, np.abs(part).max(axis=0))
    unit = np.where(unit > 0, unit, 1.0)
    mean_u = np.zeros(A.shape[1])
    for part, wp in chunks():
        mean_u += wp @ (part / unit)
    mean_u /= total
    var_u = np.zeros(A.shape[1])
    for part, wp in chunks():
        d = part / unit - mean_u
        var_u += wp @ (d * d)
    std_u = np.sqrt(var_u / total)
    constant = std_u <= 1e-12
    scale_u = np.where(constant, 1.0, std_u)
    return mean_u * unit, scale_u * unit, unit, constant


# ----------------------------------------------------------------- input transform
QUANTILE_ROWS = 200_000  # rows that quantiles are estimated from, at most
QUANTILE_CELLS = 4_000_000  # values of the sample read at once (a block of its columns)
CLIP = 3.0  # smooth clipping: z / sqrt(1 + (z / CLIP)^2) stays within (-CLIP, CLIP)
# From this many training rows on, robust scaling compresses the tails as
# CLIP * asinh(z / CLIP) instead (slope 1 at 0, logarithmic beyond +-CLIP): values far out
# keep their order and their distances' logarithm, where the smooth clipping saturates. On
# the 262K-row flights set of benchmarks/bench_scale.py it cut the RMSE from 0.410 to
# 0.363; below 40K rows the tuning half of benchmarks/bench_quality.py ranked the
# saturating clip ahead (benchmarks/results/quality_ablation_clip.json).
ASINH_ROWS = 40_000
# Below ASINH_ROWS, a feature whose long tail holds at least this share of the rows (robust
# scaled values beyond +-CLIP, where the smooth clipping saturates) can take the asinh
# tails too (a normal feature has 0.3% of its rows there, an exponential one 4%). Off:
# at 0.05 it cut the RMSE on bench_scale's flights at 10,000 rows (departure delays, 12%
# of them that far out) from 0.4687 to 0.4199 with every feature's tails in asinh, but on
# the tuning half of bench_quality.py it ranked 1.54 against the clipping's 1.46
# (benchmarks/results/quality_ablation_tails.json; ablate_tails.py TAILS=long_tails).
TAIL_SHARE = float("inf")


def weighted_quantiles(Z, weight, qs, presorted=None, order=None):
    """Quantiles ``qs`` of every column of ``Z (N, D)`` under row weights: ``(len(qs), D)``.

    Rows of weight zero are ignored; None weighs rows equally. The quantile is the
    linear interpolation of the weighted empirical CDF at the midpoints of each row's
    weight (for equal weights: numpy's "hazen" quantiles). ``presorted``: ``Z`` sorted
    along each column, where the caller has it (equal weights only); ``order``: the
    argsort of the weighted rows of a column-wise monotone function of ``Z`` (weights).
    """
    if weight is None:  # equal weights: the sorted values suffice (no argsort)
        Zs = np.sort(Z, axis=0) if presorted is None else presorted
        n = Zs.shape[0]
        cum = (np.cumsum(np.ones(n)) - 0.5) / n  # as the weighted path computes it
        out = np.empty((len(qs), Z.shape[1]))
        for d in range(Z.shape[1]):  # set-up: one interpolation per column
            out[:, d] = np.interp(qs, cum, Zs[:, d])
        return out
    w = np.asarray(weight, dtype=np.float64)
    keep = w > 0
    Z, w = Z[keep], w[keep]
    if order is None:
        order = np.argsort(Z, axis=0, kind="stable")  # (N, D)
    Zs = np.take_along_axis(Z, order, axis=0)
    ws = w[order]  # (N, D)
    cum = np.cumsum(ws, axis=0)  # (N, D), each column summed in row order
    total = cum[-1].copy()  # each column's total, summed in that order whatever D is
    cum -= 0.5 * ws  # midpoint of each row's weight
    cum /= total
    out = np.empty((len(qs), Z.shape[1]))
    for d in range(Z.shape[1]):  # set-up: one interpolation per column
        out[:, d] = np.interp(qs, cum[:, d], Zs[:, d])
    return out


@dataclass
class InputTransform:
    """The fitted map from raw inputs to the columns the members read.

    Always a unit-safe standardisation (:func:`weighted_standardisation`); then, with
    ``center``/``spread``, robust scaling with smooth clipping (median and interquartile
    range, then ``r / sqrt(1 + (r / 3)^2)``: heavy tails and outliers stop dominating);
    then, with ``lo``/``inv_width``, a piecewise-linear encoding of each feature over
    its quantile bins (Gorishniy et al., NeurIPS 2022), after the values themselves.
    Only features with at least 3 distinct values get bins (a binary feature's bin
    would repeat its value); one all-zero column ends the encoded matrix, so that
    members whose features have fewer bins can pad their column lists with it (a zero
    input is inert). Several bin counts can be encoded side by side (members that drew
    their own ``n_bins``): each count's bins form one set, and a member reads the bins
    of its own set only (its *input key*: its bin count, or 0 for no encoding).

    Categorical features (``levels``: :mod:`._tabular`) follow the ``Fn`` numeric ones;
    their values are codes, which no first layer reads as numbers: each level is one
    column of the encoded space (a one-hot), after the bins.

    The encoded space (:attr:`n_columns`) is virtual: :meth:`apply` gives the scaled
    values and codes only, and each first layer computes what it reads of them
    (:class:`skensemble._inputs.FirstLayer`); :func:`encoded` materializes it for
    inspection.

    Attributes
    ----------
    mean, scale, unit : ndarray (Fn,)
        Standardisation of the numeric features.
    center, spread : ndarray (Fn,) or None
        Robust scaling of the standardised values.
    asinh : ndarray (1,) or (Fn,) or None
        Where 1, robust scaling compresses the tails with ``asinh`` instead of the
        smooth clipping: every feature (one value) in fits of :data:`ASINH_ROWS` rows or
        more, else the features with long tails (:data:`TAIL_SHARE`); None: none.
    lo, inv_width : ndarray (nb,) or None
        Start and inverse width of each bin column.
    bin_feature : ndarray (nb,) int64 or None
        The feature each bin column encodes (bins of a feature are contiguous, in order).
    first, last : ndarray (nb,) or None
        1.0 where a bin is its feature's first (not clamped below: extrapolates) / last
        (not clamped above).
    bin_set : ndarray (nb,) int64 or None
        The bin count (``n_bins``) of the set each bin column belongs to; None: one set.
    levels : ndarray (Fc,) int64 or None
        The codes (one-hot columns) of each categorical feature.
    """

    mean: np.ndarray
    scale: np.ndarray
    unit: np.ndarray
    center: np.ndarray = None
    spread: np.ndarray = None
    asinh: np.ndarray = None
    lo: np.ndarray = None
    inv_width: np.ndarray = None
    bin_feature: np.ndarray = None
    first: np.ndarray = None
    last: np.ndarray = None
    bin_set: np.ndarray = None
    levels: np.ndarray = None

    @property
    def n_numeric(self):
        """Fn: numeric features (scaled values)."""
        return self.mean.size

    @property
    def n_features(self):
        """F: features, numeric then categorical (columns of :meth:`apply`)."""
        return self.mean.size + (0 if self.levels is None else self.levels.size)

    @property
    def n_bins_total(self):
        """Bin columns of the encoded space (every set)."""
        return 0 if self.lo is None else self.lo.size

    @property
    def n_columns(self):
        """Columns of the encoded space: values, bins, levels, then the zero column."""
        F = self.n_features
        if self.lo is None and self.levels is None:
            return F
        return F + self.n_bins_total + int(self.levels.sum() if self.levels is not None
                                          else 0) + 1

    def _runs_of(self, key=None):
        """Per feature, the columns after its value: a list of arrays.

        A numeric feature's bins (of the set of bin count ``key``; none with ``key == 0``),
        a categorical feature's levels.
        """
        Fn, F = self.n_numeric, self.n_features
        out = []
        for f in range(Fn):
            if key == 0 or self.lo is None:
                out.append(np.zeros(0, np.int64))
                continue
            mine = True if key is None or self.bin_set is None else self.bin_set == key
            out.append(F + np.flatnonzero((self.bin_feature == f) & mine))
        start = F + self.n_bins_total
        for m in ([] if self.levels is None else self.levels):
            out.append(start + np.arange(m, dtype=np.int64))
            start += int(m)
        return out

    def _widths(self, key=None):
        """First-layer inputs each feature brings: its value and its run (levels only)."""
        runs = self._runs_of(key)
        return np.array([(1 if f < self.n_numeric else 0) + r.size
                         for f, r in enumerate(runs)], dtype=np.int64)

    def n_inputs(self, k, key=None):
        """First-layer inputs of a member reading ``k`` features (all: ``k=None``).

        ``key``: the member's input key (its bin count, or 0 for no encoding); None reads
        every bin column there is (one set).
        """
        plain = self.lo is None and self.levels is None
        if k is None:
            if plain:
                return self.n_columns
            if key == 0 and self.levels is None:  # the values alone
                return self.n_numeric
            return int(self._widths(key).sum()) + 1  # ... and the zero column
        if plain or key == 0 and self.levels is None:
            return k
        return int(np.sort(self._widths(key))[::-1][:k].sum())  # the k widest features

    def columns(self, features, keys=None, n_members=1):
        """Columns ``(E, width)`` read by members that see ``features (E, k)``.

        Each member reads its numeric features' values, then each feature's run: its
        bins (of its own set, with ``keys (E,)``, each member's input key) or its levels,
        then the zero column as padding up to the widest member. None (every member reads
        every column, in order) stays None. ``n_members``: E where neither says it.
        """
        if keys is None:
            if self.levels is None and (features is None or self.lo is None):
                return features
            keys = [None] * (len(features) if features is not None else n_members)
        F, Fn = self.n_features, self.n_numeric
        k = None if features is None else features.shape[1]
        feats = np.tile(np.arange(F), (len(keys), 1)) if features is None else features
        width = max(self.n_inputs(k, key) for key in keys)
        zero = self.n_columns - 1
        out = np.full((len(keys), width), zero, dtype=np.int64)
        for e, key in enumerate(keys):  # set-up: one short list per member
            if key == 0 and self.levels is None or self.n_columns == F:
                cols = feats[e]
            else:
                runs = self._runs_of(key)
                cols = np.concatenate([feats[e][feats[e] < Fn],
                                       *[runs[f] for f in feats[e]]]).astype(np.int64)
            out[e, : cols.size] = cols
        if features is None and width == self.n_columns and (
                out == np.arange(width)).all():
            return None  # every member reads every column in order: no gather needed
        return out

    def tensors(self, device=None):
        """The scaling's arrays by name, as :func:`transform` takes them (float64)."""
        return {k: torch.as_tensor(getattr(self, k), dtype=torch.float64, device=device)
                for k in ("mean", "scale", "unit", "center", "spread", "asinh")
                if getattr(self, k) is not None}

    def apply(self, X, codes=None):
        """The scaled values of ``X (N, Fn)`` (then ``codes (N, Fc)``), as float32 ``(N, F)``.

        In row chunks. This is the one copy of the training data a fit makes; the engines
        read it in place.
        """
        out = np.empty((X.shape[0], self.n_features), dtype=np.float32)
        Fn = self.n_numeric
        t = self.tensors()  # once, not per chunk
        step = chunk_rows(Fn)
        for s in range(0, X.shape[0], step):
            chunk = np.ascontiguousarray(X[s : s + step])  # any strides or dtype in
            if not chunk.flags.writeable:  # read-only input (memmap): torch wants writable
                chunk = chunk.copy()
            out[s : s + step, :Fn] = transform(torch.from_numpy(chunk), t)
            if X.shape[0] > step:  # glibc keeps the chunk's freed temporaries: back they go
                trim_heap()  # (300K x 100 float32 from a memmap: +407 MiB to make the
                # 114 MiB copy in 65,536-row chunks without trimming, +117 MiB now)
        if codes is not None:
            out[:, Fn:] = codes
        return out


def encoded(transform_, X, codes=None):
    """The encoded space as a matrix ``(N, n_columns)`` float32: values, bins, levels, zeros.

    For inspection and tests only (``get_member_params``' first-layer rows follow these
    columns): a fit never makes it, its first layers compute what they read from the
    values (:mod:`._inputs`). Computed in float64 from the scaled values.
    """
    Z = transform_.apply(X, codes).astype(np.float64)
    if transform_.n_columns == Z.shape[1]:
        return Z.astype(np.float32)
    parts = [Z]
    if transform_.lo is not None:
        enc = (Z[:, transform_.bin_feature] - transform_.lo) * transform_.inv_width  # (N, T)
        # inner bins clamp to [0, 1]; a feature's first bin extends below, its last above
        enc = np.where(transform_.first > 0, enc, np.maximum(enc, 0.0))
        parts.append(np.where(transform_.last > 0, enc, np.minimum(enc, 1.0)))
    for i, m in enumerate([] if transform_.levels is None else transform_.levels):
        code = Z[:, transform_.n_numeric + i]
        parts.append((code[:, None] == np.arange(m)).astype(np.float64))
    parts.append(np.zeros((Z.shape[0], 1)))
    return np.concatenate(parts, 1).astype(np.float32)


def transform(X, t):
    """Apply a fitted input scaling: ``X (n, F)`` -> scaled values ``(n, F)`` float32.

    ``t`` maps the names of :class:`InputTransform`'s scaling arrays to tensors. Computed
    in float64 from the raw values; the estimator and ``to_torch()`` both call this
    function, so they scale identically.
    """
    Z = (X.to(torch.float64) / t["unit"] - t["mean"] / t["unit"]) / (t["scale"] / t["unit"])
    if "center" in t:
        U = (Z - t["center"]) / (t["spread"] * CLIP)
        a = t.get("asinh")
        if a is not None and a.numel() == 1:  # every feature (large fits): asinh alone
            Z = CLIP * torch.asinh(U)
        else:  # r / sqrt(1 + (r/3)^2), no overflow; asinh where a feature has a long tail
            Z = CLIP * U / torch.hypot(torch.ones_like(U), U)
            if a is not None:
                Z = torch.where(a > 0, CLIP * torch.asinh(U), Z)
    return Z.to(torch.float32)


def fit_input_transform(X, weight, robust=False, n_bins=None, levels=None):
    """Fit an :class:`InputTransform` on ``X (N, Fn)`` under row weights (None: equal).

    ``robust``: median/IQR scaling with smooth clipping (``asinh`` tails from
    :data:`ASINH_ROWS` rows of ``X`` on, and below that for features with long tails:
    :data:`TAIL_SHARE`); ``n_bins``: piecewise-linear
    encoding over that many quantile bins per feature (fewer where a feature has fewer
    distinct values); a sequence of counts encodes one set of bins per count. ``levels
    (Fc,)``: the codes of categorical features that follow the numeric ones.

    The quantiles come from at most :data:`QUANTILE_ROWS` rows, read a block of columns
    at a time (:data:`QUANTILE_CELLS` values per block): every statistic is a column's
    own, so the set-up's memory is bounded by the block, not by the sample's width.
    """
    mean, scale, unit, _ = weighted_standardisation(X, weight)
    tr = InputTransform(mean, scale, unit)
    categorical = None if levels is None else np.asarray(levels, np.int64)
    if not robust and not n_bins:
        tr.levels = categorical
        return tr
    n_rows, F = X.shape
    keep = None
    if n_rows > QUANTILE_ROWS:  # quantiles from a fixed random subset of rows
        keep = np.sort(np.random.default_rng(0).choice(n_rows, QUANTILE_ROWS, replace=False))
        weight = None if weight is None else np.asarray(weight)[keep]
    if not isinstance(X, np.ndarray):  # rows read by windows (a Dask input): the sample
        X, keep = (X[:] if keep is None else X[keep]), None  # once, not once per block
    n = n_rows if keep is None else keep.size
    counts = ([] if not n_bins else [int(n_bins)] if np.ndim(n_bins) == 0
              else sorted({int(b) for b in n_bins}))
    center, spread, tail = np.zeros(F), np.ones(F), np.zeros(F, bool)
    edges_of = {}  # (count, feature) -> its distinct edges, or None: no bins
    width = max(1, QUANTILE_CELLS // max(n, 1))
    for c0 in range(0, F, width):  # set-up: one block of columns at a time
        cols = slice(c0, min(c0 + width, F))
        raw = X[:, cols] if keep is None else X[keep, cols]  # (n, w): the block's sample
        part = InputTransform(mean[cols], scale[cols], unit[cols])
        Z = part.apply(raw).astype(np.float64)  # (n, w) standardised
        order = None  # with weights: the rows' order, which robust scaling keeps (monotone)
        if weight is not None:
            order = np.argsort(Z[np.asarray(weight) > 0], axis=0, kind="stable")
        if robust:
            q25, q50, q75 = weighted_quantiles(Z, weight, [0.25, 0.5, 0.75], order=order)
            s = (q75 - q25) / 1.349  # the standard deviation, for normal data
            part.center = center[cols] = q50
            part.spread = spread[cols] = np.where(s > 1e-6, s, 1.0)  # standardised: std 1
            if n_rows >= ASINH_ROWS:
                part.asinh = np.ones(1)
            elif np.isfinite(TAIL_SHARE):  # features whose long tails hold that share
                far = np.abs(Z - q50) > CLIP * part.spread  # (n, w)
                if weight is None:
                    share = far.mean(0)
                else:  # column by column: the same sums whatever the block's width
                    wt = np.asarray(weight, np.float64)
                    share = np.array([wt[far[:, i]].sum() for i in range(far.shape[1])])
                    share /= wt.sum()
                tail[cols] = share >= TAIL_SHARE
                part.asinh = tail[cols].astype(np.float64) if tail[cols].any() else None
            Z = part.apply(raw).astype(np.float64)
        del raw
        if counts:
            Zs = np.sort(Z, axis=0)  # every row, whatever its weight: which values exist
            # a feature with 3+ distinct values: one strictly between its extremes
            varied = np.any((Zs > Zs[:1]) & (Zs < Zs[-1:]), axis=0)  # (w,)
            for count in counts:
                edges = weighted_quantiles(Z, weight, np.linspace(0, 1, count + 1),
                                           presorted=Zs, order=order)  # (B+1, w)
                for i in range(Z.shape[1]):  # set-up: each feature's distinct edges
                    e = np.unique(edges[:, i])
                    # edges a rounding error apart (quantiles interpolated between the same
                    # two values) would make a bin of width ~1e-17: one edge of the two
                    if e.size > 1:
                        e = e[np.concatenate([[True], np.diff(e) > 1e-9 * (e[-1] - e[0])])]
                    # binary or constant: a bin would only repeat the value
                    edges_of[count, c0 + i] = e if varied[i] and e.size >= 2 else None
            del Zs
        del Z, order
    if robust:
        tr.center, tr.spread = center, spread
        tr.asinh = (np.ones(1) if n_rows >= ASINH_ROWS
                    else tail.astype(np.float64) if tail.any() else None)
    if counts:
        lo, inv, feat, first, last, sets = [], [], [], [], [], []
        for count in counts:  # bins by set, then by feature
            for d in range(F):
                e = edges_of[count, d]
                if e is None:
                    continue
                lo.append(e[:-1])
                inv.append(1.0 / np.diff(e))
                feat.append(np.full(e.size - 1, d))
                first.append(np.eye(1, e.size - 1, 0)[0])
                last.append(np.eye(1, e.size - 1, e.size - 2)[0])
                sets.append(np.full(e.size - 1, count))

        def cat(parts, dtype=np.float64):
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

        tr.lo, tr.inv_width, tr.first, tr.last = cat(lo), cat(inv), cat(first), cat(last)
        tr.bin_feature, tr.bin_set = cat(feat, np.int64), cat(sets, np.int64)
    tr.levels = categorical  # after the numeric features' statistics: they follow them
    return tr
