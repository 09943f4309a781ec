"""Pure-torch training engine: all ensemble members as one stacked computation.

Nothing in this module knows about scikit-learn. It defines the mathematics every
engine implements (forward pass, losses, gradients, optimizer updates) and the
contract they share:

    run one epoch for all members: parameters, optimizer state, data and the
    per-member sample order in; parameters and optimizer state updated in place,
    per-member mean training loss out.

Parameter storage
-----------------
All parameters of one member live in one contiguous row of a flat ``(E, P)``
float32 tensor; :class:`Layout` knows where each layer's weight ``(fan_in,
fan_out)`` and bias ``(fan_out,)`` sit inside that row and hands out stacked
views ``W (E, fan_in, fan_out)`` and ``b (E, 1, fan_out)``. One flat row per
member is what a member-major kernel wants (one cache-resident block per
member) and what the batched torch path wants (one ``baddbmm`` per layer).

Shape legend
------------
E   members of the ensemble
N   rows of the training set
M   rows one member visits per epoch (its bootstrap / subsample size)
B   rows per step per member (batch size); the last batch may be shorter
F   input features
H   hidden units of a layer
O   outputs: regression targets, or classes for classification
P   parameters of one member, all layers flattened
S   optimizer state slots: 2 for adam (first and second moments), 1 for sgd
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

ACTIVATIONS = ("identity", "logistic", "tanh", "relu")
LOSSES = ("squared_error", "log_loss")
SOLVERS = ("adam", "sgd")


# --------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class Layout:
    """Where each layer's weight and bias live inside a member's flat parameter row.

    Parameters
    ----------
    sizes : tuple of int
        ``(F, H_1, ..., H_k, O)``: input width, hidden widths, output width.
    """

    sizes: tuple

    def __post_init__(self):
        object.__setattr__(self, "sizes", tuple(int(s) for s in self.sizes))
        offsets, pos = [], 0
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:]):
            w_off = pos
            b_off = w_off + fan_in * fan_out
            pos = b_off + fan_out
            offsets.append((w_off, b_off, pos))
        object.__setattr__(self, "_offsets", tuple(offsets))

    @property
    def n_layers(self):
        """Number of affine layers (hidden layers + output layer)."""
        return len(self.sizes) - 1

    @property
    def n_params(self):
        """P: parameters of one member."""
        return self._offsets[-1][2]

    @property
    def offsets(self):
        """Per layer ``(weight_start, bias_start, end)`` inside a flat row."""
        return self._offsets

    def offsets_array(self):
        """int64 array ``(n_layers, 3)`` of :attr:`offsets`, for compiled kernels."""
        return np.asarray(self._offsets, dtype=np.int64).reshape(-1, 3)

    def views(self, flat):
        """Stacked per-layer views of ``flat (E, P)``: list of ``(W (E, fi, fo), b (E, 1, fo))``."""
        E = flat.shape[0]
        out = []
        for (w0, b0, end), fi, fo in zip(self._offsets, self.sizes[:-1], self.sizes[1:]):
            W = flat[:, w0:b0].view(E, fi, fo)  # (E, P) row slice -> (E, fan_in, fan_out)
            b = flat[:, b0:end].view(E, 1, fo)  # (E, 1, fan_out), broadcasts over rows
            out.append((W, b))
        return out

    def weight_mask(self, device=None):
        """Float ``(P,)``: 1 at weights (L2-penalised), 0 at biases."""
        mask = torch.zeros(self.n_params, dtype=torch.float32, device=device)
        for w0, b0, _ in self._offsets:
            mask[w0:b0] = 1.0
        return mask


@dataclass(frozen=True)
class Hyper:
    """Hyper-parameters that fix the mathematics of a training step (same in every engine)."""

    activation: str = "relu"
    loss: str = "squared_error"
    solver: str = "adam"
    alpha: float = 1e-4
    batch_size: int = 32
    momentum: float = 0.9
    nesterovs_momentum: bool = True
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8

    @property
    def n_state(self):
        """S: optimizer state slots per parameter."""
        return 2 if self.solver == "adam" else 1


# ------------------------------------------------------------------ initialisation
def init_parameters(layout, seeds, activation, device=None):
    """Glorot-uniform weights and biases, each member from its own seed.

    Matches scikit-learn's MLP initialisation: ``U(-r, r)`` with
    ``r = sqrt(factor / (fan_in + fan_out))``, factor 2 for logistic, else 6.

    Parameters
    ----------
    layout : Layout
    seeds : sequence of int, length E
    activation : str

    Returns
    -------
    flat : Tensor (E, P) float32
    """
    factor = 2.0 if activation == "logistic" else 6.0
    rows = []
    # A loop over members here is set-up, not training: one generator per member makes
    # member e's initial weights a function of its own seed only (warm start, engines).
    for seed in seeds:
        g = torch.Generator().manual_seed(int(seed))
        parts = []
        for fi, fo in zip(layout.sizes[:-1], layout.sizes[1:]):
            bound = math.sqrt(factor / (fi + fo))
            parts.append((torch.rand(fi * fo + fo, generator=g) * 2 - 1) * bound)
        rows.append(torch.cat(parts))
    flat = torch.stack(rows).to(torch.float32)  # (E, P)
    return flat.to(device) if device is not None else flat


def init_state(flat, hyper):
    """Zeroed optimizer state ``(S, E, P)`` and per-member step counts ``(E,)`` int64."""
    E, P = flat.shape
    state = torch.zeros(hyper.n_state, E, P, dtype=flat.dtype, device=flat.device)
    steps = torch.zeros(E, dtype=torch.int64, device=flat.device)
    return state, steps


# ------------------------------------------------------------------ forward, losses
def activate(z, name):
    """Apply the hidden activation ``name`` to ``z`` (any shape)."""
    if name == "relu":
        return torch.relu(z)
    if name == "tanh":
        return torch.tanh(z)
    if name == "logistic":
        return torch.sigmoid(z)
    return z


def activation_grad_from_output(a, name):
    """Derivative of the activation expressed through its output ``a``."""
    if name == "relu":
        return (a > 0).to(a.dtype)
    if name == "tanh":
        return 1 - a * a
    if name == "logistic":
        return a * (1 - a)
    return torch.ones_like(a)


def gather_inputs(X, idx, features=None):
    """Each member's input rows: ``X (N, F)``, ``idx (E, B)`` -> ``(E, B, F)`` or ``(E, B, k)``.

    ``features (E, k)`` selects each member's own feature subset (None: all features).
    """
    if features is None:
        return X[idx]  # (E, B, F)
    return X[idx.unsqueeze(-1), features.unsqueeze(1)]  # (E, B, 1) x (E, 1, k) -> (E, B, k)


def forward(flat, layout, X, activation, features=None):
    """Raw outputs (pre-softmax for classification) of every member.

    Parameters
    ----------
    flat : Tensor (E, P)
    X : Tensor (E, B, F), or (B, F) shared by all members
    features : Tensor (E, k) int64 or None
        Each member's feature subset, applied to a shared 2-D ``X``.

    Returns
    -------
    Tensor (E, B, O)
    """
    layers = layout.views(flat)
    E = flat.shape[0]
    if X.dim() == 3:
        h = X
    elif features is None:
        h = X.unsqueeze(0).expand(E, -1, -1)  # (E, B, F), no copy
    else:
        h = X[:, features].permute(1, 0, 2)  # (B, E, k) -> (E, B, k)
    for i, (W, b) in enumerate(layers):
        h = torch.baddbmm(b, h, W)  # (E, B, fan_out): one batched matmul for all members
        if i < len(layers) - 1:
            h = activate(h, activation)
    return h


def per_row_loss(out, Y, loss):
    """Per-row loss ``(E, B)`` from raw outputs ``out (E, B, O)`` and targets ``Y (E, B, O)``.

    squared_error: ``0.5 * sum_o (out - y)^2``; log_loss: ``-sum_k y_k log softmax(out)_k``
    (``Y`` one-hot).
    """
    if loss == "squared_error":
        return 0.5 * ((out - Y) ** 2).sum(-1)
    return -(Y * torch.log_softmax(out, dim=-1)).sum(-1)


def output_delta(out, Y, loss):
    """d(per-row loss)/d(out), ``(E, B, O)``: residual for both losses (canonical links)."""
    if loss == "squared_error":
        return out - Y
    return torch.softmax(out, dim=-1) - Y


# -------------------------------------------------------------------- optimizer
def apply_update(flat, grad, state, steps, lr, hyper):
    """One optimizer step for all members, in place.

    Parameters
    ----------
    flat, grad : Tensor (E, P)
    state : Tensor (S, E, P)
    steps : Tensor (E,) int64, incremented
    lr : float or 0-dim Tensor
        A device scalar keeps the step free of host values (graph capture).

    Notes
    -----
    adam follows scikit-learn's formulation
    ``p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``;
    sgd is heavy-ball ``v = mu v - lr g; p += v`` or, with Nesterov,
    ``p += mu v - lr g`` after the velocity update (as scikit-learn).
    """
    steps += 1
    if not torch.is_tensor(lr):
        lr = torch.tensor(float(lr), dtype=flat.dtype, device=flat.device)
    if hyper.solver == "adam":
        m, v = state[0], state[1]
        m.mul_(hyper.beta_1).add_(grad, alpha=1 - hyper.beta_1)
        v.mul_(hyper.beta_2).addcmul_(grad, grad, value=1 - hyper.beta_2)
        t = steps.to(flat.dtype).unsqueeze(1)  # (E, 1)
        lr_t = lr * torch.sqrt(1 - hyper.beta_2**t) / (1 - hyper.beta_1**t)  # (E, 1)
        flat.sub_(lr_t * m / (v.sqrt() + hyper.epsilon))
    else:
        vel = state[0]
        vel.mul_(hyper.momentum).addcmul_(grad, lr, value=-1)
        if hyper.nesterovs_momentum:
            flat.add_(vel, alpha=hyper.momentum).addcmul_(grad, lr, value=-1)
        else:
            flat.add_(vel)


# ----------------------------------------------------------------------- epochs
def _batches(M, B):
    """Start and stop of every batch of an epoch of M rows."""
    for start in range(0, M, B):
        yield start, min(start + B, M)


def epoch_reference(flat, state, steps, X, Y, sw, order, lr, hyper, layout, features=None):
    """One epoch for all members with autograd: the readable definition of the mathematics.

    Parameters
    ----------
    flat : Tensor (E, P), updated in place
    state : Tensor (S, E, P), updated in place
    steps : Tensor (E,) int64, updated in place
    X : Tensor (N, F)
    Y : Tensor (N, O)
    sw : Tensor (N,) or None
        Per-row weights (mean 1 over the training set).
    order : Tensor (E, M) int64
        Rows each member visits this epoch, in order.
    lr : float
    features : Tensor (E, k) int64 or None
        Each member's feature subset (its first layer has ``k`` inputs); None: all.

    Returns
    -------
    Tensor (E,): per-member mean training loss over the epoch (data term only).
    """
    E, M = order.shape
    mask = layout.weight_mask(flat.device)  # (P,)
    total = torch.zeros(E, dtype=flat.dtype, device=flat.device)
    lr = torch.tensor(float(lr), dtype=flat.dtype, device=flat.device)  # once per epoch
    for start, stop in _batches(M, hyper.batch_size):
        idx = order[:, start:stop]  # (E, b)
        b = stop - start
        with torch.enable_grad():
            p = flat.detach().requires_grad_(True)
            out = forward(p, layout, gather_inputs(X, idx, features), hyper.activation)
            rows = per_row_loss(out, Y[idx], hyper.loss)  # (E, b)
            if sw is not None:
                rows = rows * sw[idx]
            data = rows.sum(1) / b  # (E,)
            l2 = (0.5 * hyper.alpha / b) * ((p * p) * mask).sum(1)  # (E,)
            # Members are independent: the gradient of the sum is each member's own gradient.
            (grad,) = torch.autograd.grad((data + l2).sum(), p)
        total += data.detach() * b
        apply_update(flat, grad, state, steps, lr, hyper)
    return total / M


def _batched_step(flat, grad, state, steps, X, Y, sw, idx, lr, hyper, layout, total, features):
    """One hand-written step for all members on the rows ``idx (E, b)``; adds to ``total (E,)``.

    Allocation-free apart from activations; no host-device synchronisation, so it can be
    captured in a CUDA graph.
    """
    layers = layout.views(flat)
    gviews = layout.views(grad)
    n_layers = len(layers)
    b = idx.shape[1]
    acts = [gather_inputs(X, idx, features)]  # (E, b, F) or (E, b, k)
    for i, (W, bias) in enumerate(layers):
        z = torch.baddbmm(bias, acts[-1], W)  # (E, b, fan_out)
        acts.append(activate(z, hyper.activation) if i < n_layers - 1 else z)
    Yb = Y[idx]  # (E, b, O)
    rows = per_row_loss(acts[-1], Yb, hyper.loss)  # (E, b)
    delta = output_delta(acts[-1], Yb, hyper.loss)  # (E, b, O)
    if sw is not None:
        w = sw[idx]  # (E, b)
        rows = rows * w
        delta = delta * w.unsqueeze(-1)
    total += rows.sum(1)
    delta = delta / b
    for i in range(n_layers - 1, -1, -1):
        W, _ = layers[i]
        gW, gb = gviews[i]
        # dL/dW = a^T delta (+ L2): (E, fan_in, b) @ (E, b, fan_out)
        torch.baddbmm(W, acts[i].transpose(1, 2), delta, beta=hyper.alpha / b, out=gW)
        gb.copy_(delta.sum(1, keepdim=True))  # (E, 1, fan_out)
        if i > 0:
            # back through the layer and the activation: (E, b, fan_out) @ (E, fan_out, fan_in)
            delta = torch.bmm(delta, W.transpose(1, 2))
            delta.mul_(activation_grad_from_output(acts[i], hyper.activation))
    apply_update(flat, grad, state, steps, lr, hyper)


def epoch_batched(flat, state, steps, X, Y, sw, order, lr, hyper, layout, features=None):
    """One epoch for all members, forward and backward written out (no autograd).

    Same contract and mathematics as :func:`epoch_reference`; one ``baddbmm`` per layer
    forward and two ``bmm`` per layer backward for all members, gradients written into
    one preallocated ``(E, P)`` buffer.
    """
    E, M = order.shape
    grad = torch.empty_like(flat)  # (E, P)
    total = torch.zeros(E, dtype=flat.dtype, device=flat.device)
    lr = torch.tensor(float(lr), dtype=flat.dtype, device=flat.device)  # once per epoch
    for start, stop in _batches(M, hyper.batch_size):
        _batched_step(flat, grad, state, steps, X, Y, sw, order[:, start:stop], lr, hyper,
                      layout, total, features)
    return total / M


class _ChunkRunner:
    """Static buffers plus ``chunk`` batched steps, captured in a CUDA graph when asked.

    The steps read their rows from the static ``order`` buffer, so a replay needs only a
    device-to-device copy of the next slice of the epoch's order: no launch per kernel,
    no host synchronisation.
    """

    def __init__(self, flat, state, steps, X, Y, sw, hyper, layout, chunk, capture, features):
        E, B = flat.shape[0], hyper.batch_size
        dev = flat.device
        self.order = torch.zeros(E, chunk * B, dtype=torch.int64, device=dev)  # (E, chunk*B)
        self.total = torch.zeros(E, dtype=flat.dtype, device=dev)
        self.grad = torch.empty_like(flat)
        self.lr = torch.zeros((), dtype=flat.dtype, device=dev)

        def run():
            for s in range(chunk):
                _batched_step(flat, self.grad, state, steps, X, Y, sw,
                              self.order[:, s * B : (s + 1) * B], self.lr, hyper, layout,
                              self.total, features)

        self.run = run
        if capture:
            # Warm up (cuBLAS handles, allocator pools) on clones, so that the real
            # parameters are untouched; capture then records kernels without running them.
            side = torch.cuda.Stream(dev)
            side.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(side):
                f2, s2, t2, tot2 = flat.clone(), state.clone(), steps.clone(), self.total.clone()
                for _ in range(2):
                    _batched_step(f2, self.grad, s2, t2, X, Y, sw, self.order[:, :B], self.lr,
                                  hyper, layout, tot2, features)
            torch.cuda.current_stream(dev).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                run()
            self.run = self.graph.replay


_RUNNER_CACHE = {}

# Whether epoch_graphed captures CUDA graphs on CUDA; tests that simulate a device on the
# CPU turn it off to run the identical static-buffer schedule eagerly.
CAPTURE_GRAPHS = True


def release_graphs():
    """Drop the cached CUDA-graph runner (its static buffers and memory pool).

    Called when a group's training ends, so that a finished fit holds no device memory.
    """
    _RUNNER_CACHE.clear()


def epoch_graphed(flat, state, steps, X, Y, sw, order, lr, hyper, layout, features=None,
                  chunk=64, capture=None):
    """Batched epoch replayed from a CUDA graph of ``chunk`` steps at a time.

    Same contract as :func:`epoch_reference`. ``capture=None`` captures on CUDA; with
    ``capture=False`` the identical static-buffer schedule runs eagerly (how the CPU
    tests check it). Steps that do not fill a whole chunk run eagerly.
    """
    E, M = order.shape
    B = hyper.batch_size
    capture = (flat.is_cuda and CAPTURE_GRAPHS) if capture is None else capture
    chunk = max(1, min(chunk, M // B))
    key = (flat.data_ptr(), state.data_ptr(), steps.data_ptr(), X.data_ptr(), Y.data_ptr(),
           None if sw is None else sw.data_ptr(),
           None if features is None else features.data_ptr(), tuple(flat.shape), hyper, layout,
           chunk, capture)
    runner = _RUNNER_CACHE.get(key)
    if runner is None:
        _RUNNER_CACHE.clear()  # one fit at a time per process keeps one graph alive
        runner = _RUNNER_CACHE[key] = _ChunkRunner(flat, state, steps, X, Y, sw, hyper,
                                                   layout, chunk, capture, features)
    runner.lr.fill_(float(lr))
    runner.total.zero_()
    per_chunk = chunk * B
    n_chunks = M // per_chunk
    for c in range(n_chunks):
        runner.order.copy_(order[:, c * per_chunk : (c + 1) * per_chunk])
        runner.run()
    for start, stop in _batches(M - n_chunks * per_chunk, B):
        off = n_chunks * per_chunk
        _batched_step(flat, runner.grad, state, steps, X, Y, sw,
                      order[:, off + start : off + stop], runner.lr, hyper, layout,
                      runner.total, features)
    return runner.total / M


# ---------------------------------------------------------------- streaming
def epoch_streamed(epoch_fn, flat, state, steps, X, Y, sw, order, lr, hyper, layout,
                   features=None, chunk_steps=64):
    """One epoch of ``epoch_fn`` with the training data left in host memory.

    For data larger than the device: the epoch's steps run in chunks of ``chunk_steps``
    batches; for each chunk the rows every member visits are gathered on the host into
    pinned memory, copied to the device without blocking, and handed to ``epoch_fn``
    with a local order. The host gathers the next chunk while the device still runs
    the last one's kernels. The steps, their order and their batches are exactly those
    of an unstreamed epoch (chunks are whole batches), so the result is the same.

    Parameters
    ----------
    epoch_fn : callable
        Any engine's epoch function.
    X, Y : Tensor (N, F), (N, O) on the CPU
    sw : Tensor (N,) on the CPU, or None
    order : Tensor (E, M) int64 on the CPU
    chunk_steps : int
        Batches per chunk; a chunk holds ``E * chunk_steps * B`` rows on the device.

    Returns
    -------
    Tensor (E,) on ``flat``'s device: per-member mean training loss.
    """
    E, M = order.shape
    rows_per_chunk = max(1, chunk_steps) * hyper.batch_size
    device = flat.device
    pin = device.type == "cuda"
    total = torch.zeros(E, dtype=flat.dtype, device=device)
    for start in range(0, M, rows_per_chunk):
        idx = order[:, start : start + rows_per_chunk]  # (E, c) rows of this chunk
        c = idx.shape[1]
        flat_idx = idx.reshape(-1)  # (E * c,)

        def move(t):
            part = t[flat_idx]
            return (part.pin_memory() if pin else part).to(device, non_blocking=True)

        local = torch.arange(E * c, device=device).view(E, c)  # member e's rows, in order
        extra = {} if features is None else {"features": features}
        loss = epoch_fn(flat, state, steps, move(X), move(Y), None if sw is None else move(sw),
                        local, lr, hyper, layout, **extra)
        total += loss * c
    return total / M


# ---------------------------------------------------------------------- predict
@torch.no_grad()
def predict_chunked(flat, layout, X, activation, reduce, chunk_rows=None, features=None):
    """Apply every member to ``X`` in row chunks and reduce over members.

    Parameters
    ----------
    flat : Tensor (E, P)
    X : Tensor (N, F) on the same device
    reduce : callable
        Maps raw outputs ``(E, n, O)`` of a chunk to a tensor whose first dim is rows
        or members-then-rows; chunks are concatenated along ``dim``.
    chunk_rows : int or None
        Rows per chunk; by default sized so that one chunk's activations stay ~64 MB.
    features : Tensor (E, k) int64 or None
        Each member's feature subset.

    Returns
    -------
    list of the reduced chunks (caller concatenates).
    """
    E = flat.shape[0]
    if chunk_rows is None:
        widest = max(layout.sizes)
        chunk_rows = max(1, (16 * 2**20) // max(1, E * widest))  # 16M floats = 64 MB
    return [
        reduce(forward(flat, layout, X[s : s + chunk_rows].to(flat.device, non_blocking=True),
                       activation, features))
        for s in range(0, X.shape[0], chunk_rows)
    ]
