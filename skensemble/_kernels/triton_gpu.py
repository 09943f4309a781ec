"""Member-major persistent Triton kernel: one GPU program trains one member for a whole epoch.

Same contract and mathematics as :func:`skensemble._engine.epoch_reference`. The grid is
``(E,)``; program ``e`` loops over every step of the epoch without returning to Python,
so an epoch is one kernel launch however many steps it has. This is the engine for the
regime the batched torch path handles worst: small batches (launch-bound there), where
one step of one member is a few matrix-vector products.

Scope
-----
- 1, 2 or 3 hidden layers (``NH`` is a compile-time constant; one kernel body, the
  deeper layers are compiled in or out).
- Any widths up to :data:`MAX_WIDTH`. Hidden and output widths are padded to powers of
  two inside the kernel (``tl.arange`` needs them) and masked; the input width ``F`` is
  only ever walked in blocks, so it is not padded.
- Batch size 1 (the primary case: gradient and optimizer update fused per weight block)
  and batch sizes up to :data:`MAX_BATCH` (rows of a batch processed one after the other,
  gradients accumulated into a per-member ``(P,)`` buffer, one update pass per step).
- All activations, both losses, adam and sgd (Nesterov or heavy-ball), alpha, sample
  weights. float32 only.

How a step runs inside program ``e``
------------------------------------
Forward, layer by layer: ``z = a @ W + b`` as a sum over blocks of ``BK`` input rows,
``tl.sum(a[:, None] * W_block, axis=0)`` (matrix-vector: ``tl.dot`` needs >= 16 rows).
Hidden activations and back-propagated deltas go through a small per-member scratch row
in global memory, because a register vector cannot be sliced into blocks; it stays in
L1. Backward walks the same ``(BK, fan_out)`` weight blocks: each block gives its slice
of the delta of the layer below (from the *old* weights) and its gradient
``a[:, None] * delta[None, :] (+ alpha/b * W)``, which at batch 1 is applied at once.
Weights and optimizer state are read from and written to global memory (a 100-100
member is ~50 KB: L1/L2 resident).

Adam's bias-corrected step size for each step count is computed on the host side with
the reference's own torch expression (one small table per epoch; reading the range of
``steps`` is the epoch's one host sync), so both engines take identical step sizes.

``tl.debug_barrier()`` (``__syncthreads``) separates every write of a scratch or weight
block from reads by other threads: after each layer, and inside a fused update between
reading a weight block (whose values feed a cross-thread reduction) and overwriting it.

Shape legend
------------
E members, N rows, M rows per member per epoch, B batch, F features, H hidden units,
O outputs (``NOUT`` in the kernel), P parameters per member, S optimizer slots (2 adam,
1 sgd); ``*P`` suffix: padded to a power of two.
"""

from __future__ import annotations

import torch

from .. import _dispatch, _engines

try:  # optional dependency: without triton this module imports and supports() says no
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised only where triton is missing
    triton = None
    tl = None

#: What the kernel runs, as declared in :data:`skensemble._engines.ENGINES`.
CAPABILITIES = _engines.ENGINES["triton"]
#: Largest hidden or output width the kernel takes (padded widths stay <= 1024).
MAX_WIDTH = CAPABILITIES.max_width
#: Largest batch size it runs (``engine="triton"`` named explicitly). Rows of a batch
#: run one after another in one program, so a step costs about B times a row, while the
#: graphed torch path is launch-bound and nearly flat in B.
MAX_BATCH = CAPABILITIES.max_batch
#: ``engine="auto"`` picks this kernel while ``batch_size * P <= AUTO_BATCH_PARAMS`` (P:
#: parameters of one member) and ``batch_size <= AUTO_MAX_BATCH``; always at batch 1.
#: Measured on an H200 (``benchmarks/gpu_check.py``, 10,000 x 30 rows, two tanh layers of
#: width w, sgd; Triton against the graphed engine over B in {2, 4, 8, 16, 32}): the
#: crossover sat between B=4 and 8 for w=100 (P=13,301) at E=50 and E=1000, between 16
#: and 32 for w=30 (P=1,891) at E=1000 (Triton still ahead at 32 for E=50), and above
#: 32 for w=10. At batch 1 the kernel was 5-26x faster than the graphed engine.
AUTO_BATCH_PARAMS = 65_536
AUTO_MAX_BATCH = 32
#: Hidden layers the kernel is compiled for.
HIDDEN_LAYERS = tuple(range(CAPABILITIES.hidden_layers[0], CAPABILITIES.hidden_layers[1] + 1))
#: The kernel's code for each solver it runs (a compile-time constant).
_SOLVER_CODE = {"adam": 0, "sgd": 1}
#: Oldest triton the compiled path accepts: tuples inside @jit functions arrived in 3.2;
#: only 3.9 has been verified.
MIN_TRITON = (3, 3)

_ACT_CODE = {"identity": 0, "logistic": 1, "tanh": 2, "relu": 3}


def _jit(fn):
    # Without triton the kernel functions stay plain (never called); supports() is False.
    return triton.jit(fn) if triton is not None else fn


def _build_mode():
    """Say how the kernels run: ``"compiled"`` (GPU), ``"interpreted"`` (CPU) or ``None``.

    ``None`` also for a triton older than :data:`MIN_TRITON`.

    Triton reads ``TRITON_INTERPRET`` when it decorates a function, both its own standard
    library (``tl.sum``...) at ``import triton`` and this module's kernels at import. Set
    after ``import triton`` but before this module, the two disagree and nothing runs.
    """
    if triton is None:
        return None
    ours = isinstance(_epoch_kernel, triton.runtime.JITFunction)
    theirs = isinstance(tl.standard.sum, triton.runtime.JITFunction)
    if ours != theirs:
        return None
    if ours and tuple(int(v) for v in triton.__version__.split(".")[:2]) < MIN_TRITON:
        return None
    return "compiled" if ours else "interpreted"


# ------------------------------------------------------------------ device functions
@_jit
def _activate(z, ACT: tl.constexpr):
    """Apply the hidden activation to ``z``; ACT 0 identity, 1 logistic, 2 tanh, 3 relu."""
    if ACT == 1:
        a = 1.0 / (1.0 + tl.exp(-z))
    elif ACT == 2:
        # tanh through exp: saturates to +-1 without overflow (exp -> inf gives 1).
        a = 1.0 - 2.0 / (tl.exp(2.0 * z) + 1.0)
    elif ACT == 3:
        a = tl.maximum(z, 0.0)
    else:
        a = z
    return a


@_jit
def _activate_grad(a, ACT: tl.constexpr):
    """Return the activation's derivative through its output ``a`` (not for identity)."""
    if ACT == 1:
        g = a * (1.0 - a)
    elif ACT == 2:
        g = 1.0 - a * a
    else:
        g = tl.where(a > 0.0, 1.0, 0.0)
    return g


@_jit
def _optimizer_math(p, g, m, v, opt, SOLVER: tl.constexpr, NESTEROV: tl.constexpr):
    """Return new ``(p, m, v)`` from parameters, gradient and state (elementwise).

    ``opt``: ``(lr, lr_t, beta_1, 1 - beta_1, beta_2, 1 - beta_2, epsilon, momentum)``,
    ``lr_t`` adam's bias-corrected step size. SOLVER 0 adam (``m``, ``v`` moments), 1 sgd
    (``m`` velocity, ``v`` passed through). Operations in the order of
    :func:`skensemble._engine.apply_update`, IEEE sqrt and division (Triton's defaults
    are approximate), so the two stay within a few ulp.
    """
    lr, lr_t, beta_1, one_m_beta_1, beta_2, one_m_beta_2, eps, mu = opt
    if SOLVER == 0:
        m = beta_1 * m + one_m_beta_1 * g
        v = beta_2 * v + one_m_beta_2 * (g * g)
        p = p - tl.div_rn(lr_t * m, tl.sqrt_rn(v) + eps)
    else:
        m = mu * m - lr * g
        if NESTEROV:
            p = (p + mu * m) - lr * g
        else:
            p = p + m
    return p, m, v


@_jit
def _dense_forward(a_ptr, w_ptr, b_ptr, K, N, NP: tl.constexpr, BK: tl.constexpr):
    """Return ``z = a @ W + b`` for one row: a (K,) at a_ptr, W (K, N) row-major, b (N,); (NP,)."""
    cols = tl.arange(0, NP)
    cmask = cols < N
    acc = tl.load(b_ptr + cols, mask=cmask, other=0.0)  # (NP,), 0 past N
    for k0 in range(0, K, BK):
        rows = k0 + tl.arange(0, BK)
        rmask = rows < K
        a = tl.load(a_ptr + rows, mask=rmask, other=0.0)  # (BK,)
        w = tl.load(
            w_ptr + rows[:, None] * N + cols[None, :],
            mask=rmask[:, None] & cmask[None, :],
            other=0.0,
        )  # (BK, NP)
        acc += tl.sum(a[:, None] * w, axis=0)
    return acc


# fmt: off
@_jit
def _dense_backward(
    a_ptr, mem, d, dprev_ptr, l2, keep, opt, W0, B0, K, N, NP: tl.constexpr, BK: tl.constexpr,
    HAS_PREV: tl.constexpr, ACT: tl.constexpr, FUSED: tl.constexpr,
    SOLVER: tl.constexpr, NESTEROV: tl.constexpr,
):
    """Back-propagate one row through one layer, given ``d (NP,)`` = dLoss/dz of its output.

    Writes dLoss/dz of the layer below to ``dprev_ptr`` (K,) when HAS_PREV (from the old
    weights). FUSED (batch 1): applies the optimizer step to W and b at once; otherwise
    adds the gradient to the accumulator row (L2 is added at the update). ``mem``:
    ``(parameter, state slot 0, state slot 1, gradient)`` rows of the member.
    """
    p_row, m_row, v_row, g_row = mem
    cols = tl.arange(0, NP)
    cmask = cols < N
    for k0 in range(0, K, BK):
        rows = k0 + tl.arange(0, BK)
        rmask = rows < K
        offs = W0 + rows[:, None] * N + cols[None, :]  # (BK, NP) inside the member's row
        mask = rmask[:, None] & cmask[None, :]
        a = tl.load(a_ptr + rows, mask=rmask, other=0.0)  # (BK,) input activations
        w = tl.load(p_row + offs, mask=mask, other=0.0)  # (BK, NP) old weights
        if HAS_PREV:
            dp = tl.sum(w * d[None, :], axis=1)  # (BK,): W @ d, a cross-thread reduction
            if ACT != 0:
                dp = dp * _activate_grad(a, ACT)
            tl.store(dprev_ptr + rows, dp, mask=rmask)
        g = a[:, None] * d[None, :]  # (BK, NP)
        if FUSED:
            g = g + l2 * w
            m = tl.load(m_row + offs, mask=mask, other=0.0)
            if SOLVER == 0:
                v = tl.load(v_row + offs, mask=mask, other=0.0)
            else:
                v = m
            # the step starts from keep * w: decoupled weight decay (keep = 1 - lr * wd)
            w, m, v = _optimizer_math(w * keep, g, m, v, opt, SOLVER, NESTEROV)
            # Threads holding replicas of this block must all have read the old weights
            # (for the reduction above) before any thread overwrites them.
            tl.debug_barrier()
            tl.store(p_row + offs, w, mask=mask)
            tl.store(m_row + offs, m, mask=mask)
            if SOLVER == 0:
                tl.store(v_row + offs, v, mask=mask)
        else:
            acc = tl.load(g_row + offs, mask=mask, other=0.0)
            tl.store(g_row + offs, acc + g, mask=mask)
    boffs = B0 + cols  # (NP,)
    if FUSED:
        bias = tl.load(p_row + boffs, mask=cmask, other=0.0)
        m = tl.load(m_row + boffs, mask=cmask, other=0.0)
        if SOLVER == 0:
            v = tl.load(v_row + boffs, mask=cmask, other=0.0)
        else:
            v = m
        bias, m, v = _optimizer_math(bias, d, m, v, opt, SOLVER, NESTEROV)
        tl.store(p_row + boffs, bias, mask=cmask)
        tl.store(m_row + boffs, m, mask=cmask)
        if SOLVER == 0:
            tl.store(v_row + boffs, v, mask=cmask)
    else:
        acc = tl.load(g_row + boffs, mask=cmask, other=0.0)
        tl.store(g_row + boffs, acc + d, mask=cmask)
# fmt: on


@_jit
def _apply_accumulated(
    mem, wmask_ptr, P, l2, shrink, opt, SOLVER: tl.constexpr, NESTEROV: tl.constexpr,
    BP: tl.constexpr,
):
    """Take the optimizer step from the accumulated gradient row (+ L2 on weights); zero it.

    Weights step from ``(1 - shrink) * p`` (decoupled weight decay, ``shrink = lr * wd``).
    """
    p_row, m_row, v_row, g_row = mem
    for p0 in range(0, P, BP):
        offs = p0 + tl.arange(0, BP)
        mask = offs < P
        p = tl.load(p_row + offs, mask=mask, other=0.0)
        g = tl.load(g_row + offs, mask=mask, other=0.0)
        wm = tl.load(wmask_ptr + offs, mask=mask, other=0.0)
        g = g + l2 * wm * p
        m = tl.load(m_row + offs, mask=mask, other=0.0)
        if SOLVER == 0:
            v = tl.load(v_row + offs, mask=mask, other=0.0)
        else:
            v = m
        keep = tl.where(wm > 0.0, 1.0 - shrink, 1.0)  # biases are not decayed
        p, m, v = _optimizer_math(p * keep, g, m, v, opt, SOLVER, NESTEROV)
        tl.store(p_row + offs, p, mask=mask)
        tl.store(m_row + offs, m, mask=mask)
        if SOLVER == 0:
            tl.store(v_row + offs, v, mask=mask)
        tl.store(g_row + offs, tl.zeros([BP], dtype=tl.float32), mask=mask)


# fmt: off
@_jit
def _hidden_forward(
    in_ptr, p_row, out_ptr, W0, B0, K, N, NP: tl.constexpr, BK: tl.constexpr, ACT: tl.constexpr,
):
    """Run one hidden layer for one row: activations (N,) from ``in_ptr`` (K,) to ``out_ptr``."""
    z = _dense_forward(in_ptr, p_row + W0, p_row + B0, K, N, NP, BK)  # (NP,)
    h = _activate(z, ACT)
    cols = tl.arange(0, NP)
    tl.store(out_ptr + cols, h, mask=cols < N)
    tl.debug_barrier()  # the next layer reads these in blocks held by other threads
# fmt: on


# ----------------------------------------------------------------------------- kernel
#: Integer arguments passed at run time, and not specialised on their values (Triton
#: would otherwise compile a variant per value 1 and per multiple of 16): one compiled
#: kernel serves every data set, batch size and set of widths with the same padded
#: widths, depth and mathematics.
_RUNTIME_INTS = (
    "t_lo", "E", "M", "P", "n_steps", "F", "XC", "NOUT", "H1", "H2", "H3", "HL",
    "W1", "B1", "W2", "B2", "W3", "B3", "WO", "BO",
    "A0", "A1", "A2", "A3", "AL", "D1", "D2", "D3", "DL", "SCR", "BATCH",
)


def _jit_runtime(fn):
    if triton is None:
        return fn
    return triton.jit(fn, do_not_specialize=list(_RUNTIME_INTS))


# fmt: off
@_jit_runtime
def _epoch_kernel(
    flat_ptr, state_ptr, steps_ptr, grad_ptr, scratch_ptr, wmask_ptr, loss_ptr,
    x_ptr, y_ptr, sw_ptr, order_ptr, lr_ptr, alpha_ptr, sq_ptr, den_ptr,
    src_ptr, flo_ptr, finv_ptr, flow_ptr, fhigh_ptr, fcode_ptr,
    t_lo, E, M, P, n_steps,
    beta_1, one_m_beta_1, beta_2, one_m_beta_2, eps, mu, wd,
    # widths (F: first-layer inputs; XC: columns of X; HL: last hidden layer; unused
    # layers have width 1)
    F, XC, NOUT, H1, H2, H3, HL,
    # offsets in a member's flat row
    W1, B1, W2, B2, W3, B3, WO, BO,
    # offsets in a member's scratch row (length SCR)
    A0, A1, A2, A3, AL, D1, D2, D3, DL, SCR,
    BATCH,
    # compiled in: widths padded to powers of two, depth, what to compute, block sizes
    NOUTP: tl.constexpr, H1P: tl.constexpr, H2P: tl.constexpr, H3P: tl.constexpr,
    NH: tl.constexpr, FUSED: tl.constexpr, ACT: tl.constexpr, LOG_LOSS: tl.constexpr,
    SOLVER: tl.constexpr, NESTEROV: tl.constexpr, HAS_SW: tl.constexpr,
    HAS_FIRST: tl.constexpr, BK: tl.constexpr, BP: tl.constexpr,
):
    """Train member ``program_id(0)`` for one epoch: all ``n_steps`` steps, then its mean loss.

    Offsets W*/B* (weights/bias of layers 1..3 and output) index the member's flat row;
    A*/D* (activations / deltas of hidden layers 1..3, L = last hidden) its scratch row.
    ``lr_ptr``, ``alpha_ptr``: each member's learning rate and L2 strength (E,); adam's
    bias-corrected step size at step count ``t`` is ``lr * sq[i] / den[i]``,
    ``i = t - 1 - t_lo``, with ``sq = sqrt(1 - beta_2^t)`` and ``den = 1 - beta_1^t``.
    FUSED: batch size 1 (each gradient block applied at once). HAS_FIRST: each row's
    first-layer inputs are computed into the scratch row at ``A0`` from the member's
    first-layer map (``src``, ``lo``, ``inv``, ``low``, ``high``, ``code``, each ``(E, F)``:
    ``clamp((X[row, src] - lo) * inv, low, high)``, or the one-hot ``X[row, src] == code``
    where ``code >= 0``, :class:`skensemble._inputs.FirstLayer`);
    otherwise the first layer reads ``X``'s row itself.
    """
    e = tl.program_id(0).to(tl.int64)
    p_row = flat_ptr + e * P
    m_row = state_ptr + e * P  # slot 0: adam first moment / sgd velocity
    v_row = state_ptr + (E + e) * P  # slot 1: adam second moment (never touched for sgd)
    g_row = grad_ptr + e * P  # gradient accumulator (batch > 1 only)
    s_row = scratch_ptr + e * SCR
    o_row = order_ptr + e * M
    mem = (p_row, m_row, v_row, g_row)  # this member's parameters, state and gradient rows
    t0 = tl.load(steps_ptr + e)
    lr = tl.load(lr_ptr + e)
    alpha = tl.load(alpha_ptr + e)
    cols_o = tl.arange(0, NOUTP)
    omask = cols_o < NOUT
    total = 0.0
    for s in range(0, n_steps):
        start = s * BATCH
        nb = tl.minimum(M - start, BATCH)  # rows in this batch (the last may be shorter)
        inv_b = 1.0 / nb.to(tl.float32)
        l2 = alpha * inv_b
        if SOLVER == 0:
            i = (t0 - t_lo) + s  # step count t0 + s + 1
            # as the reference: (lr * sqrt(1 - b2^t)) / (1 - b1^t), IEEE division
            lr_t = tl.div_rn(lr * tl.load(sq_ptr + i), tl.load(den_ptr + i))
        else:
            lr_t = lr
        opt = (lr, lr_t, beta_1, one_m_beta_1, beta_2, one_m_beta_2, eps, mu)
        keep = 1.0 - lr * wd  # decoupled weight decay of this step (1 without)
        for r in range(0, nb):
            row = tl.load(o_row + start + r)  # int64 row of X
            if HAS_FIRST:
                # this row's first-layer inputs, from its columns and their bins
                for k0 in range(0, F, BK):
                    cols = k0 + tl.arange(0, BK)
                    cmask = cols < F
                    m_off = e * F + cols
                    c = tl.load(src_ptr + m_off, mask=cmask, other=0)
                    v = tl.load(x_ptr + row * XC + c, mask=cmask, other=0.0)
                    v = (v - tl.load(flo_ptr + m_off, mask=cmask, other=0.0)) * tl.load(
                        finv_ptr + m_off, mask=cmask, other=0.0)
                    v = tl.minimum(v, tl.load(fhigh_ptr + m_off, mask=cmask, other=0.0))
                    v = tl.maximum(v, tl.load(flow_ptr + m_off, mask=cmask, other=0.0))
                    lvl = tl.load(fcode_ptr + m_off, mask=cmask, other=-1.0)  # a level
                    x = tl.load(x_ptr + row * XC + c, mask=cmask, other=0.0)
                    v = tl.where(lvl >= 0.0, tl.where(x == lvl, 1.0, 0.0), v)
                    tl.store(s_row + A0 + cols, v, mask=cmask)
                tl.debug_barrier()  # the first layer reads these in blocks of other threads
                x_row = s_row + A0
            else:
                x_row = x_ptr + row * XC
            # ---- forward: hidden activations into scratch, output stays in registers
            _hidden_forward(x_row, p_row, s_row + A1, W1, B1, F, H1, H1P, BK, ACT)
            if NH >= 2:
                _hidden_forward(s_row + A1, p_row, s_row + A2, W2, B2, H1, H2, H2P, BK, ACT)
            if NH >= 3:
                _hidden_forward(s_row + A2, p_row, s_row + A3, W3, B3, H2, H3, H3P, BK, ACT)
            out = _dense_forward(s_row + AL, p_row + WO, p_row + BO, HL, NOUT, NOUTP, BK)
            y = tl.load(y_ptr + row * NOUT + cols_o, mask=omask, other=0.0)  # (NOUTP,)
            # ---- loss and dLoss/dout (residual for both losses)
            if LOG_LOSS:
                zm = tl.where(omask, out, float("-inf"))
                mx = tl.max(zm, axis=0)
                ex = tl.exp(zm - mx)  # 0 on padding
                se = tl.sum(ex, axis=0)
                lse = mx + tl.log(se)
                row_loss = tl.sum(tl.where(omask, y * (lse - out), 0.0), axis=0)
                delta = ex / se - y
            else:
                delta = out - y  # 0 on padding
                row_loss = 0.5 * tl.sum(delta * delta, axis=0)
            if HAS_SW:
                w_i = tl.load(sw_ptr + row)
                row_loss = row_loss * w_i
                delta = delta * w_i
            total += row_loss
            delta = delta * inv_b
            # ---- backward, output layer first; each layer leaves the delta below in scratch
            _dense_backward(s_row + AL, mem, delta, s_row + DL, l2, keep, opt,
                            WO, BO, HL, NOUT, NOUTP, BK, True, ACT, FUSED, SOLVER, NESTEROV)
            tl.debug_barrier()
            if NH >= 3:
                c3 = tl.arange(0, H3P)
                d = tl.load(s_row + D3 + c3, mask=c3 < H3, other=0.0)
                _dense_backward(s_row + A2, mem, d, s_row + D2, l2, keep, opt,
                                W3, B3, H2, H3, H3P, BK, True, ACT, FUSED, SOLVER, NESTEROV)
                tl.debug_barrier()
            if NH >= 2:
                c2 = tl.arange(0, H2P)
                d = tl.load(s_row + D2 + c2, mask=c2 < H2, other=0.0)
                _dense_backward(s_row + A1, mem, d, s_row + D1, l2, keep, opt,
                                W2, B2, H1, H2, H2P, BK, True, ACT, FUSED, SOLVER, NESTEROV)
                tl.debug_barrier()
            c1 = tl.arange(0, H1P)
            d = tl.load(s_row + D1 + c1, mask=c1 < H1, other=0.0)
            _dense_backward(x_row, mem, d, s_row, l2, keep, opt,
                            W1, B1, F, H1, H1P, BK, False, ACT, FUSED, SOLVER, NESTEROV)
            tl.debug_barrier()  # next row / step reads the new weights and the scratch
        if not FUSED:
            _apply_accumulated(mem, wmask_ptr, P, l2, lr * wd, opt, SOLVER, NESTEROV, BP)
            tl.debug_barrier()
    tl.store(steps_ptr + e, t0 + n_steps)
    tl.store(loss_ptr + e, total / M)
# fmt: on


# ----------------------------------------------------------------------------- host side
def _pow2(n):
    return 1 << max(0, int(n) - 1).bit_length()


#: Distinct compile-time argument sets :func:`epoch_triton` has launched in this process:
#: each is one compiled kernel on a GPU (tests count them under the interpreter, which
#: compiles nothing).
COMPILED_VARIANTS = set()


def compile_time_arguments(hyper, layout, block_k=None):
    """The kernel's compile-time arguments for a configuration: one dict per compiled kernel.

    Only what changes the generated code: padded widths, depth, activation, loss,
    solver and momentum kind, whether the batch size is 1, and block sizes (whether
    rows are weighted, ``HAS_SW``, is added at the launch). Data set size, input width,
    exact widths, offsets and batch size are run-time arguments.

    Returns
    -------
    dict
        Keyword arguments for the launch, ``num_warps`` included.
    """
    sizes = layout.sizes
    nh = len(sizes) - 2
    hp = [_pow2(h) for h in list(sizes[1:-1]) + [1] * (3 - nh)]
    op = _pow2(sizes[-1])
    widest = max(hp + [op])
    block_k = block_k or max(1, min(32, 2048 // widest))  # (BK, widest) block ~2K floats
    return dict(
        NOUTP=op, H1P=hp[0], H2P=hp[1], H3P=hp[2], NH=nh,
        FUSED=int(hyper.batch_size) == 1, ACT=_ACT_CODE[hyper.activation],
        LOG_LOSS=hyper.loss == "log_loss", SOLVER=_SOLVER_CODE[hyper.solver],
        NESTEROV=bool(hyper.nesterovs_momentum),
        BK=block_k, BP=1024, num_warps=max(1, min(4, (block_k * widest) // 512)),
    )


def build_mode(device):
    """How the kernel runs on ``device``: ``"compiled"``, ``"interpreted"`` or None (cannot).

    CUDA devices need compiled triton; the CPU only Triton's interpreter, for tests
    (``TRITON_INTERPRET=1`` set before triton was first imported).
    """
    mode = _build_mode()
    device = torch.device(device)
    return mode if (device.type, mode) in (("cuda", "compiled"), ("cpu", "interpreted")) else None


def supports(hyper, layout, device):
    """Tell whether :func:`epoch_triton` handles this configuration on ``device``.

    The kernel's declaration (:data:`CAPABILITIES`) and how triton runs on ``device``
    (:func:`build_mode`) decide.

    Parameters
    ----------
    hyper : Hyper
    layout : Layout
    device : torch.device or str

    Returns
    -------
    bool
    """
    if build_mode(device) is None:
        return False
    return CAPABILITIES.refusal(_engines.Request(hyper, tuple(layout.sizes))) is None


def auto_prefers(hyper, sizes):
    """Tell whether ``engine="auto"`` should take this kernel over the graphed engine.

    Only the batch size and member size decide (see :data:`AUTO_BATCH_PARAMS`); whether
    the kernel runs the configuration at all is :func:`supports`'s question. ``sizes`` is
    the layout's ``(F, H_1, ..., O)``.
    """
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    limit = min(AUTO_MAX_BATCH, max(1, AUTO_BATCH_PARAMS // n_params))
    return hyper.batch_size <= limit


def _require(t, name, dtype):
    if t.dtype != dtype or not t.is_contiguous():
        raise ValueError(
            f"epoch_triton: {name} must be contiguous {dtype}, got "
            f"{t.dtype} with strides {tuple(t.stride())}"
        )


def epoch_triton(params, data, order, member, hyper, *, _block_k=None):
    """Run one epoch for all members, one persistent Triton program per member.

    Same contract as :func:`skensemble._engine.epoch_reference`. Its allocations and the
    launch run with the parameters' device current (Triton launches on the current
    device: on ``cuda:1`` an unguarded launch fails).

    Parameters
    ----------
    params : Params
        ``flat (E, P)``, ``state (S, E, P)`` float32 and ``steps (E,)`` int64, contiguous,
        on the device; updated in place.
    data : Data
        ``X (N, C)``, ``Y (N, O)`` float32, ``sw (N,)`` or None, ``first`` (each member's
        first-layer map: its columns of ``X`` and their bins) or None.
    order : Tensor (E, M) int64
    member : Member
        Each member's learning rate and (or None: ``hyper.alpha``) L2 strength.
    hyper : Hyper
    _block_k : int or None
        Rows per weight block (power of two); tests use it to force several blocks.

    Returns
    -------
    Tensor (E,): per-member mean training loss over the epoch (data term only).
    """
    with _dispatch.device_scope(params.flat.device):
        return _epoch(params, data, order, member, hyper, _block_k)


def _epoch(params, data, order, member, hyper, _block_k):
    """:func:`epoch_triton` on the current device (the parameters')."""
    flat, state, steps, layout = params.flat, params.state, params.steps, params.layout
    X, Y, sw, first = data.X, data.Y, data.sw, data.first
    why = CAPABILITIES.refusal(_engines.Request(hyper, tuple(layout.sizes)))
    if why is not None or build_mode(flat.device) is None:
        raise ValueError(
            f"epoch_triton does not support {why or flat.device}; check supports() first")
    E, M = order.shape
    _require(flat, "flat", torch.float32)
    _require(state, "state", torch.float32)
    _require(steps, "steps", torch.int64)
    P = layout.n_params
    if tuple(flat.shape) != (E, P) or tuple(state.shape) != (hyper.n_state, E, P):
        raise ValueError(
            f"epoch_triton: flat {tuple(flat.shape)} / state "
            f"{tuple(state.shape)} do not match E={E}, P={P}"
        )
    dev = flat.device
    # Read-only inputs: convert once (no copy when they already are contiguous float32).
    X = X.to(device=dev, dtype=torch.float32).contiguous()  # (N, F)
    Y = Y.to(device=dev, dtype=torch.float32).contiguous()  # (N, O)
    order = order.to(device=dev, dtype=torch.int64).contiguous()  # (E, M)
    if sw is not None:
        sw = sw.to(device=dev, dtype=torch.float32).contiguous()  # (N,)
    if M == 0 or E == 0:
        return torch.zeros(E, dtype=flat.dtype, device=dev) / M

    sizes = layout.sizes
    F, n_out = sizes[0], sizes[-1]
    hidden = list(sizes[1:-1]) + [1] * (3 - (len(sizes) - 2))  # unused layers: width 1
    nh = len(sizes) - 2
    hp = [_pow2(h) for h in hidden]
    offs = list(layout.offsets)  # per layer (w0, b0, end)
    w_off = [offs[i][0] if i < nh else 0 for i in range(3)]
    b_off = [offs[i][1] if i < nh else 0 for i in range(3)]
    # Scratch row: activations of hidden layers 1..3, then their deltas, then (with a
    # first-layer map) the first layer's inputs of the current row.
    a_off = [0, hp[0], hp[0] + hp[1]]
    d0 = sum(hp)
    d_off = [d0, d0 + hp[0], d0 + hp[0] + hp[1]]
    a0 = 2 * d0
    scr = a0 + (F if first is not None else 0)
    if first is not None:
        if tuple(first.src.shape) != (E, F):
            raise ValueError(f"epoch_triton: the first-layer map must be (E, {F}) inputs")
        fmap = [first.src.to(dev, torch.int64).contiguous()] + [
            getattr(first, n).to(dev, torch.float32).contiguous()
            for n in ("lo", "inv", "low", "high", "code")]
    else:
        if X.shape[1] != F:
            raise ValueError(f"epoch_triton: X has {X.shape[1]} columns, the first layer "
                             f"takes {F}")
        fmap = [X] * 6  # not read

    batch = int(hyper.batch_size)
    n_steps = -(-M // batch)
    scratch = torch.zeros(E, scr, dtype=torch.float32, device=dev)
    if batch > 1:
        grad = torch.zeros_like(flat)  # (E, P) accumulator, zeroed again after each step
        wmask = layout.weight_mask(dev)  # (P,)
    else:
        grad = wmask = flat  # not read at batch 1
    if hyper.solver == "adam":
        # The two factors of the bias correction for every step count this epoch reaches,
        # with the reference's own float32 expressions; the kernel multiplies and
        # divides in the reference's order. One host sync.
        t_lo, t_hi = torch.stack(torch.aminmax(steps)).tolist()
        t = torch.arange(t_lo + 1, t_hi + n_steps + 1, device=dev).to(torch.float32)
        sq = torch.sqrt(1 - hyper.beta_2**t)  # (T,)
        den = 1 - hyper.beta_1**t  # (T,)
    else:
        t_lo, sq, den = 0, flat, flat  # not read by sgd
    lrs = member.lr.to(device=dev, dtype=torch.float32).contiguous()  # (E,)
    alphas = (torch.full((E,), hyper.alpha, dtype=torch.float32, device=dev)
              if member.alpha is None else
              member.alpha.to(device=dev, dtype=torch.float32).contiguous())  # (E,)
    loss = torch.empty(E, dtype=torch.float32, device=dev)
    compiled = compile_time_arguments(hyper, layout, block_k=_block_k)
    compiled.update(HAS_SW=sw is not None, HAS_FIRST=first is not None,
                    enable_fp_fusion=True)
    COMPILED_VARIANTS.add(tuple(sorted(compiled.items())))
    # fmt: off
    _epoch_kernel[(E,)](
        flat, state, steps, grad, scratch, wmask, loss,
        X, Y, sw if sw is not None else X, order, lrs, alphas, sq, den, *fmap,
        t_lo, E, M, P, n_steps,
        float(hyper.beta_1), 1.0 - float(hyper.beta_1),
        float(hyper.beta_2), 1.0 - float(hyper.beta_2),
        float(hyper.epsilon), float(hyper.momentum), float(hyper.weight_decay),
        F, X.shape[1], n_out, hidden[0], hidden[1], hidden[2], hidden[nh - 1],
        w_off[0], b_off[0], w_off[1], b_off[1], w_off[2], b_off[2], offs[-1][0], offs[-1][1],
        a0, a_off[0], a_off[1], a_off[2], a_off[nh - 1],
        d_off[0], d_off[1], d_off[2], d_off[nh - 1], scr,
        batch,
        **compiled,
    )
    # fmt: on
    return loss
