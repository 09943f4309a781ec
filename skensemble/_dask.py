"""Dask arrays and DataFrames as input: ``fit`` reads partitions as needed, ``predict`` maps them.

Owns what a Dask collection needs on its way into and out of the estimator, and nothing
else; ``dask`` is imported inside the functions that need it, so ``import skensemble``
never does.

- **fit** (:func:`fit_data`): ``X`` becomes a :class:`Rows`, which the fit pipeline reads
  as it reads a NumPy matrix, by row windows (the scaling's statistics, in windows of
  :func:`skensemble._scaling.chunk_rows` rows) and by a sorted sample of rows (the medians of
  missing values and the quantiles, at most :data:`skensemble._tabular.ROWS` and
  :data:`skensemble._scaling.QUANTILE_ROWS` rows, drawn as for NumPy input), and finally
  window by window into the one float32 scaled matrix the engines read. Each window
  computes only the partitions it overlaps, on the workers (validated there with
  ``check_array``), so the fitting process never holds the raw float64 data at once, and
  the arithmetic is that of a NumPy fit on the same rows, bit for bit. ``y`` and
  ``sample_weight`` (one value per row) are brought to the fitting process partition by
  partition, after their partitions are checked against ``X``'s.
- **predict** (:func:`per_partition`): a method that maps rows to rows runs on each
  partition, on the workers, with the fitted estimator shipped once as one task of the
  graph; the result is a lazy Dask array chunked as ``X``'s rows.
- **score** (:func:`gather_scored`): the predictions (computed on the workers), ``y`` and
  ``sample_weight`` come to the calling process, one value per row, and score there.

Must not fit, scale or train: it hands rows to :mod:`._pipeline` and :mod:`._scaling`.

Shape legend: N rows, C raw columns, Fn numeric values (columns, then missing-value
indicators).
"""

from __future__ import annotations

import functools
import uuid

import numpy as np
from sklearn.utils.validation import _check_y, check_array, check_is_fitted, validate_data

from . import _tabular

_FLOAT = (np.float64, np.float32)


def is_dask(*objs):
    """Whether any of ``objs`` is a Dask collection (checked without importing dask)."""
    return any(hasattr(o, "__dask_graph__") and type(o).__module__.startswith("dask")
               for o in objs)


def _kind(obj):
    """How an error names a value: its type's name."""
    return "None" if obj is None else f"a {type(obj).__module__.split('.')[0]}.{type(obj).__name__}"


# --------------------------------------------------------------------- partitions
def _blocks(c):
    """The row partitions of a Dask collection ``c``, as Delayed objects in order."""
    if hasattr(c, "chunks"):  # an array: one block per chunk of rows, all columns in it
        if c.ndim == 2 and len(c.chunks[1]) > 1:
            c = c.rechunk({1: -1})
        return list(c.to_delayed().ravel())
    return list(c.to_delayed())


def _known(c):
    """The rows of each partition of ``c`` where Dask knows them without computing, or None."""
    if hasattr(c, "chunks") and not np.isnan(c.chunks[0]).any():
        return tuple(int(n) for n in c.chunks[0])
    return None


def _lengths(c):
    """The rows of each partition of ``c`` (computed on the workers where Dask does not know)."""
    known = _known(c)
    if known is not None:
        return known
    import dask

    return tuple(int(n) for n in dask.compute(*[dask.delayed(len)(b) for b in _blocks(c)]))


def _misaligned(name, got, lengths):
    return ValueError(
        f"{name} is partitioned differently from X: X's {len(lengths)} partitions hold "
        f"{list(lengths)[:8]}{'...' if len(lengths) > 8 else ''} rows, {name}'s "
        f"{len(got)} hold {list(got)[:8]}{'...' if len(got) > 8 else ''}. Give {name} X's "
        f"partitions (e.g. dask.array.from_array({name}, chunks=(X.chunks[0],)) for an "
        f"array X, or take {name} from the same DataFrame as X).")


def _check_pair(X, other, name):
    """Raise unless ``X`` and ``other`` are both Dask collections (``other`` None passes)."""
    if other is None or is_dask(X) == is_dask(other):
        return
    if is_dask(X):
        raise ValueError(
            f"X is a Dask collection but {name} is {_kind(other)}: pass {name} as a Dask "
            f"array or Series with X's partitions, or compute X (X.compute()) to fit in "
            "memory.")
    raise ValueError(
        f"{name} is a Dask collection but X is {_kind(X)}: pass X as a Dask array or "
        f"DataFrame with {name}'s partitions, or compute {name}.")


def _gather(c, lengths, name):
    """The partitions of the Dask collection ``c`` brought here, in order, checked against X's.

    Returns a pandas object where the partitions are pandas (a Series keeps its dtype),
    else a NumPy array.
    """
    import dask

    known, blocks = _known(c), _blocks(c)
    if len(blocks) != len(lengths) or known is not None and known != tuple(lengths):
        raise _misaligned(name, known or (np.nan,) * len(blocks), lengths)
    parts = dask.compute(*blocks)
    got = tuple(len(p) for p in parts)
    if got != tuple(lengths):
        raise _misaligned(name, got, lengths)
    if hasattr(parts[0], "iloc"):
        import pandas as pd

        return pd.concat(parts)
    return np.concatenate([np.asarray(p) for p in parts])


# ---------------------------------------------------------------------------- fit
def _check_block(block):
    """One partition of ``X`` validated as a NumPy fit validates ``X`` (on a worker)."""
    return check_array(block, dtype=_FLOAT, ensure_all_finite="allow-nan",
                       ensure_min_samples=0)


def _split_block(block, schema):
    """The numeric values ``(n, Fn)`` of one validated partition (on a worker)."""
    return schema.split(block)[0]


def _validated(X):
    """``X`` as a Dask array of validated floats: one chunk per partition, lengths known."""
    import dask
    import dask.array as da

    if hasattr(X, "chunks"):  # an array
        if len(X.chunks[1]) > 1:
            X = X.rechunk({1: -1})
        if _known(X) is None:
            X = X.compute_chunk_sizes()
        dtype = _check_block(np.zeros((1, X.shape[1]), X.dtype)).dtype
        return X.map_blocks(_check_block, dtype=dtype)
    dtype = _check_block(X._meta_nonempty.iloc[:1]).dtype
    C = X.shape[1]
    return da.concatenate(
        [da.from_delayed(dask.delayed(_check_block)(b), shape=(n, C), dtype=dtype)
         for b, n in zip(_blocks(X), _lengths(X))], axis=0)


def _columns_error(what):
    return ValueError(
        f"{what} A Dask input is read as numbers, partition by partition. Encode the "
        "categorical columns as numbers first (e.g. codes: "
        "X.assign(col=X['col'].astype('category').cat.as_known().cat.codes)), or bring "
        "X into memory (X.compute()) to have skensemble read them as categories.")


def fit_data(est, X, y, sample_weight, reset, schema, task):
    """``(X, y, sample_weight)`` of a fit on Dask collections, validated.

    ``X`` comes back as a :class:`Rows` (nothing of it computed yet), ``y`` and
    ``sample_weight`` in memory (one value per row, partition by partition, each
    partition checked against ``X``'s). Sets ``n_features_in_`` and ``feature_names_in_``
    (``reset``) or checks them, as ``validate_data`` does.
    """
    _check_pair(X, y, "y")
    if not is_dask(X):  # only sample_weight is
        raise ValueError(
            f"sample_weight is a Dask collection but X is {_kind(X)}: pass X and y as "
            "Dask collections with sample_weight's partitions, or compute sample_weight.")
    if X.ndim != 2:
        raise ValueError(f"Expected a 2-D X, got a Dask collection of {X.ndim} dimension(s).")
    cats = est.categorical_features
    if not (cats is None or isinstance(cats, str) and cats == "from_dtype"):
        if np.asarray(cats).size:
            raise _columns_error(f"categorical_features={cats!r} names columns of X.")
    if schema is not None and schema.categorical.size:
        raise _columns_error("The fitted estimator reads categorical columns (warm_start or "
                             "partial_fit continue its first fit).")
    if hasattr(X, "columns"):  # a DataFrame
        meta = X._meta
        bad = [str(c) for c in meta.columns if _tabular._is_categorical_dtype(meta[c])]
        if bad:
            raise _columns_error(f"Columns {bad[:5]} of the Dask DataFrame X are not numeric.")
    else:
        if np.dtype(X.dtype).kind in "USOV":
            raise _columns_error(f"X is a Dask array of dtype {X.dtype}.")
        meta = np.empty((0, X.shape[1]))
    validate_data(est, meta, skip_check_array=True, reset=reset)  # counts, names
    Xa = _validated(X)
    lengths = tuple(int(n) for n in Xa.chunks[0])
    if sum(lengths) < 1:
        raise ValueError(f"Found array with 0 sample(s) (shape=(0, {Xa.shape[1]})) while a "
                         "minimum of 1 is required.")
    y = _check_y(_gather(y, lengths, "y"), multi_output=task.multi_output,
                 y_numeric=task.loss != "log_loss")
    if is_dask(sample_weight):
        sample_weight = _gather(sample_weight, lengths, "sample_weight")
    return Rows(Xa), y, sample_weight


class Rows:
    """The rows of a validated Dask array, read window by window, never all at once.

    What the fit pipeline reads in place of a NumPy matrix: ``shape``, row slices and
    sorted row indices (``rows[key]``: a NumPy array, computed from the partitions it
    overlaps, on the workers), :meth:`fit_schema` and :meth:`split`. ``np.asarray(rows)``
    raises, so no code path can gather the whole input unnoticed.

    Parameters
    ----------
    array : dask.array.Array of shape (N, C)
        One chunk of columns, chunk lengths known.
    """

    ndim = 2

    def __init__(self, array):
        self.array = array
        self.shape = (int(sum(array.chunks[0])), int(array.shape[1]))
        self.dtype = array.dtype

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        return np.asarray(self.array[key].compute())

    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            "A Dask input is read in windows of rows; converting all of it to one NumPy "
            "array would gather it in this process.")

    def fit_schema(self, weight, names):
        """The :class:`~skensemble._tabular.Schema` :func:`~._tabular.numeric_schema` gives.

        Which columns have missing values: a pass over the partitions, on the workers.
        Their fill values (medians): from the same sample of at most
        :data:`~skensemble._tabular.ROWS` rows as for a NumPy matrix (a column that sample
        misses entirely: from all of its rows, as there).
        """
        import dask.array as da

        N, C = self.shape
        ROWS = _tabular.ROWS
        missing = np.asarray(da.isnan(self.array).any(axis=0).compute())  # (C,)
        w = None if weight is None else np.asarray(weight, np.float64)
        if N <= ROWS:  # every row, as numeric_schema reads them
            rows, sample, ws = None, self[:], w
        else:
            rows = np.sort(np.random.default_rng(0).choice(N, ROWS, replace=False))
            sample, ws = self[rows], None if w is None else w[rows]  # (ROWS, C)
        empty = np.isnan(sample).all(0) if rows is not None else np.zeros(C, bool)
        if empty.any():  # the sample misses every value of these columns
            sample = sample.copy()  # (it may share memory with the caller's array)
            sample[:, empty] = 0.0  # their fill values come from all their rows, below
        schema = _tabular.numeric_schema(sample, ws, names)
        for c in np.flatnonzero(empty):  # one column at a time, N values
            column = self[:, c : c + 1]
            schema.fill[c] = _tabular.numeric_schema(column, w, [schema.names[c]]).fill[0]
        schema.indicator = missing
        return schema

    def split(self, schema):
        """``schema.split`` on each partition, on the workers: ``(Rows (N, Fn), None)``."""
        if schema.categorical.size:
            raise _columns_error("The fitted estimator reads categorical columns.")
        Fn = schema.n_numeric
        dtype = self.dtype if not schema.indicator.any() else np.dtype(np.float64)
        A = self.array.map_blocks(_split_block, schema, chunks=(self.array.chunks[0], (Fn,)),
                                  dtype=dtype)
        return Rows(A), None


# ------------------------------------------------------------------------ predict
def _call(est, name, block, args, kwargs):
    """``est.<name>(block, ...)`` on one partition (on a worker)."""
    return getattr(est, name)(block, *args, **kwargs)


def per_partition(method=None, *, axis=0):
    """Decorate a prediction method so that a Dask ``X`` maps it over its partitions.

    For a Dask array or DataFrame ``X`` the decorated method returns a lazy Dask array (a
    tuple of them where the method returns a tuple): each partition of rows is predicted
    on a worker, by the fitted estimator, which the graph holds once. Its chunks along
    ``axis`` (the rows of the method's output) are ``X``'s partitions (NaN lengths for a
    DataFrame, whose partitions' lengths Dask does not know); the rest of its shape and
    its dtype are those of the method's output on one row, computed here.
    """
    if method is None:
        return functools.partial(per_partition, axis=axis)

    @functools.wraps(method)
    def wrapper(self, X, *args, **kwargs):
        if not is_dask(X):
            return method(self, X, *args, **kwargs)
        return _mapped(self, method.__name__, X, args, kwargs, axis)

    return wrapper


def _mapped(est, name, X, args, kwargs, axis):
    """``est.<name>(X, ...)`` as lazy Dask arrays, one block per partition of ``X``."""
    import dask
    import dask.array as da

    check_is_fitted(est)
    if X.ndim != 2:
        raise ValueError(f"Expected a 2-D X, got a Dask collection of {X.ndim} dimension(s).")
    if hasattr(X, "columns"):
        meta, probe = X._meta, X._meta_nonempty.iloc[:1]
    else:
        meta = np.empty((0, X.shape[1]), X.dtype)
        probe = np.zeros((1, X.shape[1]), X.dtype if X.dtype.kind in "biuf" else np.float64)
    validate_data(est, meta, skip_check_array=True, reset=False)  # counts, names: now
    out = getattr(est, name)(probe, *args, **kwargs)  # one row: the outputs' shapes, dtypes
    outs = out if isinstance(out, tuple) else (out,)
    lengths = _known(X) or (np.nan,) * len(_blocks(X))
    model = dask.delayed(est, name=f"{type(est).__name__}-{uuid.uuid4().hex}", traverse=False)
    calls = [dask.delayed(_call, pure=True)(model, name, b, args, kwargs) for b in _blocks(X)]
    arrays = []
    for i, o in enumerate(outs):
        parts = [da.from_delayed(c if len(outs) == 1 else c[i],
                                 shape=o.shape[:axis] + (n,) + o.shape[axis + 1:],
                                 dtype=o.dtype)
                 for c, n in zip(calls, lengths)]
        arrays.append(da.concatenate(parts, axis=axis))
    return tuple(arrays) if isinstance(out, tuple) else arrays[0]


def gather_scored(X, pred, y, sample_weight):
    """``(pred, y, sample_weight)`` of ``score`` on Dask collections, brought here.

    ``pred``: the lazy predictions of ``X`` (:func:`per_partition`); they are computed on
    the workers, and ``y`` and ``sample_weight`` (a Dask collection or in memory) are
    brought here with them, one value per row, partition by partition.
    """
    _check_pair(X, y, "y")
    if not is_dask(X):
        _check_pair(X, sample_weight, "sample_weight")
    import dask

    parts = dask.compute(*_blocks(pred))
    lengths = tuple(len(p) for p in parts)
    pred = np.concatenate(parts)
    y = np.asarray(_gather(y, lengths, "y"))
    if is_dask(sample_weight):
        sample_weight = np.asarray(_gather(sample_weight, lengths, "sample_weight"))
    return pred, y, sample_weight
