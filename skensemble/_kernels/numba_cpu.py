"""Member-major compiled CPU kernel (numba): one epoch of every member, in compiled code.

Same contract and mathematics as :func:`skensemble._engine.epoch_reference`; the
equivalence tests in ``tests/test_kernels_numba.py`` bind it to that definition.

Why member-major
----------------
At small batch sizes the batched torch path is dominated by per-step overhead: a
handful of tiny ``bmm`` calls per layer, each dispatched from Python, for every step.
Here one parallel loop runs over members and each member runs *all* the steps of its
epoch inside compiled code. A member's parameters and optimizer state are one
contiguous row of ``flat (E, P)`` and ``state (S, E, P)`` (a few hundred KB at most),
so they stay in the core's L2 cache for the whole epoch; only the sampled rows of
``X`` come from further away.

Per step and sample the kernel runs the forward pass layer by layer (``h_j += x_i W_ij``
with ``i`` outer and ``j`` inner, so the inner loop walks a contiguous weight row),
then the backward pass row by row. With a batch of one row the gradient is applied as
it is computed: a single sweep over weight row ``i`` reads ``W_i.``, accumulates
``sum_j W_ij delta_j`` (the error sent to the layer below, from the *old* weights),
and writes the updated weights and optimizer state. Larger batches accumulate a
per-member gradient buffer over the batch and apply it once.

Activations, errors and the gradient buffer live in scratch rows preallocated once per
thread (indexed by ``numba.get_thread_id()``), so nothing is allocated inside the step
loop. The thread count is the caller's: ``numba.set_num_threads``.

tanh is a rational approximation (the one Eigen uses for float32) that vectorises,
unlike a libm call; its absolute error is below 4e-7 (torch's own float32 ``tanh`` is
within 6e-8 of the exact value).

Shape legend
------------
E   members of the ensemble
N   rows of the training set
M   rows one member visits per epoch
B   rows per step (batch size); the last batch may be shorter
F   input features
O   outputs
L   affine layers (hidden layers + output layer)
P   parameters of one member
S   optimizer state slots: 2 for adam, 1 for sgd
A   activations of one row, all layers: ``sum(sizes)``
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from numba import njit, prange

# Integer codes for the string hyper-parameters: one compiled kernel serves every
# configuration (branches on these are outside the inner loops), so the JIT compiles once.
_ACT = {"identity": 0, "logistic": 1, "tanh": 2, "relu": 3}
_LOSS = {"squared_error": 0, "log_loss": 1}
_SOLVER = {"adam": 0, "sgd": 1}
_IDENTITY, _LOGISTIC, _TANH, _RELU = 0, 1, 2, 3
_LOG_LOSS = 1
_ADAM = 0

# Reassociation lets LLVM vectorise the reductions (sum_j W_ij delta_j, dot products);
# contraction lets it use FMA. No nnan/ninf: a diverging member must still show NaN/inf
# exactly as the torch engines would.
_FAST = {"contract", "reassoc", "nsz", "arcp"}

_f32 = np.float32
_ZERO = _f32(0.0)
_ONE = _f32(1.0)
_HALF = _f32(0.5)

# Rational approximation of tanh on [-c, c] (Eigen's generic_fast_tanh_float): odd
# numerator of degree 13, even denominator of degree 6; beyond c, tanh is 1 to float32
# precision. Max absolute error < 4e-7 over the real line (float32 evaluation).
_T_CLAMP = _f32(7.90531110763549805)
_TA1 = _f32(4.89352455891786e-03)
_TA3 = _f32(6.37261928875436e-04)
_TA5 = _f32(1.48572235717979e-05)
_TA7 = _f32(5.12229709037114e-08)
_TA9 = _f32(-8.60467152213735e-11)
_TA11 = _f32(2.00018790482477e-13)
_TA13 = _f32(-2.76076847742355e-16)
_TB0 = _f32(4.89352518554385e-03)
_TB2 = _f32(2.26843463243900e-03)
_TB4 = _f32(1.18534705686654e-04)
_TB6 = _f32(1.19825839466702e-06)


# ------------------------------------------------------------------- activations
@njit(cache=True, fastmath=_FAST)
def _tanh(x):
    """float32 tanh by a branch-free rational approximation (vectorises in loops)."""
    # min/max written as selects so that NaN propagates (as torch.tanh(nan) = nan).
    x = _T_CLAMP if x > _T_CLAMP else x
    x = -_T_CLAMP if x < -_T_CLAMP else x
    x2 = x * x
    p = _TA13
    p = p * x2 + _TA11
    p = p * x2 + _TA9
    p = p * x2 + _TA7
    p = p * x2 + _TA5
    p = p * x2 + _TA3
    p = p * x2 + _TA1
    q = _TB6
    q = q * x2 + _TB4
    q = q * x2 + _TB2
    q = q * x2 + _TB0
    return x * p / q


@njit(cache=True, fastmath=_FAST)
def _activate(h, lo, n, act):
    """Apply the hidden activation to ``h[lo:lo + n]`` in place."""
    if act == _TANH:
        for j in range(lo, lo + n):
            h[j] = _tanh(h[j])
    elif act == _RELU:
        for j in range(lo, lo + n):
            z = h[j]
            h[j] = _ZERO if z < _ZERO else z  # keeps NaN, as torch.relu
    elif act == _LOGISTIC:
        # libm exp does not vectorise; logistic is not the hot configuration.
        for j in range(lo, lo + n):
            h[j] = _ONE / (_ONE + math.exp(-h[j]))


@njit(cache=True)
def _dact(a, act):
    """Derivative of the activation, from its output ``a`` (float32 scalar)."""
    if act == _TANH:
        return _ONE - a * a
    if act == _LOGISTIC:
        return a * (_ONE - a)
    if act == _RELU:
        return _ONE if a > _ZERO else _ZERO
    return _ONE


# ----------------------------------------------------------------------- forward
@njit(cache=True, fastmath=_FAST)
def _affine(p, w0, b0, a, ai, fi, h, hi, fo):
    """``h[hi:hi+fo] = a[ai:ai+fi] @ W + b``, W = ``p[w0:b0]`` as ``(fi, fo)`` row-major."""
    if fo == 1:
        # One output (regression head): a dot product over a contiguous weight column.
        s = p[b0]
        for i in range(fi):
            s += a[ai + i] * p[w0 + i]
        h[hi] = s
        return
    for j in range(fo):
        h[hi + j] = p[b0 + j]
    # i outer, j inner: the inner loop streams one contiguous weight row.
    for i in range(fi):
        x = a[ai + i]
        r = w0 + i * fo
        for j in range(fo):
            h[hi + j] += x * p[r + j]


@njit(cache=True)
def _loss_delta(out, oi, Y, r, O, loss, scale, d, di):
    """Per-row loss of outputs ``out[oi:oi+O]`` against ``Y[r]``; writes ``scale * dl/dout`` to ``d[di:]``."""
    if loss == _LOG_LOSS:
        # Stable softmax / log-softmax: shift by the max so exp never overflows.
        mx = out[oi]
        for k in range(1, O):
            if out[oi + k] > mx:
                mx = out[oi + k]
        s = _ZERO
        for k in range(O):
            s += math.exp(out[oi + k] - mx)
        lse = mx + math.log(s)
        inv = _ONE / s
        val = _ZERO
        for k in range(O):
            y = Y[r, k]
            z = out[oi + k]
            val += y * (lse - z)
            d[di + k] = (math.exp(z - mx) * inv - y) * scale
        return val
    val = _ZERO
    for k in range(O):
        res = out[oi + k] - Y[r, k]
        val += _HALF * res * res
        d[di + k] = res * scale
    return val


# ------------------------------------------------------------------ optimizer
@njit(cache=True, fastmath=_FAST)
def _apply(p, st0, st1, lo, n, g, gi, decay, solver, nesterov, lr, lr_t, mu, b1, b2, eps):
    """One optimizer step on ``p[lo:lo+n]`` with gradient ``g[gi:gi+n] + decay * p``.

    adam: ``st0, st1`` are the first and second moments and ``lr_t`` the bias-corrected
    step size; sgd: ``st0`` is the velocity. Matches ``_engine.apply_update``.
    """
    c1 = _ONE - b1
    c2 = _ONE - b2
    # One loop per solver (not a branch inside one loop) so each stays vectorisable.
    if solver == _ADAM:
        for k in range(n):
            w = p[lo + k]
            gk = g[gi + k] + decay * w
            m = b1 * st0[lo + k] + c1 * gk
            v = b2 * st1[lo + k] + c2 * gk * gk
            st0[lo + k] = m
            st1[lo + k] = v
            p[lo + k] = w - lr_t * m / (np.sqrt(v) + eps)
    elif nesterov:
        for k in range(n):
            w = p[lo + k]
            gk = g[gi + k] + decay * w
            vel = mu * st0[lo + k] - lr * gk
            st0[lo + k] = vel
            p[lo + k] = w + mu * vel - lr * gk
    else:
        for k in range(n):
            w = p[lo + k]
            gk = g[gi + k] + decay * w
            vel = mu * st0[lo + k] - lr * gk
            st0[lo + k] = vel
            p[lo + k] = w + vel


@njit(cache=True, fastmath=_FAST)
def _row_fused(p, st0, st1, r, n, d, di, ai, alpha, solver, nesterov, lr, lr_t, mu, b1, b2, eps):
    """Batch-of-one backward + update of weight row ``p[r:r+n]`` in one sweep.

    The gradient of ``W_ij`` is ``ai * d_j + alpha * W_ij``; returns ``sum_j W_ij d_j``
    computed from the weights *before* the update (the error for the layer below).
    """
    c1 = _ONE - b1
    c2 = _ONE - b2
    s = _ZERO
    if solver == _ADAM:
        for j in range(n):
            w = p[r + j]
            dj = d[di + j]
            s += w * dj
            g = ai * dj + alpha * w
            m = b1 * st0[r + j] + c1 * g
            v = b2 * st1[r + j] + c2 * g * g
            st0[r + j] = m
            st1[r + j] = v
            p[r + j] = w - lr_t * m / (np.sqrt(v) + eps)
    elif nesterov:
        for j in range(n):
            w = p[r + j]
            dj = d[di + j]
            s += w * dj
            g = ai * dj + alpha * w
            vel = mu * st0[r + j] - lr * g
            st0[r + j] = vel
            p[r + j] = w + mu * vel - lr * g
    else:
        for j in range(n):
            w = p[r + j]
            dj = d[di + j]
            s += w * dj
            g = ai * dj + alpha * w
            vel = mu * st0[r + j] - lr * g
            st0[r + j] = vel
            p[r + j] = w + vel
    return s


@njit(cache=True, fastmath=_FAST)
def _row_accumulate(p, gr, r, n, d, di, ai):
    """Batch > 1: ``gr[r:r+n] += ai * d``; returns ``sum_j W_ij d_j`` (weights unchanged)."""
    s = _ZERO
    for j in range(n):
        dj = d[di + j]
        s += p[r + j] * dj
        gr[r + j] += ai * dj
    return s


# ------------------------------------------------------------------- one member
@njit(cache=True)
def _member_epoch(
    p, st0, st1, X, Y, sw, has_sw, rows, offs, sizes, aoff, act, loss, solver, nesterov,
    lr, alpha, bsz, mu, b1, b2, eps, t0, acts, dbuf, gr,
):
    """All steps of one member's epoch; returns (sum_i sw_i l_i over the epoch, new step count).

    p, st0, st1 : (P,) the member's parameter and optimizer-state rows, updated in place
    rows : (M,) int64, the member's sample order
    acts : (>=A,) scratch, the activations of one row (input copy first)
    dbuf : (>=2 * max(sizes),) scratch, errors of the current and the next-lower layer
    gr : (>=P,) scratch, the batch gradient (batch > 1 only)
    """
    M = rows.shape[0]
    L = offs.shape[0]
    F = sizes[0]
    O = sizes[L]
    wmax = dbuf.shape[0] // 2
    for k in range(offs[L - 1, 2]):
        gr[k] = _ZERO
    total = 0.0  # float64: the epoch sum over up to M rows
    t = t0
    for start in range(0, M, bsz):
        stop = min(start + bsz, M)
        b = stop - start
        t += 1
        lr_t = lr
        if solver == _ADAM:
            # Each member's own step count, incremented before use (as apply_update), and
            # float32 arithmetic as there: 1 - b2^t loses ~1e-5 relative to cancellation
            # at small t, and the engines should lose the same.
            tf = _f32(t)
            lr_t = lr * np.sqrt(_ONE - b2**tf) / (_ONE - b1**tf)
        alpha_b = _f32(alpha / b)
        for n in range(start, stop):
            r = rows[n]
            # ---- forward: acts = [x, h_1, ..., h_{L-1}, out]
            for f in range(F):
                acts[f] = X[r, f]
            for li in range(L):
                fi = sizes[li]
                fo = sizes[li + 1]
                _affine(p, offs[li, 0], offs[li, 1], acts, aoff[li], fi, acts, aoff[li + 1], fo)
                if li < L - 1:
                    _activate(acts, aoff[li + 1], fo, act)
            # ---- output error, pre-scaled by sw_r / b (the batch mean of the weighted loss)
            wr = sw[r] if has_sw else _ONE
            cur = 0
            total += wr * _loss_delta(acts, aoff[L], Y, r, O, loss, _f32(wr / b), dbuf, cur)
            # ---- backward, top layer first; dbuf[cur:] holds dl/d(output of layer li)
            for li in range(L - 1, -1, -1):
                fi = sizes[li]
                fo = sizes[li + 1]
                w0 = offs[li, 0]
                b0 = offs[li, 1]
                ai = aoff[li]
                nxt = wmax - cur  # the other half of dbuf
                if b == 1:
                    # The gradient is applied as it is computed (one sweep per weight row).
                    for i in range(fi):
                        a_i = acts[ai + i]
                        s = _row_fused(
                            p, st0, st1, w0 + i * fo, fo, dbuf, cur, a_i, alpha, solver,
                            nesterov, lr, lr_t, mu, b1, b2, eps,
                        )
                        if li > 0:
                            dbuf[nxt + i] = s * _dact(a_i, act)
                    _apply(
                        p, st0, st1, b0, fo, dbuf, cur, _ZERO, solver, nesterov, lr, lr_t,
                        mu, b1, b2, eps,
                    )
                else:
                    for i in range(fi):
                        a_i = acts[ai + i]
                        s = _row_accumulate(p, gr, w0 + i * fo, fo, dbuf, cur, a_i)
                        if li > 0:
                            dbuf[nxt + i] = s * _dact(a_i, act)
                    for j in range(fo):
                        gr[b0 + j] += dbuf[cur + j]
                cur = nxt
        if b > 1:
            for li in range(L):
                w0 = offs[li, 0]
                b0 = offs[li, 1]
                end = offs[li, 2]
                _apply(p, st0, st1, w0, b0 - w0, gr, w0, alpha_b, solver, nesterov, lr, lr_t,
                       mu, b1, b2, eps)
                _apply(p, st0, st1, b0, end - b0, gr, b0, _ZERO, solver, nesterov, lr, lr_t,
                       mu, b1, b2, eps)
            for k in range(offs[L - 1, 2]):
                gr[k] = _ZERO
    return total, t


@njit(cache=True)
def _pad(n):
    """Round a scratch row up to 16 floats (64 bytes) so threads never share a cache line."""
    return (n + 15) // 16 * 16


# ------------------------------------------------------------------ all members
@njit(parallel=True, cache=True)
def _epoch_kernel(
    flat, state, steps, X, Y, sw, has_sw, order, offs, sizes, act, loss, solver, nesterov,
    lr, alpha, bsz, mu, b1, b2, eps, n_threads, losses,
):
    """Run one epoch of every member, members in parallel (see :func:`epoch_numba`).

    ``n_threads`` is ``numba.get_num_threads()`` read by the caller: reading it here would
    make the function uncachable (it goes through a ctypes pointer).
    """
    E = flat.shape[0]
    P = flat.shape[1]
    M = order.shape[1]
    L = offs.shape[0]
    S = state.shape[0]
    aoff = np.zeros(L + 2, np.int64)  # where each layer's activations start in a scratch row
    for li in range(L + 1):
        aoff[li + 1] = aoff[li] + sizes[li]
    wmax = _pad(sizes.max())
    nt = n_threads
    # Per-thread scratch, allocated once per epoch (never inside the step loop).
    acts = np.zeros((nt, _pad(aoff[L + 1])), np.float32)
    dbuf = np.zeros((nt, 2 * wmax), np.float32)
    gr = np.zeros((nt, _pad(P)), np.float32)
    lr32 = _f32(lr)
    alpha32 = _f32(alpha)
    mu32 = _f32(mu)
    b1_32 = _f32(b1)
    b2_32 = _f32(b2)
    eps32 = _f32(eps)
    for e in prange(E):
        tid = numba.get_thread_id()
        total, t = _member_epoch(
            flat[e], state[0, e], state[S - 1, e], X, Y, sw, has_sw, order[e], offs, sizes,
            aoff, act, loss, solver, nesterov, lr32, alpha32, bsz, mu32, b1_32, b2_32, eps32,
            steps[e], acts[tid], dbuf[tid], gr[tid],
        )
        losses[e] = total / M
        steps[e] = t


def _as_array(t, dtype):
    """C-contiguous numpy view of CPU tensor ``t`` (a copy only if it is not already one)."""
    return np.ascontiguousarray(t.detach().numpy(), dtype=dtype)


def epoch_numba(flat, state, steps, X, Y, sw, order, lr, hyper, layout):
    """One epoch for all members, member-major in compiled code (numba, CPU).

    Same contract and mathematics as :func:`skensemble._engine.epoch_reference`.

    Parameters
    ----------
    flat : Tensor (E, P) float32, CPU, contiguous; updated in place
    state : Tensor (S, E, P) float32, CPU, contiguous; updated in place
    steps : Tensor (E,) int64, CPU; updated in place
    X : Tensor (N, F) float32
    Y : Tensor (N, O) float32
    sw : Tensor (N,) float32 or None
        Per-row loss weights.
    order : Tensor (E, M) int64
        Rows each member visits this epoch, in order.
    lr : float
    hyper : Hyper
    layout : Layout

    Returns
    -------
    Tensor (E,) float32: per-member mean training loss over the epoch (data term only).
    """
    for name, t in (("flat", flat), ("state", state), ("steps", steps)):
        # Updated in place through zero-copy numpy views: a copy would silently drop the update.
        if t.device.type != "cpu" or not t.is_contiguous():
            raise ValueError(f"epoch_numba needs {name} as a contiguous CPU tensor")
    if flat.dtype != torch.float32 or state.dtype != torch.float32 or steps.dtype != torch.int64:
        raise ValueError("epoch_numba needs float32 flat and state and int64 steps")
    E, M = order.shape
    if E == 0 or M == 0:
        # No batches: nothing to update; the mean loss over no rows is NaN, as the reference.
        return torch.full((E,), float("nan"))
    losses = np.zeros(E, np.float64)  # (E,)
    has_sw = sw is not None
    # An empty array keeps the argument types fixed, so sw=None reuses the same compilation.
    sw_np = _as_array(sw, np.float32) if has_sw else np.zeros(0, np.float32)
    _epoch_kernel(
        flat.numpy(),  # (E, P) view, written in place
        state.numpy(),  # (S, E, P) view, written in place
        steps.numpy(),  # (E,) view, written in place
        _as_array(X, np.float32),  # (N, F)
        _as_array(Y, np.float32),  # (N, O)
        sw_np,  # (N,) or (0,)
        has_sw,
        _as_array(order, np.int64),  # (E, M)
        layout.offsets_array(),  # (L, 3)
        np.asarray(layout.sizes, dtype=np.int64),  # (L + 1,)
        _ACT[hyper.activation],
        _LOSS[hyper.loss],
        _SOLVER[hyper.solver],
        bool(hyper.nesterovs_momentum),
        float(lr),
        float(hyper.alpha),
        int(hyper.batch_size),
        float(hyper.momentum),
        float(hyper.beta_1),
        float(hyper.beta_2),
        float(hyper.epsilon),
        numba.get_num_threads(),
        losses,
    )
    return torch.from_numpy(losses.astype(np.float32))
