"""Input and target scaling: weighted, unit-safe standardisation and the float32 copy.

Owns: the column statistics of a fit (under ``sample_weight``) and the one float32
standardised copy of ``X`` that the engines read. Must not validate user input (the
facade does) nor know about members, devices or engines.
"""

import numpy as np

CHUNK = 65536  # rows per pass over big arrays: temporaries stay small


def weighted_standardisation(A, weight):
    """Column means, scales and units of ``A (N, D)`` under row weights (None: equal).

    Standardised values are ``(A / unit - mean / unit) / (scale / unit)``. Working in
    units of each column's largest magnitude keeps every intermediate finite for values
    up to float64's limits, and keeps tiny columns (1e-30) from underflowing. Two passes
    in row chunks, so no temporary of ``A``'s size is made.

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
    unit = np.zeros(A.shape[1])
    for s in range(0, n, CHUNK):
        unit = np.maximum(unit, np.abs(A[s : s + CHUNK]).max(axis=0))
    unit = np.where(unit > 0, unit, 1.0)
    mean_u = np.zeros(A.shape[1])
    for s in range(0, n, CHUNK):
        mean_u += w[s : s + CHUNK] @ (A[s : s + CHUNK] / unit)
    mean_u /= total
    var_u = np.zeros(A.shape[1])
    for s in range(0, n, CHUNK):
        d = A[s : s + CHUNK] / unit - mean_u
        var_u += w[s : s + CHUNK] @ (d * d)
    std_u = np.sqrt(var_u / total)
    constant = std_u <= 1e-12
    scale_u = np.where(constant, 1.0, std_u)
    return mean_u * unit, scale_u * unit, unit, constant


def standardised_float32(X, mean, scale, unit):
    """Standardised ``X (N, F)`` as a new float32 array, computed in row chunks.

    This is the one copy of the training data a fit makes (half its size for float64
    input); the engines read it in place.
    """
    out = np.empty(X.shape, dtype=np.float32)
    mean_u, scale_u = mean / unit, scale / unit
    for s in range(0, X.shape[0], CHUNK):
        out[s : s + CHUNK] = (X[s : s + CHUNK] / unit - mean_u) / scale_u
    return out
