"""The one forward pass of a fitted ensemble, shared by predict, out-of-bag and to_torch().

Owns: moving fitted groups to a device, running every member on row chunks (chunked
host-to-device transfers, bounded activations, device out-of-memory translated), and
putting member outputs back in member order. Must not validate input, scale, or
aggregate members: the facade and the task classes do that.

Shape legend (as in :mod:`._engine`): E members, n rows of a chunk, F features, k features
one member reads, O outputs, G members of a group, P parameters.
"""

import numpy as np
import torch

from . import _engine

ACTIVATION_BUDGET = 8 * 2**20  # float64 activations of all members for one chunk: 64 MB

# Predictions compute in float64 from the float32 weights: a row's prediction then does
# not depend on which other rows share its chunk (float32 matrix products round
# differently for different row counts: scikit-learn's subset-invariance check saw
# differences in the 7th digit), and outputs are float64 anyway.
PREDICT_DTYPE = torch.float64


def forward_members(groups, X, activation, inverse=None):
    """Raw outputs of every member on ``X (n, F)``: ``(E, n, O)``.

    Parameters
    ----------
    groups : sequence of (flat (G, P), Layout, features (G, k) or None, activation or None)
        Fitted groups, tensors on ``X``'s device; a group's own activation (None: the
        ``activation`` argument, the estimator's).
    inverse : Tensor (E,) int64 or None
        Member ``e``'s output is row ``inverse[e]`` of the groups' concatenated outputs;
        None when the groups already hold members 0..E-1 in order.
    """
    parts = [_engine.forward(flat, layout, X, own or activation, feats)
             for flat, layout, feats, own in groups]
    out = parts[0] if len(parts) == 1 else torch.cat(parts)  # (E, n, O) in group order
    return out if inverse is None else out[inverse]


def member_inverse(groups):
    """Inverse permutation ``(E,)`` from group order to member order, or None if identity."""
    members = np.concatenate([g.members for g in groups])
    if np.array_equal(members, np.arange(members.size)):
        return None
    return np.argsort(members)


def on_device(groups, features, device, dtype=PREDICT_DTYPE):
    """Fitted groups as ``(flat, Layout, features or None, activation)`` on ``device``.

    Also returns the member-order inverse (or None).
    """
    out = []
    for g in groups:
        # each group reads as many columns as its first layer takes (members that drew
        # narrower inputs than others pad their column lists)
        feats = None if features is None else torch.from_numpy(
            np.ascontiguousarray(features[g.members, : g.sizes[0]])).to(device)
        out.append((torch.from_numpy(g.flat).to(device, dtype), g.layout, feats,
                    g.settings.activation))
    inverse = member_inverse(groups)
    return out, None if inverse is None else torch.from_numpy(inverse).to(device)


def chunk_rows(groups, device):
    """Rows per prediction chunk: all members' activations of a chunk stay ~64 MB.

    On CUDA the budget also stays under a quarter of the device's free memory, so
    predictions fit next to whatever else holds the GPU.
    """
    floats = ACTIVATION_BUDGET
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        floats = min(floats, free // 4 // 16)  # float64 activations, a few live copies
    n_members = sum(g.members.size for g in groups)
    widest = max(max(g.sizes) for g in groups)
    return max(1, int(floats) // max(1, n_members * widest))


@torch.no_grad()
def run_chunked(groups, features, activation, Xs, device, reduce):
    """Apply every member to host rows ``Xs (N, F)`` chunk by chunk; reduce each chunk.

    Parameters
    ----------
    groups : list of skensemble._training.Group
    features : ndarray (E, k) or None
    Xs : ndarray (N, F) float32, standardised, in host memory
        Each chunk is copied to ``device`` on its own, so the device never holds all rows.
    reduce : callable
        ``reduce(out (E, n, O), rows slice) -> Tensor`` whose first dimension is rows.

    Returns
    -------
    ndarray: the reduced chunks, concatenated along the first dimension.
    """
    try:
        dev_groups, inverse = on_device(groups, features, device)
        chunk = chunk_rows(groups, device)
        parts = []
        for s in range(0, Xs.shape[0], chunk):
            rows = slice(s, min(s + chunk, Xs.shape[0]))
            Xt = torch.from_numpy(Xs[rows]).to(device, PREDICT_DTYPE, non_blocking=True)
            parts.append(reduce(forward_members(dev_groups, Xt, activation, inverse), rows))
        return torch.cat(parts, dim=0).cpu().numpy()
    except torch.cuda.OutOfMemoryError as exc:
        raise MemoryError(
            f"{device} ran out of memory predicting with {sum(g.members.size for g in groups)} "
            "members. Free memory held by other processes, predict on fewer rows per call, "
            "or set device='cpu' on the fitted estimator."
        ) from exc
