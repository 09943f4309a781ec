"""Columns as they come: numeric and categorical columns, and missing values.

Owns the :class:`Schema` of a fit's input: which columns are categorical (pandas
``category``, ``object``/``string`` or a user's list), the levels each keeps (the most
frequent, up to ``max_categories``, seen at least ``min_frequency`` times; the others
share an "infrequent" level, missing values their own), and, for numeric columns with
missing values in the training data, the value they are imputed with (the column's
training median) and a missing-value indicator. :meth:`Schema.split` maps any chunk of
rows to the numeric matrix the input scaling reads (values, then indicators) and the
categorical codes; each categorical column then reaches the first layer as one input per
level (:mod:`._inputs`), a per-member row of weights for each level: its learned
embedding, as wide as the first layer.

Must not scale, encode bins or know about members: :mod:`._scaling` and :mod:`._inputs`
do. pandas is used only where the input is a DataFrame (a polars DataFrame is read
through its columns).

Shape legend: N rows, C raw columns, Fn numeric columns (with indicators), Fc
categorical columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import numpy as np

from . import _scaling

ROWS = 200_000  # rows that numeric fill values (medians) are estimated from, at most


def is_dataframe(X):
    """Whether ``X`` is a pandas or polars DataFrame."""
    module = type(X).__module__
    return (module.startswith("pandas") or module.startswith("polars")) and hasattr(
        X, "columns")


def as_pandas(X):
    """A pandas DataFrame of ``X`` (a polars DataFrame column by column; pandas as is)."""
    import pandas as pd

    if type(X).__module__.startswith("pandas"):
        return X
    columns = {}
    for name in X.columns:  # polars: each column's values, without pyarrow
        s = X[name]
        dtype = str(s.dtype)
        if dtype.startswith("Categorical") or dtype.startswith("Enum"):
            columns[name] = pd.Categorical(s.cast(str).to_list())
        else:
            columns[name] = s.to_numpy()
    return pd.DataFrame(columns)


def reads_columns(X, categorical_features):
    """Whether ``X`` must be read column by column (it has categorical columns).

    A DataFrame with ``category``, ``object`` or string columns, or any input with
    ``categorical_features`` naming columns. Anything else is a numeric matrix, which
    scikit-learn's ``validate_data`` reads (missing values as NaN).
    """
    if not (categorical_features is None or isinstance(categorical_features, str)
            and categorical_features == "from_dtype"):
        return np.asarray(categorical_features).size > 0
    if categorical_features is None or not is_dataframe(X):
        return False
    X = as_pandas(X)
    return any(_is_categorical_dtype(X.iloc[:, i]) for i in range(X.shape[1]))


def _is_categorical_dtype(column):
    import pandas as pd

    dtype = column.dtype
    return (isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_object_dtype(dtype)
            or pd.api.types.is_string_dtype(dtype)) and not pd.api.types.is_bool_dtype(dtype)


@dataclass
class Schema:
    """How raw columns become numeric values and categorical codes.

    Attributes
    ----------
    n_columns : int
        C: columns of the raw input.
    numeric : ndarray (Fn0,) int64
        The raw columns read as numbers, in order.
    categorical : ndarray (Fc,) int64
        The raw columns read as categories, in order.
    levels : list of ndarray
        Per categorical column, the levels it keeps (codes ``0..m-1`` in this order); code
        ``m`` is "infrequent or unseen", ``m + 1`` "missing".
    fill : ndarray (Fn0,) float64
        The value a missing number is imputed with (the column's training median).
    indicator : ndarray (Fn0,) bool
        Numeric columns that had missing values in training: each gets an indicator.
    names : ndarray of str
        The raw columns' names (``x0, x1, ...`` for arrays).
    """

    n_columns: int
    numeric: np.ndarray
    categorical: np.ndarray
    levels: list
    fill: np.ndarray
    indicator: np.ndarray
    names: np.ndarray

    @property
    def n_codes(self):
        """Codes of each categorical column: its levels, "infrequent", "missing"."""
        return np.array([lv.size + 2 for lv in self.levels], dtype=np.int64)

    @property
    def n_numeric(self):
        """Fn: numeric values the scaling reads (columns, then indicators)."""
        return int(self.numeric.size + self.indicator.sum())

    def split(self, X):
        """Numeric values ``(n, Fn)`` and codes ``(n, Fc)`` float64 (or None) of raw rows ``X``.

        Missing numbers are imputed and flagged; a category the fit did not keep (rare, or
        unseen) gets the "infrequent" code, a missing one the "missing" code. A numeric
        matrix without missing values comes back as it is (no copy).
        """
        if not self.categorical.size and not is_dataframe(X):
            A = np.asarray(X)
            if not self.indicator.any() and not _has_nan(A):
                return A, None
            missing = np.isnan(A)
            values = np.where(missing, self.fill, A)
            return np.concatenate([values, missing[:, self.indicator]], 1), None
        cols = _columns(X, self.n_columns)
        n = len(cols[0]) if cols else 0
        A = np.empty((n, self.n_numeric))
        for i, c in enumerate(self.numeric):
            values = _as_float(cols[c], self.names[c])
            missing = np.isnan(values)
            A[:, i] = np.where(missing, self.fill[i], values)
        j = self.numeric.size
        for i in np.flatnonzero(self.indicator):
            A[:, j] = np.isnan(_as_float(cols[self.numeric[i]], self.names[self.numeric[i]]))
            j += 1
        codes = np.empty((n, self.categorical.size))
        for i, c in enumerate(self.categorical):
            codes[:, i] = _codes(cols[c], self.levels[i])
        return A, codes

    def feature_names(self):
        """Names of the inputs each first layer reads a value or a one-hot of.

        The numeric columns, their missing-value indicators (``<column>_missing``), then
        one per code of each categorical column: ``<column>_<level>``,
        ``<column>_infrequent`` (rare or unseen levels), ``<column>_missing``.
        """
        names = [str(self.names[c]) for c in self.numeric]
        names += [f"{self.names[self.numeric[i]]}_missing" for i in np.flatnonzero(self.indicator)]
        for c, levels in zip(self.categorical, self.levels):
            column = str(self.names[c])
            names += [f"{column}_{level}" for level in levels]
            names += [f"{column}_infrequent", f"{column}_missing"]
        return np.asarray(names, dtype=object)


def numeric_schema(A, weight=None, names=None):
    """The :class:`Schema` of a numeric matrix ``A (N, C)`` (NaN: missing).

    Columns with missing values get an indicator; every column's fill value is its
    (weighted) training median, from at most ``ROWS`` rows, so that a value missing at
    predict time in a column that had none is imputed too.
    """
    N, C = A.shape
    missing = np.isnan(A).any(0)
    rows = np.arange(N) if N <= ROWS else np.sort(
        np.random.default_rng(0).choice(N, ROWS, replace=False))
    w = None if weight is None else np.asarray(weight, np.float64)
    names = np.asarray([f"x{i}" for i in range(C)] if names is None else names,
                       dtype=object).astype(str)
    fill = np.zeros(C)
    for c in range(C):
        values = A[rows, c].astype(np.float64)
        present = ~np.isnan(values)
        ww = None if w is None else w[rows][present]
        if not present.any():  # the sample missed every value: the whole column
            values = A[:, c].astype(np.float64)
            present = ~np.isnan(values)
            ww = None if w is None else w[present]
            if not present.any():
                raise ValueError(
                    f"Column {names[c]!r} has no value at all (every row missing): there "
                    "is nothing to learn from it. Drop it before fit.")
        fill[c] = _median(values[present], ww)
    return Schema(n_columns=C, numeric=np.arange(C), categorical=np.zeros(0, np.int64),
                  levels=[], fill=fill, indicator=missing, names=names)


def fit_schema(X, categorical_features="from_dtype", max_categories=64, min_frequency=5,
               weight=None):
    """The :class:`Schema` of the training input ``X`` (a DataFrame or an array).

    Parameters
    ----------
    categorical_features : "from_dtype", array-like of int, str or bool, or None
        ``"from_dtype"``: DataFrame columns of ``category``, ``object`` or string dtype;
        a list of column indices or names, or a boolean mask, names them; None: none.
    max_categories, min_frequency : int
        Each categorical column keeps at most ``max_categories`` levels, the most frequent
        ones seen at least ``min_frequency`` times (under ``weight``: a level's total
        weight, in units of the mean weight); the others share one level.
    """
    cols = _columns(X, None)
    names = np.asarray(X.columns if is_dataframe(X) else
                       [f"x{i}" for i in range(len(cols))], dtype=object).astype(str)
    C = len(cols)
    cat = _categorical_mask(X, cols, names, categorical_features)
    numeric, categorical = np.flatnonzero(~cat), np.flatnonzero(cat)
    w = None if weight is None else np.asarray(weight, dtype=np.float64)
    fill, indicator = np.zeros(numeric.size), np.zeros(numeric.size, dtype=bool)
    for i, c in enumerate(numeric):
        values = _as_float(cols[c], names[c])
        missing = np.isnan(values)
        if missing.all():
            raise ValueError(
                f"Column {names[c]!r} has no value at all (every row missing): there is "
                "nothing to learn from it. Drop it before fit.")
        if np.isinf(values).any():
            raise ValueError(
                f"Column {names[c]!r} has infinite values; replace them (e.g. by NaN, which "
                "is imputed and flagged) before fit.")
        fill[i] = _median(values[~missing], None if w is None else w[~missing])
        indicator[i] = missing.any()
    levels = []
    for c in categorical:
        values, missing = _category_values(cols[c], names[c])
        if missing.all():
            raise ValueError(
                f"Column {names[c]!r} has no value at all (every row missing): there is "
                "nothing to learn from it. Drop it before fit.")
        uniq, inverse = np.unique(values[~missing], return_inverse=True)
        counts = np.bincount(inverse, weights=None if w is None else
                             w[~missing] / w.mean(), minlength=uniq.size)
        keep = np.flatnonzero(counts >= min_frequency)
        keep = keep[np.argsort(-counts[keep], kind="stable")][:max_categories]
        levels.append(np.sort(uniq[keep]))
    return Schema(n_columns=C, numeric=numeric, categorical=categorical, levels=levels,
                  fill=fill, indicator=indicator, names=names)


def _has_nan(A):
    """Whether ``A (n, d)`` has a NaN, read in row chunks (no ``(n, d)`` temporary)."""
    step = _scaling.chunk_rows(A.shape[1] if A.ndim > 1 else 1)
    return any(np.isnan(A[s : s + step]).any() for s in range(0, A.shape[0], step))


def _columns(X, expected):
    """The columns of ``X`` as a list of 1-D arrays (object arrays for DataFrame columns)."""
    if is_dataframe(X):
        X = as_pandas(X)
        cols = [X.iloc[:, i] for i in range(X.shape[1])]
        cols = [np.asarray(c.astype(object)) if _is_categorical_dtype(c) else
                np.asarray(c) for c in cols]
    else:
        A = np.asarray(X)
        if A.ndim != 2:
            raise ValueError(f"Expected a 2-D array, got {A.ndim} dimensions.")
        cols = [A[:, i] for i in range(A.shape[1])]
    if expected is not None and len(cols) != expected:
        raise ValueError(f"X has {len(cols)} features, but the ensemble was fitted with "
                         f"{expected}.")
    return cols


def _categorical_mask(X, cols, names, categorical_features):
    """Boolean ``(C,)``: which raw columns are categorical."""
    C = len(cols)
    if categorical_features is None:
        mask = np.zeros(C, dtype=bool)
    elif isinstance(categorical_features, str) and categorical_features == "from_dtype":
        if is_dataframe(X):
            Xp = as_pandas(X)
            mask = np.array([_is_categorical_dtype(Xp.iloc[:, i]) for i in range(C)])
        else:  # an array has no per-column dtype: every column is numeric
            mask = np.zeros(C, dtype=bool)
    else:
        spec = np.asarray(categorical_features)
        if spec.dtype == bool:
            if spec.shape != (C,):
                raise ValueError(f"categorical_features as a boolean mask must have {C} "
                                 f"entries, got {spec.shape[0] if spec.ndim else 0}.")
            mask = spec.copy()
        else:
            mask = np.zeros(C, dtype=bool)
            for item in spec.ravel():
                if isinstance(item, (Integral, np.integer)):
                    if not -C <= int(item) < C:
                        raise ValueError(f"categorical_features names column {item}, but X "
                                         f"has {C} columns.")
                    mask[int(item)] = True
                else:
                    hit = np.flatnonzero(names == str(item))
                    if not hit.size:
                        shown = [str(n) for n in names[:10]]
                        raise ValueError(f"categorical_features names {str(item)!r}, which "
                                         f"is not a column of X (columns: {shown}).")
                    mask[hit] = True
    for i in np.flatnonzero(~mask):  # numbers where they are not categories
        if cols[i].dtype == object:
            _as_float(cols[i], names[i])
    return mask


def _as_float(column, name):
    """A numeric column as float64 (None, pandas' NA and NaN missing); clear errors otherwise."""
    if column.dtype.kind in "biuf":
        return column.astype(np.float64)
    if column.dtype.kind == "c":
        raise ValueError(f"Column {name!r} holds complex numbers; use real ones.")
    missing = _missing(column)
    out = np.full(column.shape[0], np.nan)
    present = column[~missing]
    try:
        out[~missing] = np.asarray(
            [float(v) if not isinstance(v, str) else _no_float(v) for v in present],
            dtype=np.float64) if present.size else 0.0
    except (TypeError, ValueError):
        bad = next(v for v in present if isinstance(v, str) or not _floatable(v))
        raise ValueError(
            f"Column {name!r} mixes types: {bad!r} ({type(bad).__name__}) among numbers. "
            "Make it all numbers, or name it in categorical_features to read it as "
            "categories.") from None
    return out


def _no_float(v):
    raise ValueError(v)


def _floatable(v):
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def _missing(column):
    """Boolean mask of missing entries (None, NaN, pandas' NA/NaT) of a 1-D array."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - numpy object arrays without pandas
        return np.array([v is None or (isinstance(v, float) and np.isnan(v))
                         for v in column], dtype=bool)
    return np.asarray(pd.isna(column), dtype=bool)


def _category_values(column, name):
    """A categorical column as strings (levels) and its missing mask; mixed types refused."""
    missing = _missing(column)
    present = column[~missing]
    if present.dtype == object and present.size:
        try:
            import pandas as pd

            kind = pd.api.types.infer_dtype(present, skipna=True)
        except ImportError:  # pragma: no cover
            kind = "string"
        if kind.startswith("mixed"):
            kinds = sorted({type(v).__name__ for v in present[:10_000]})
            raise ValueError(
                f"Column {name!r} mixes types ({', '.join(kinds)}); a categorical column "
                "must hold one kind of value (e.g. all strings). Convert it before fit.")
    values = np.full(column.shape[0], "", dtype=object)
    values[~missing] = present.astype(str)
    return values.astype(str), missing


def _codes(column, levels):
    """Codes of a categorical column under the fitted ``levels`` (see :class:`Schema`)."""
    values, missing = _category_values(column, "")
    pos = np.searchsorted(levels, values)
    pos = np.clip(pos, 0, max(levels.size - 1, 0))
    known = (levels.size > 0) & (levels[pos] == values if levels.size else False)
    codes = np.where(known, pos, levels.size)  # not kept: "infrequent"
    return np.where(missing, levels.size + 1, codes).astype(np.float64)


def _median(values, weight):
    """The (weighted) median of ``values``."""
    if weight is None:
        return float(np.median(values))
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weight[order])
    return float(values[order][np.searchsorted(cum, 0.5 * cum[-1])])
