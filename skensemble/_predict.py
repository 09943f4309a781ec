"""The one forward pass of a fitted ensemble, shared by predict, out-of-bag and to_torch().

Owns: moving fitted groups to a device, running every member on row chunks (each chunk
scaled, moved to the device and encoded on its own, so memory is bounded by the chunk,
not by the input; device out-of-memory translated), and putting member outputs back in
member order. Must not validate input or aggregate members: the facade and the task
classes do that.

Shape legend (as in :mod:`._engine`): E members, n rows of a chunk, F features, W inputs of
a first layer, O outputs, G members of a group, P parameters.
"""

import ctypes
import ctypes.util
import sys

import numpy as np
import torch

from . import _dispatch, _engine

ACTIVATION_BUDGET = 8 * 2**20  # float64 activations of all members for one chunk: 64 MB

# Every this many chunks, glibc is asked to hand freed heap memory back to the system.
# Each chunk allocates and frees a few hundred KB of temporaries of several sizes (the
# scaled rows, torch and numba activations); glibc keeps such freed blocks in its heap,
# and over thousands of chunks the process grew by gigabytes: measured, 400,000 x 100 rows
# after a 50,000-row default fit (24 bins: 335-row chunks), peak resident memory +908 MiB
# without the trim, +1 MiB with it every 16 chunks (tests/test_estimators.py binds it).
TRIM_EVERY = 16


def trim_heap():
    """Glibc's ``malloc_trim(0)`` where the C library has it (Linux), else nothing."""
    global _TRIM
    if _TRIM is None:
        _TRIM = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                _TRIM = libc.malloc_trim
            except (OSError, AttributeError):  # not glibc (musl...): nothing to trim
                pass
    if _TRIM:
        _TRIM(0)


_TRIM = None

# Predictions on the CPU compute in float64 from the float32 weights: a row's prediction
# then does not depend on which other rows share its chunk (float32 matrix products
# round differently for different row counts: scikit-learn's subset-invariance check saw
# differences in the 7th digit), and outputs are float64 anyway.
PREDICT_DTYPE = torch.float64

# On CUDA they compute in float32, the dtype the members trained in, and the raw outputs
# (E, n, O) become float64 before they are reduced: float64 runs at 1/64 of the float32
# rate on consumer GPUs (1/2 on datacenter ones). A row's result may then depend on the
# rows beside it in the 7th digit, as cuBLAS picks kernels by shape.
DEVICE_PREDICT_DTYPE = torch.float32

# Bytes of device memory one chunk's activations may take on CUDA: a quarter of the free
# memory, at most 4 GiB (E=1,000 members of 271 inputs: 990 rows per chunk, where the
# CPU's 64 MB budget of float64 gave 30).
DEVICE_CHUNK_BYTES = 2**32


def compute_dtype(device):
    """The dtype predictions compute in on ``device``: float64 on the CPU, float32 on CUDA."""
    return DEVICE_PREDICT_DTYPE if torch.device(device).type == "cuda" else PREDICT_DTYPE


def forward_members(groups, X, activation, inverse=None, compiled=False):
    """Raw outputs of every member on ``X (n, F)``: ``(E, n, O)``.

    Parameters
    ----------
    groups : sequence of (flat (G, P), Layout, FirstLayer or None, activation or None)
        Fitted groups, tensors on ``X``'s device; a group's own activation (None: the
        ``activation`` argument, the estimator's).
    inverse : Tensor (E,) int64 or None
        Member ``e``'s output is row ``inverse[e]`` of the groups' concatenated outputs;
        None when the groups already hold members 0..E-1 in order.
    compiled : bool
        On the CPU, groups whose first layers read bins run in numba's compiled code from
        the bins' structure, in float32 (:func:`_compiled`); the others, and every group
        with ``compiled=False`` (``to_torch()``), in torch.
    """
    parts = [_compiled(flat, layout, X, own or activation, first)
             if compiled and _binned(flat, layout, first)
             else _engine.forward(flat, layout, X, own or activation, first)
             for flat, layout, first, own in groups]
    out = parts[0] if len(parts) == 1 else torch.cat(parts)  # (E, n, O) in group order
    return out if inverse is None else out[inverse]


def _binned(flat, layout, first):
    """Whether a group's forward pass can run compiled: CPU, hidden layers, bins read."""
    if first is None or flat.device.type != "cpu" or layout.n_layers < 2:
        return False
    if not first.has_runs or not _dispatch.numba_usable():
        return False
    return True


def _compiled(flat, layout, X, activation, first):
    """A group's outputs ``(G, n, O)`` from numba's forward pass (float32, as float64).

    Every row is computed alike, whatever rows share its chunk, so a row's prediction does
    not depend on the others (scikit-learn's subset invariance).
    """
    from ._kernels.numba_cpu import forward_numba

    G, n = flat.shape[0], X.shape[0]
    idx = torch.arange(n).expand(G, n).contiguous()
    with _dispatch.thread_limit(min(G, _dispatch.default_threads()), "numba"):
        out = forward_numba(flat.to(torch.float32), layout, X.to(torch.float32), idx, first,
                            activation, blocked=False)
    return out.to(X.dtype)


def member_inverse(groups):
    """Inverse permutation ``(E,)`` from group order to member order, or None if identity."""
    members = np.concatenate([g.members for g in groups])
    if np.array_equal(members, np.arange(members.size)):
        return None
    return np.argsort(members)


def on_device(groups, columns, encoding, device, dtype=None):
    """Fitted groups as ``(flat, Layout, FirstLayer or None, activation)`` on ``device``.

    ``columns (E, w)``: every member's columns of ``encoding``'s space (None: all, in
    order); ``dtype`` None: :func:`compute_dtype`. Also returns the member-order inverse
    (or None).
    """
    dtype = compute_dtype(device) if dtype is None else dtype
    out = []
    for g in groups:
        # each group reads as many columns as its first layer takes (members that drew
        # narrower inputs than others pad their column lists)
        cols = None if columns is None else columns[g.members, : g.sizes[0]]
        first = encoding.first_layer(cols, len(g.members), g.sizes[0])
        out.append((torch.from_numpy(g.flat).to(device, dtype), g.layout,
                    None if first is None else first.to(device, dtype), g.settings.activation))
    inverse = member_inverse(groups)
    return out, None if inverse is None else torch.from_numpy(inverse).to(device)


def chunk_rows(groups, device):
    """Rows per prediction chunk.

    On the CPU all members' float64 activations of a chunk stay ~64 MB. On CUDA their
    float32 activations, a few live copies of them, take at most a quarter of the
    device's free memory and :data:`DEVICE_CHUNK_BYTES`, so predictions fit next to
    whatever else holds the GPU, in chunks large enough to keep it busy.
    """
    floats = ACTIVATION_BUDGET
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        floats = min(DEVICE_CHUNK_BYTES, free // 4) // (4 * 4)  # float32, ~4 live copies
    n_members = sum(g.members.size for g in groups)
    widest = max(max(g.sizes) for g in groups)
    return max(1, int(floats) // max(1, n_members * widest))


@torch.no_grad()
def run_chunked(groups, columns, encoding, activation, X, device, reduce, scale=None):
    """Apply every member to host rows ``X`` chunk by chunk; reduce each chunk.

    Parameters
    ----------
    groups : list of skensemble._groups.Group
    columns : ndarray (E, w) or None
        Each member's columns of ``encoding``'s space.
    encoding : skensemble._inputs.Encoding
    X : ndarray (N, F), in host memory
        Scaled values (float32), or raw rows with ``scale`` (also a DataFrame).
    scale : callable or None
        ``scale(rows) -> float32 (n, F)``: applied to each chunk of raw rows, so that no
        scaled copy of the whole input is made.
    reduce : callable
        ``reduce(out (E, n, O), rows slice) -> Tensor`` whose first dimension is rows.

    Returns
    -------
    ndarray: the reduced chunks, concatenated along the first dimension.
    """
    try:
        dtype = compute_dtype(device)
        dev_groups, inverse = on_device(groups, columns, encoding, device)
        chunk = chunk_rows(groups, device)
        parts = []
        for i, s in enumerate(range(0, X.shape[0], chunk)):
            if i and i % TRIM_EVERY == 0 and device.type == "cpu":
                trim_heap()
            rows = slice(s, min(s + chunk, X.shape[0]))
            Xs = X[rows] if scale is None else scale(X.iloc[rows] if hasattr(X, "iloc")
                                                     else X[rows])
            Xt = torch.from_numpy(Xs).to(device, dtype, non_blocking=True)
            out = forward_members(dev_groups, Xt, activation, inverse, compiled=True)
            # float64 from here (no copy on the CPU, where it is already)
            parts.append(reduce(out.to(torch.float64), rows))
        return torch.cat(parts, dim=0).cpu().numpy()
    except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
        if not _dispatch.is_oom(exc):
            raise
        raise MemoryError(
            f"{device} ran out of memory predicting with {sum(g.members.size for g in groups)} "
            "members. Free memory held by other processes, predict on fewer rows per call, "
            "or set device='cpu' on the fitted estimator."
        ) from exc
