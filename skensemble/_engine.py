"""Pure-torch training engine: all ensemble members as one stacked computation.

Nothing in this module knows about scikit-learn. It defines the mathematics every
engine implements (forward pass, losses, gradients, optimizer updates) and the
contract they share:

    ``epoch(params, data, order, member, hyper) -> losses (E,)``: one epoch for all
    members. :class:`Params` (parameters, optimizer state, step counts, layout) are
    updated in place; :class:`Data` (scaled rows, targets, weights, and what each
    member's first layer reads of them: :class:`~skensemble._inputs.FirstLayer`),
    the per-member visiting ``order (E, M)``, each member's own values
    (:class:`Member`: learning rate, L2 strength) and the step's mathematics
    (:class:`Hyper`) are read; each member's mean training loss comes out.

Its epochs are the reference (autograd, the readable definition) and the
batched one (one ``bmm`` per layer for all members); :mod:`skensemble._schedule` runs the
batched steps from CUDA graphs or on data streamed from the host, and the compiled
engines live in :mod:`skensemble._kernels`.

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
from dataclasses import dataclass, fields

import numpy as np
import torch

from . import _optim
from ._inputs import member_inputs, shared_inputs

ACTIVATIONS = ("identity", "logistic", "tanh", "relu")
LOSSES = ("squared_error", "log_loss", "quantile")


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
    weight_decay: float = 0.0
    # loss="quantile": the quantile level of each output, (O,) floats in (0, 1)
    quantiles: tuple = ()

    @property
    def n_state(self):
        """S: optimizer state slots per parameter (the solver's, :mod:`._optim`)."""
        return _optim.solver(self.solver).n_state


@dataclass
class Params:
    """A group's training state on its device; an epoch updates the tensors in place.

    Attributes
    ----------
    flat : Tensor (E, P) float32
    state : Tensor (S, E, P) float32
    steps : Tensor (E,) int64
        Optimizer steps each member has taken.
    layout : Layout
    """

    flat: torch.Tensor
    state: torch.Tensor
    steps: torch.Tensor
    layout: Layout

    def take(self, idx):
        """A copy of the members ``idx`` (Tensor of positions on the device)."""
        return Params(self.flat[idx], self.state[:, idx].contiguous(), self.steps[idx],
                      self.layout)

    def put(self, idx, part):
        """Write ``part`` (from :meth:`take`) back to the members ``idx``."""
        self.flat[idx], self.state[:, idx], self.steps[idx] = part.flat, part.state, part.steps

    def copy_from(self, other):
        """Overwrite every tensor with ``other``'s (same shapes)."""
        for mine, theirs in ((self.flat, other.flat), (self.state, other.state),
                             (self.steps, other.steps)):
            mine.copy_(theirs)

    def clone(self):
        return Params(self.flat.clone(), self.state.clone(), self.steps.clone(), self.layout)


@dataclass
class Data:
    """The rows an epoch reads, where they live (the device, or staged chunks).

    Attributes
    ----------
    X : Tensor (N, F) float32
        Scaled values (:mod:`._scaling`); what each first layer reads of them is ``first``.
    Y : Tensor (N, O) float32
        Targets (standardised, or one-hot / smoothed).
    sw : Tensor (N,) float32 or None
        Per-row loss weights (mean 1 over the training set).
    first : skensemble._inputs.FirstLayer or None
        Each member's first-layer inputs: columns of ``X`` and their bins, as tensors on
        the compute device; None: every member reads ``X``'s columns in order.
    """

    X: torch.Tensor
    Y: torch.Tensor
    sw: torch.Tensor = None
    first: object = None

    def for_members(self, idx):
        """The same rows for the members ``idx`` only (their first layers)."""
        if self.first is None:
            return self
        return Data(self.X, self.Y, self.sw, self.first.take(idx))


@dataclass
class Member:
    """Each member's own values of an epoch, ``(E,)`` float32 tensors on the device.

    Attributes
    ----------
    lr : Tensor (E,)
        Learning rates (every engine reads them per member).
    alpha : Tensor (E,) or None
        L2 strengths; None: ``hyper.alpha`` for every member (one scalar in the
        arithmetic, as without per-member values).
    momentum : Tensor (E,) or None
        sgd's momentum; None: ``hyper.momentum`` for every member.

    A field that is None means "the :class:`Hyper` value of the same name for every
    member"; which fields an engine reads per member is declared with the engine
    (:mod:`._engines`), and ``member_params`` names map to fields in
    :mod:`._hyperspace`'s registry.
    """

    lr: torch.Tensor
    alpha: torch.Tensor = None
    momentum: torch.Tensor = None

    @classmethod
    def of(cls, lr, device=None, **values):
        """From numbers: ``lr`` a float or ``(E,)``; each other field ``(E,)`` or None.

        Each value is rounded to float32 once, as the engines' scalars are.
        """
        def tensor(v):
            if v is None:
                return None
            return torch.as_tensor(np.asarray(v, dtype=np.float32).reshape(-1), device=device)

        return cls(tensor(lr), **{k: tensor(v) for k, v in values.items()})

    def _map(self, fn):
        return Member(**{f.name: None if getattr(self, f.name) is None
                         else fn(getattr(self, f.name)) for f in fields(self)})

    def take(self, idx):
        """The values of the members ``idx``."""
        return self._map(lambda t: t[idx])

    def repeated(self, n):
        """Each value ``n`` times in a row (a member trained as ``n`` identical ones)."""
        return self._map(lambda t: t.repeat_interleave(n))

    def present(self):
        """Names of the fields given per member besides ``lr`` (frozenset)."""
        return frozenset(f.name for f in fields(self)
                         if f.name != "lr" and getattr(self, f.name) is not None)


def smooth_labels(Y, eps):
    """Targets a classifier's members fit: one-hot ``Y (N, K)`` smoothed by ``eps``, float32.

    ``(1 - eps) * Y + eps / K`` (Szegedy et al., 2016), computed in float64. The one
    place label smoothing is defined; validation and scores use ``Y`` itself.
    """
    Y = np.asarray(Y, dtype=np.float64)
    return ((1.0 - eps) * Y + eps / Y.shape[1]).astype(np.float32)


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


def forward(flat, layout, X, activation, first=None):
    """Raw outputs (pre-softmax for classification) of every member.

    Parameters
    ----------
    flat : Tensor (E, P)
    X : Tensor (E, B, W) first-layer inputs, or (B, F) rows shared by all members
    first : skensemble._inputs.FirstLayer or None
        What each member's first layer reads of a shared 2-D ``X``.

    Returns
    -------
    Tensor (E, B, O)
    """
    E = flat.shape[0]
    if E == 1 and flat.device.type == "cpu":  # as the first of two (see _as_pair)
        twin = None if first is None else first.take(torch.zeros(2, dtype=torch.int64))
        x2 = torch.cat([X, X]) if X.dim() == 3 else X
        return forward(torch.cat([flat, flat]), layout, x2, activation, twin)[:1]
    layers = layout.views(flat)
    if X.dim() == 3:
        h = X
    elif first is None:
        h = X.unsqueeze(0).expand(E, -1, -1)  # (E, B, F), no copy
    else:
        h = shared_inputs(X, first)  # (E, B, W)
    for i, (W, b) in enumerate(layers):
        h = torch.baddbmm(b, h, W)  # (E, B, fan_out): one batched matmul for all members
        if i < len(layers) - 1:
            h = activate(h, activation)
    return h


def per_row_loss(out, Y, loss, quantiles=()):
    """Per-row loss ``(E, B)`` from raw outputs ``out (E, B, O)`` and targets ``Y (E, B, O)``.

    squared_error: ``0.5 * sum_o (out - y)^2``; log_loss: ``-sum_k y_k log softmax(out)_k``
    (``Y`` one-hot); quantile: the pinball loss ``sum_o (out_o - y_o) * g_o`` with
    ``g_o = [out_o > y_o] - quantiles[o]`` (:func:`_pinball_slope`), i.e.
    ``tau * (y - out)`` below the target and ``(1 - tau) * (out - y)`` above it.
    """
    if loss == "squared_error":
        return 0.5 * ((out - Y) ** 2).sum(-1)
    if loss == "quantile":
        return ((out - Y) * _pinball_slope(out, Y, quantiles)).sum(-1)
    return -(Y * torch.log_softmax(out, dim=-1)).sum(-1)


def _pinball_slope(out, Y, quantiles):
    """``[out > Y] - tau`` per output ``(E, B, O)``: the pinball loss's slope in ``out``.

    At ``out == Y`` the slope is ``-tau`` (one subgradient, the same in every engine).
    Built from Python floats, one output at a time: no tensor is made from host values,
    so a CUDA graph can capture it.
    """
    if len(quantiles) != out.shape[-1]:
        raise ValueError(f"loss='quantile' needs one quantile per output: got "
                         f"{len(quantiles)} for {out.shape[-1]} outputs")
    above = (out > Y).to(out.dtype)  # (E, B, O), no gradient
    if len(set(quantiles)) == 1:
        return above - quantiles[0]
    return torch.stack([above[..., o] - q for o, q in enumerate(quantiles)], dim=-1)


def output_delta(out, Y, loss, quantiles=()):
    """d(per-row loss)/d(out), ``(E, B, O)``.

    The residual for squared error and log-loss (canonical links), the pinball slope for
    the quantile loss.
    """
    if loss == "squared_error":
        return out - Y
    if loss == "quantile":
        return _pinball_slope(out, Y, quantiles)
    return torch.softmax(out, dim=-1) - Y


# -------------------------------------------------------------------- optimizer
def decay_weights(flat, layout, lr, hyper):
    """Decoupled weight decay (AdamW's), in place: every weight times ``1 - lr * weight_decay``.

    Biases are not decayed (as ``alpha``'s L2 leaves them alone). Called after the
    gradient is computed and before :func:`apply_update`, so the step is
    ``w <- w (1 - lr wd) - (the optimizer's step)``, as ``torch.optim.AdamW`` takes it.
    ``lr``: a 0-dim or ``(E, 1)`` tensor.
    """
    keep = 1 - lr * hyper.weight_decay
    keep = keep.view(-1, 1, 1) if keep.dim() == 2 else keep
    for W, _ in layout.views(flat):
        W.mul_(keep)


def apply_update(flat, grad, state, steps, lr, hyper, member=None):
    """One optimizer step for all members, in place: the solver's update (:mod:`._optim`).

    Parameters
    ----------
    flat, grad : Tensor (E, P)
    state : Tensor (S, E, P)
    steps : Tensor (E,) int64, incremented
    lr : Tensor 0-dim or (E, 1)
        One rate for all members or one per member, on the device (graph capture
        reads no host values).
    member : Member or None
        Each member's own values the solver reads (its other fields than ``lr``).
    """
    _optim.solver(hyper.solver).update(flat, grad, state, steps, lr, hyper, member)


# ----------------------------------------------------------------------- epochs
def _batches(M, B):
    """Start and stop of every batch of an epoch of M rows."""
    for start in range(0, M, B):
        yield start, min(start + B, M)


def epoch_reference(params, data, order, member, hyper):
    """One epoch for all members with autograd: the readable definition of the mathematics.

    Parameters
    ----------
    params : Params
        Updated in place.
    data : Data
        ``X (N, F)``, ``Y (N, O)``, ``sw (N,)`` or None (per-row weights, mean 1 over the
        training set), ``first`` (each member's first-layer inputs) or None.
    order : Tensor (E, M) int64
        Rows each member visits this epoch, in order.
    member : Member
        Each member's learning rate and (or None: ``hyper.alpha``) L2 strength.
    hyper : Hyper

    Returns
    -------
    Tensor (E,): per-member mean training loss over the epoch (data term only).
    """
    flat, layout = params.flat, params.layout
    E, M = order.shape
    if E == 1 and flat.device.type == "cpu":
        return _as_pair(epoch_reference, params, data, order, member, hyper)
    mask = layout.weight_mask(flat.device)  # (P,)
    alpha = hyper.alpha if member.alpha is None else member.alpha  # float or (E,)
    total = torch.zeros(E, dtype=flat.dtype, device=flat.device)
    lr = member.lr.reshape(-1, 1)  # (E, 1)
    for start, stop in _batches(M, hyper.batch_size):
        idx = order[:, start:stop]  # (E, b)
        b = stop - start
        with torch.enable_grad():
            p = flat.detach().requires_grad_(True)
            out = forward(p, layout, member_inputs(data.X, idx, data.first),
                          hyper.activation)
            rows = per_row_loss(out, data.Y[idx], hyper.loss, hyper.quantiles)  # (E, b)
            if data.sw is not None:
                rows = rows * data.sw[idx]
            loss = rows.sum(1) / b  # (E,)
            l2 = (0.5 * alpha / b) * ((p * p) * mask).sum(1)  # (E,)
            # Members are independent: the gradient of the sum is each member's own gradient.
            (grad,) = torch.autograd.grad((loss + l2).sum(), p)
        total += loss.detach() * b
        if hyper.weight_decay:
            decay_weights(flat, layout, lr, hyper)
        apply_update(flat, grad, params.state, params.steps, lr, hyper, member)
    return total / M


def _as_pair(epoch, params, data, order, member, hyper):
    """Train one CPU member as the first of two identical members, so it rounds as in a group.

    With one member, torch's CPU products take other BLAS routines than with several (a
    matrix-vector product where the output layer has one unit), which round differently:
    a member would then not train bit for bit the same alone (a chunk of ``n_jobs``, a
    group of one architecture) as among others. The twin costs one member's arithmetic.
    """
    two = torch.zeros(2, dtype=torch.int64)  # member 0 twice
    pair = params.take(two)
    losses = epoch(pair, data.for_members(two), order[two], member.repeated(2), hyper)
    params.flat.copy_(pair.flat[:1])
    params.state.copy_(pair.state[:, :1])
    params.steps.copy_(pair.steps[:1])
    return losses[:1]


def _batched_step(params, grad, data, idx, member, hyper, total):
    """One hand-written step for all members on the rows ``idx (E, b)``; adds to ``total (E,)``.

    ``member`` holds each member's values as ``(E,)`` tensors (read through views, so a
    CUDA graph captured on them reads their contents at replay); ``grad (E, P)`` is a
    buffer.

    Allocation-free apart from activations; no host-device synchronisation, so it can be
    captured in a CUDA graph.
    """
    flat, layout = params.flat, params.layout
    lr = member.lr.view(-1, 1)  # (E, 1)
    alpha = None if member.alpha is None else member.alpha.view(-1, 1, 1)
    layers = layout.views(flat)
    gviews = layout.views(grad)
    n_layers = len(layers)
    b = idx.shape[1]
    acts = [member_inputs(data.X, idx, data.first)]  # (E, b, F) or (E, b, W)
    for i, (W, bias) in enumerate(layers):
        z = torch.baddbmm(bias, acts[-1], W)  # (E, b, fan_out)
        acts.append(activate(z, hyper.activation) if i < n_layers - 1 else z)
    Yb = data.Y[idx]  # (E, b, O)
    rows = per_row_loss(acts[-1], Yb, hyper.loss, hyper.quantiles)  # (E, b)
    delta = output_delta(acts[-1], Yb, hyper.loss, hyper.quantiles)  # (E, b, O)
    if data.sw is not None:
        w = data.sw[idx]  # (E, b)
        rows = rows * w
        delta = delta * w.unsqueeze(-1)
    total += rows.sum(1)
    delta = delta / b
    for i in range(n_layers - 1, -1, -1):
        W, _ = layers[i]
        gW, gb = gviews[i]
        # dL/dW = a^T delta (+ L2): (E, fan_in, b) @ (E, b, fan_out)
        if alpha is None:
            torch.baddbmm(W, acts[i].transpose(1, 2), delta, beta=hyper.alpha / b, out=gW)
        else:  # each member's own L2: (E, 1, 1) * W
            torch.baddbmm(W * (alpha / b), acts[i].transpose(1, 2), delta, out=gW)
        gb.copy_(delta.sum(1, keepdim=True))  # (E, 1, fan_out)
        if i > 0:
            # back through the layer and the activation: (E, b, fan_out) @ (E, fan_out, fan_in)
            delta = torch.bmm(delta, W.transpose(1, 2))
            delta.mul_(activation_grad_from_output(acts[i], hyper.activation))
    if hyper.weight_decay:
        decay_weights(flat, layout, lr, hyper)
    apply_update(flat, grad, params.state, params.steps, lr, hyper, member)


def epoch_batched(params, data, order, member, hyper):
    """One epoch for all members, forward and backward written out (no autograd).

    Same contract and mathematics as :func:`epoch_reference`; one ``baddbmm`` per layer
    forward and two ``bmm`` per layer backward for all members, gradients written into
    one preallocated ``(E, P)`` buffer.
    """
    E, M = order.shape
    if E == 1 and params.flat.device.type == "cpu":
        return _as_pair(epoch_batched, params, data, order, member, hyper)
    grad = torch.empty_like(params.flat)  # (E, P)
    total = torch.zeros(E, dtype=params.flat.dtype, device=params.flat.device)
    member = member._map(lambda t: t.contiguous())  # views of them in every step
    for start, stop in _batches(M, hyper.batch_size):
        _batched_step(params, grad, data, order[:, start:stop], member, hyper, total)
    return total / M


# ---------------------------------------------------------------------- predict
@torch.no_grad()
def predict_rows(flat, layout, X, idx, activation, first=None, chunk_rows=None):
    """Raw outputs ``(E, n, O)`` of each member on its own rows ``X[idx[e]]``.

    Parameters
    ----------
    flat : Tensor (E, P)
    X : Tensor (N, F), where ``idx`` lives (host memory when streaming)
    idx : Tensor (E, n) int64
        Each member's rows of ``X``.
    first : skensemble._inputs.FirstLayer or None
        On ``flat``'s device.
    chunk_rows : int or None
        Rows of each member per chunk; by default one chunk's activations stay ~64 MB.
    """
    E, n = idx.shape
    if chunk_rows is None:
        chunk_rows = max(1, (16 * 2**20) // max(1, E * max(layout.sizes)))
    parts = []
    for s in range(0, n, chunk_rows):
        rows = X[idx[:, s : s + chunk_rows]].to(flat.device, non_blocking=True)  # (E, c, F)
        if first is not None:  # each member's inputs from its own rows
            x = torch.gather(rows, 2, first.src.unsqueeze(1).expand(-1, rows.shape[1], -1))
            rows = first.apply(x)  # (E, c, W)
        if flat.device.type == "cpu":
            parts.append(torch.stack([_forward_one(flat[e], layout, rows[e], activation)
                                      for e in range(E)]))
        else:
            parts.append(forward(flat, layout, rows, activation))
    return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


def _forward_one(row, layout, x, activation):
    """Raw outputs ``(c, O)`` of the one member ``row (P,)`` on its inputs ``x (c, W)``.

    On the CPU a member's validation is computed alone, one matrix product per layer:
    MKL chooses its code for a batch of matrices by their number, so a member computed
    among others would round differently in an ``n_jobs`` chunk of another size.
    """
    h = x
    last = len(layout.offsets) - 1
    for i, ((w0, b0, end), fi, fo) in enumerate(
            zip(layout.offsets, layout.sizes[:-1], layout.sizes[1:])):
        h = torch.addmm(row[b0:end], h, row[w0:b0].view(fi, fo))
        if i < last:
            h = activate(h, activation)
    return h


@torch.no_grad()
def predict_chunked(flat, layout, X, activation, reduce, chunk_rows=None, first=None):
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
    first : skensemble._inputs.FirstLayer or None
        What each member's first layer reads.

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
                       activation, first))
        for s in range(0, X.shape[0], chunk_rows)
    ]
