"""Member-major compiled CPU kernel (numba): every member's whole epoch in compiled code.

Same contract and mathematics as :func:`skensemble._engine.epoch_reference`; the
equivalence tests in ``tests/test_kernels_numba.py`` bind it to that definition.

Why member-major
----------------
At small batch sizes the batched torch path is dominated by per-step overhead: a
handful of tiny ``bmm`` calls per layer, dispatched from Python, for every step. Here a
parallel loop runs over members and each member runs *all* the steps of its epoch in
compiled code. A member's parameters and optimizer state are one contiguous row of
``flat (E, P)`` and of ``state (S, E, P)`` (a few hundred KB at most), so they stay in
the core's L2 cache for the whole epoch; only the sampled rows of ``X`` come from
further away.

Per row, the forward pass runs layer by layer (``h_j += x_i W_ij``: ``i`` outer, ``j``
inner, so the inner loop walks contiguous weight rows), the backward pass row by row of
each weight matrix. With a batch of one row the gradient is applied as it is computed:
one sweep over weight row ``i`` reads ``W_i.``, accumulates ``sum_j W_ij delta_j`` (the
error sent to the layer below, from the weights *before* the update) and writes the
updated weights and optimizer state. Larger batches run the whole batch layer by layer,
four rows at a time against each weight row (register blocking across rows: a weight is
loaded once per four rows, a gradient entry updated once per four rows), accumulate a
per-member gradient buffer over the batch and apply it once.

Activations and errors (of a whole batch) and the gradient buffer live in scratch rows
allocated once per epoch and thread (indexed by ``numba.get_thread_id()``); nothing is
allocated in the step loop. The thread count is the caller's (``numba.set_num_threads``,
which numba keeps per calling thread).

Threads
-------
The prange splits the members statically (E/2 per thread with two threads). Handing
them out one at a time from an atomic counter instead, so that a descheduled thread
delays at most one member, was measured too (kernel only, E=16, (16,), B=64, 10 epochs,
two busy-loop processes on the two cores): no faster, 0.68 s against 0.55-0.60 s median,
so the simpler static split stays.

The threading layer is chosen when this module is imported, before anything here
compiles or runs (numba fixes it at the first parallel call of the process):

- fits run concurrently in threads (threaded Dask workers, joblib's threading backend),
  so the layer must be thread-safe. ``workqueue`` is not: a second thread entering a
  parallel region while one runs makes it abort the process ("Concurrent access has been
  detected"). We ask numba for ``"threadsafe"``: ``tbb`` where installed, else ``omp``
  (numba's docs: GNU OpenMP, as on Linux, is thread-safe). Here (no tbb) that is
  ``omp``, as numba's default order (tbb, omp, workqueue) would also pick; asking makes
  it a requirement, not an accident of what is installed. Only where neither loads do we
  fall back to ``workqueue``, and then serialise the kernel calls with a lock
  (:data:`KERNEL_LOCK`).
- the ``omp`` layer runs on torch's OpenMP runtime (torch loads its ``libgomp`` first,
  into the global symbol scope). Measured: starting the layer, which sets the OpenMP
  thread count of the calling thread to ``NUMBA_NUM_THREADS``, changed that thread's
  ``torch.get_num_threads()`` from 1 to 2, so we put it back; and ``OMP_WAIT_POLICY``
  set after ``import torch`` had no effect on numba's threads, set before it did. Its
  idle threads therefore spin as torch's do, as set when torch loaded (libgomp: ~300,000
  spins before they sleep): between two epochs of a fit numba's worker thread spun for
  ~4.7 ms, CPU that a loaded machine's other work needs. Setting
  ``OMP_WAIT_POLICY=passive`` in the environment before Python starts stops that
  (E=16, (16,), B=64, 10 epochs: 0.17 s CPU instead of 0.24 s); a library cannot do it
  for a torch already imported.
- GNU OpenMP does not survive ``fork()``: numba terminates a forked child that enters a
  parallel region. After a fork of a process that started the ``omp`` layer,
  :func:`usable` is False and the dispatcher picks another engine.
- a user's choice (``NUMBA_THREADING_LAYER`` or ``numba.config.THREADING_LAYER``), or a
  layer another library already started, is kept; :data:`THREADING_LAYER` says which
  layer runs (``numba.threading_layer()``, read after the layer started).

What makes it fast (each measured; see the comments at the definitions)
-----------------------------------------------------------------------
- hot loops index with unsigned integers (no negative-index wraparound select);
- ``error_model="numpy"`` (no ZeroDivisionError branch in loops that divide);
- ``_nrt=False`` on functions that only index arrays (no atomic reference counting per
  call, which the threads would also contend on: all views share one refcount);
- fastmath ``reassoc``/``contract`` so reductions vectorise and use FMA;
- tanh as a rational function (vectorises; libm ``tanhf`` does not);
- one parallel region per epoch (the prange); see Threads for its runtime's settings.

tanh is Eigen's float32 rational approximation: absolute error at most 3e-7 over the
real line as compiled here (torch's own float32 tanh is within 3e-8 of the exact value).

Compiling
---------
The first fit in a new environment compiles; numba caches the machine code on disk
(``cache=True``), so later processes load it (0.1-0.2 s). Measured on two cores
(``benchmarks/bench_cold_start.py``, the default classifier): one kernel for every
configuration compiled in 13.4 s; as below, 4.6 s (the parallel kernel 0.8 s, the
configuration's member epoch 3.3 s), and each further configuration 1-2.6 s.

- each (activation, loss, solver) has its own member epoch (:func:`_make_member_epoch`,
  a closure over the codes; numba keys its cache on the closure's cells), built when a
  fit first needs it and kept in :data:`_MEMBERS`. The solver is a constant there, so
  numba drops the other solver's code before typing; the activation and loss codes
  reach the layer helpers as literal arguments, which numba compiles once per value,
  and LLVM drops the other branches. Which step sizes the epoch takes (steps of one row:
  batch 1 or a last batch of one; steps of more rows) is a constant too, so that a fit
  with batches of 200 compiles no path for a batch of one. The activation derivative
  and nesterov stay run-time values, as they were when one kernel served every
  configuration: as constants they let fastmath regroup the arithmetic around them, and
  logistic and heavy-ball results changed in the last bit.
- the parallel kernel calls the member epoch through a pointer (:func:`_call_member`),
  so the kernel is compiled once for all configurations, and the member epoch is
  optimised once: a called function is linked into its caller and optimised again with
  it, and parfor nests the prange body four modules deep (the member epoch was
  optimised and compiled to machine code five times, 6.6 s of the 13.4).
- helpers are compiled as separate functions that LLVM inlines, not inlined by numba
  (``inline="always"``): numba copies the callee's IR at each call site, ~0.1 s a site.

Shape legend
------------
E   members of the ensemble
N   rows of the training set
M   rows one member visits per epoch
B   rows per step (batch size); the last batch may be shorter
F   input features (k of them per member with feature subsets)
O   outputs
L   affine layers (hidden layers + output layer)
P   parameters of one member
S   optimizer state slots: 2 for adam, 1 for sgd
A   activations of one row, all layers: ``sum(sizes)``
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading

import numba
import numpy as np
import torch
from numba import njit, prange, types
from numba.core import cgutils, errors
from numba.extending import intrinsic


# ----------------------------------------------------------------- threading layer
def _start_threading_layer():
    """Choose and start numba's threading layer; return its name (see Threads above)."""
    with contextlib.suppress(ValueError):  # ValueError: not started yet
        return numba.threading_layer()  # started by someone else: too late to choose
    ours = str(numba.config.THREADING_LAYER).lower() == "default"  # the user did not choose
    if ours:
        numba.config.THREADING_LAYER = "threadsafe"
    torch_threads = torch.get_num_threads()
    try:
        numba.get_num_threads()  # loads the layer and starts its threads
    except ValueError:  # no layer of that kind loads here
        if not ours:
            raise
        numba.config.THREADING_LAYER = "workqueue"
        numba.get_num_threads()
    if torch.get_num_threads() != torch_threads:  # the omp layer set it (shared runtime)
        torch.set_num_threads(torch_threads)
    return numba.threading_layer()


THREADING_LAYER = _start_threading_layer()
# workqueue aborts the process when two threads run parallel regions at once.
KERNEL_LOCK = threading.Lock() if THREADING_LAYER == "workqueue" else contextlib.nullcontext()
_FORKED = False


def _forked():
    global _FORKED
    _FORKED = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def usable():
    """Whether the kernel can run in this process (GNU OpenMP does not survive a fork)."""
    return not (_FORKED and THREADING_LAYER == "omp" and sys.platform.startswith("linux"))


# Integer codes for the string hyper-parameters. Each (activation, loss, solver) compiles
# its own member epoch, with its codes as constants: see Compiling in the module docstring.
_ACT = {"identity": 0, "logistic": 1, "tanh": 2, "relu": 3}
_LOSS = {"squared_error": 0, "log_loss": 1, "quantile": 2}
_SOLVER = {"adam": 0, "sgd": 1}
_IDENTITY, _LOGISTIC, _TANH, _RELU = 0, 1, 2, 3
_LOG_LOSS = 1
_QUANTILE = 2
_ADAM = 0

# Reassociation lets LLVM vectorise the reductions (sum_j W_ij d_j, dot products);
# contraction lets it use FMA. No nnan/ninf: a diverging member must still show nan/inf
# as the torch engines would.
_FAST = {"contract", "reassoc", "nsz", "arcp"}
# Functions that only index arrays they are given. error_model="numpy": float x/0 gives
# inf/nan (as torch) instead of a ZeroDivisionError check, whose branch in every loop
# iteration stops vectorisation. _nrt=False: no reference counting; with it each call
# atomically increments and decrements the refcount of every array argument, which costs
# more than a (10, 10) layer's arithmetic and makes the threads fight over one cache line.
_HOT = dict(cache=True, fastmath=_FAST, error_model="numpy", _nrt=False)
# Helpers, called only from compiled code: no wrappers for calls from Python or C (less to
# compile). LLVM inlines them into the member epoch; forceinline makes sure of it where a
# call would cost more than the helper (scalar helpers inside loops).
_CALLEE = dict(_HOT, no_cpython_wrapper=True, no_cfunc_wrapper=True)
_SCALAR = dict(_CALLEE, forceinline=True)
# _sgd alone is inlined by numba (into its caller's IR, with the caller's flags): compiled
# on its own, LLVM rewrote its select of the two candidates and heavy-ball results changed
# in the last bit.
_INLINE = dict(inline="always")

_f32 = np.float32
# Hot loops index with unsigned integers: a signed index makes numba emit a wraparound
# select (negative index -> from the end) on every access, which stops LLVM vectorising.
# (Mixed uint64/int64 arithmetic is float64 in numba, hence the unsigned constants.)
_U = np.uint64
_U1, _U2, _U3, _U4 = _U(1), _U(2), _U(3), _U(4)
_ZERO = _f32(0.0)
_ONE = _f32(1.0)
_HALF = _f32(0.5)

# Rational approximation of tanh on [-c, c] (Eigen's generic_fast_tanh_float): odd
# numerator of degree 13, even denominator of degree 6; beyond c, tanh is 1 to float32
# precision. Max absolute error 2.9e-7 over the real line (float32 evaluation, FMA).
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
@njit(**_SCALAR)
def _tanh(x):
    """Compute float32 tanh by a branch-free rational approximation (vectorises in loops)."""
    # Clamps written as selects so that nan propagates (torch.tanh(nan) = nan).
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


@njit(**_CALLEE)
def _activate(h, lo, n, act):
    """Apply the hidden activation to ``h[lo:lo+n]`` in place."""
    lo = _U(lo)
    # The branch on the activation sits outside the loops, so that each loop vectorises.
    if act == _TANH:
        for j in range(_U(n)):
            h[lo + j] = _tanh(h[lo + j])
    elif act == _RELU:
        for j in range(_U(n)):
            z = h[lo + j]
            h[lo + j] = _ZERO if z < _ZERO else z  # keeps nan, as torch.relu
    elif act == _LOGISTIC:
        # libm exp does not vectorise; logistic is not the configuration we tune for.
        for j in range(_U(n)):
            h[lo + j] = _ONE / (_ONE + math.exp(-h[lo + j]))


# ``act`` is a run-time value here (the member epoch's ``hyper[0]``), not a constant of
# its configuration: see Compiling in the module docstring.
@njit(**_SCALAR)
def _dact(a, act):
    """Return the activation's derivative, computed from its output ``a`` (float32)."""
    if act == _TANH:
        return _ONE - a * a
    if act == _LOGISTIC:
        return a * (_ONE - a)
    if act == _RELU:
        return _ONE if a > _ZERO else _ZERO
    return _ONE


# ------------------------------------------------------------------ optimizer
# ``opt`` = (lr, lr_t, mu, b1, b2, eps), float32: lr_t is adam's bias-corrected step size
# for the current step.
@njit(**_INLINE)
def _sgd(w, vel, g, nesterov, opt):
    """Take one sgd step of one parameter: returns (new w, new velocity), as apply_update."""
    lr, _, mu, _, _, _ = opt
    vel = mu * vel - lr * g
    # Both candidates computed, one selected: a loop-invariant select still vectorises.
    w_nesterov = w + mu * vel - lr * g
    w_heavy_ball = w + vel
    return (w_nesterov if nesterov else w_heavy_ball), vel


@njit(**_SCALAR)
def _adam(w, m, v, g, opt):
    """Take one adam step of one parameter: returns (new w, m, v), as apply_update."""
    _, lr_t, _, b1, b2, eps = opt
    m = b1 * m + (_ONE - b1) * g
    v = b2 * v + (_ONE - b2) * g * g
    return w - lr_t * m / (np.sqrt(v) + eps), m, v


# One loop per solver (a function each, the member epoch calls its solver's), not a
# branch inside one loop, so that each vectorises.
@njit(**_CALLEE)
def _apply_adam(p, m, v, lo, n, g, gi, decay, keep, opt):
    """One adam step on ``p[lo:lo+n]`` with gradient ``g[gi:gi+n] + decay * p``.

    The step starts from ``keep * p`` (decoupled weight decay: ``keep = 1 - lr * wd`` for
    weights, 1 for biases); ``m, v`` are the first and second moments.
    """
    lo, gi = _U(lo), _U(gi)
    for k in range(_U(n)):
        w = p[lo + k]
        p[lo + k], m[lo + k], v[lo + k] = _adam(
            w * keep, m[lo + k], v[lo + k], g[gi + k] + decay * w, opt
        )


@njit(**_CALLEE)
def _apply_sgd(p, vel, lo, n, g, gi, decay, keep, nesterov, opt):
    """One sgd step on ``p[lo:lo+n]``, as :func:`_apply_adam`; ``vel`` is the velocity."""
    lo, gi = _U(lo), _U(gi)
    for k in range(_U(n)):
        w = p[lo + k]
        p[lo + k], vel[lo + k] = _sgd(w * keep, vel[lo + k], g[gi + k] + decay * w, nesterov, opt)


# ----------------------------------------------------------------------- forward
@njit(**_CALLEE)
def _forward_layer(p, w0, b0, fi, fo, acts, ai, hi, act, hidden):
    """``acts[hi:hi+fo] = act(acts[ai:ai+fi] @ W + b)`` with W = ``p[w0:b0]`` as (fi, fo).

    ``hidden`` False: the output layer, no activation.
    """
    w0, b0, ai, hi, fi, fo = _U(w0), _U(b0), _U(ai), _U(hi), _U(fi), _U(fo)
    if fo == 1:
        # One output (regression head): a dot product with a contiguous weight column.
        s = p[b0]
        for i in range(fi):
            s += acts[ai + i] * p[w0 + i]
        acts[hi] = s
        if hidden:
            _activate(acts, hi, fo, act)
        return
    for j in range(fo):
        acts[hi + j] = p[b0 + j]
    # i outer, j inner: the inner loop streams contiguous weight rows. Four rows per
    # pass, so that the output row is loaded and stored once per four inputs.
    i = _U(0)
    while i + _U4 <= fi:
        x0 = acts[ai + i]
        x1 = acts[ai + i + _U1]
        x2 = acts[ai + i + _U2]
        x3 = acts[ai + i + _U3]
        r0 = w0 + i * fo
        r1 = r0 + fo
        r2 = r1 + fo
        r3 = r2 + fo
        for j in range(fo):
            acts[hi + j] += x0 * p[r0 + j] + x1 * p[r1 + j] + x2 * p[r2 + j] + x3 * p[r3 + j]
        i += _U4
    while i < fi:
        x0 = acts[ai + i]
        r0 = w0 + i * fo
        for j in range(fo):
            acts[hi + j] += x0 * p[r0 + j]
        i += _U1
    if hidden:
        _activate(acts, hi, fo, act)


@njit(cache=True, error_model="numpy", _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _loss_delta(acts, oi, Y, r, n_out, loss, scale, d, di, taus):
    """Loss of outputs ``acts[oi:oi+O]`` against ``Y[r]``; ``d[di:di+O] = scale * dl/dout``.

    ``taus (O,)``: the quantile of each output (``loss="quantile"``; empty otherwise).
    """
    if loss == _QUANTILE:
        # pinball: (out - y) * g, g = [out > y] - tau (the reference's _pinball_slope)
        val = _ZERO
        for k in range(n_out):
            res = acts[oi + k] - Y[r, k]
            g = (_ONE if res > _ZERO else _ZERO) - taus[k]
            val += res * g
            d[di + k] = g * scale
        return val
    if loss == _LOG_LOSS:
        # Stable softmax / log-softmax: shift by the max so that exp never overflows.
        mx = acts[oi]
        for k in range(1, n_out):
            if acts[oi + k] > mx:
                mx = acts[oi + k]
        s = _ZERO
        for k in range(n_out):
            s += math.exp(acts[oi + k] - mx)
        lse = mx + math.log(s)
        val = _ZERO
        for k in range(n_out):
            y = Y[r, k]
            z = acts[oi + k]
            val += y * (lse - z)
            d[di + k] = (math.exp(z - mx) / s - y) * scale
        return val
    val = _ZERO
    for k in range(n_out):
        res = acts[oi + k] - Y[r, k]
        val += _HALF * res * res
        d[di + k] = res * scale
    return val


# ---------------------------------------------------------------------- backward
# Batch of one: backward through layer (w0, b0) and update it, one sweep per weight row;
# a function per solver, as _apply_*. ``dbuf[cur:cur+fo]`` is dl/d(layer output), already
# scaled by sw / b. Writes dl/d(layer input, pre-activation) to ``dbuf[nxt:nxt+fi]``, from
# the weights *before* the update (the caller ignores it below the first layer).
# Gradients: ``a_i d_j + alpha W_ij`` for ``W_ij``, ``d_j`` for ``b_j``; the weights' step
# starts from ``keep * W_ij``.
@njit(**_CALLEE)
def _backward_update_adam(p, m, v, w0, b0, fi, fo, acts, ai, dbuf, cur, nxt, act, alpha, keep,
                          opt):
    """Batch of one: backward through layer (w0, b0) and update it with adam (see above)."""
    # The bias gradient is d itself; updating the bias first changes nothing below.
    _apply_adam(p, m, v, b0, fo, dbuf, cur, _ZERO, _ONE, opt)
    w0, ai, cur, nxt, fi, fo = _U(w0), _U(ai), _U(cur), _U(nxt), _U(fi), _U(fo)
    if fo == 1:
        # One output: the weight column is contiguous, so sweep it elementwise.
        d0 = dbuf[cur]
        for i in range(fi):
            w = p[w0 + i]
            a = acts[ai + i]
            dbuf[nxt + i] = w * d0 * _dact(a, act)
            p[w0 + i], m[w0 + i], v[w0 + i] = _adam(
                w * keep, m[w0 + i], v[w0 + i], a * d0 + alpha * w, opt
            )
        return
    for i in range(fi):
        a = acts[ai + i]
        r = w0 + i * fo
        s = _ZERO
        for j in range(fo):
            w = p[r + j]
            dj = dbuf[cur + j]
            s += w * dj
            p[r + j], m[r + j], v[r + j] = _adam(
                w * keep, m[r + j], v[r + j], a * dj + alpha * w, opt
            )
        dbuf[nxt + i] = s * _dact(a, act)


@njit(**_CALLEE)
def _backward_update_sgd(p, vel, w0, b0, fi, fo, acts, ai, dbuf, cur, nxt, act, alpha, keep,
                         nesterov, opt):
    """Batch of one: backward through layer (w0, b0) and update it with sgd (see above)."""
    _apply_sgd(p, vel, b0, fo, dbuf, cur, _ZERO, _ONE, nesterov, opt)
    w0, ai, cur, nxt, fi, fo = _U(w0), _U(ai), _U(cur), _U(nxt), _U(fi), _U(fo)
    if fo == 1:
        d0 = dbuf[cur]
        for i in range(fi):
            w = p[w0 + i]
            a = acts[ai + i]
            dbuf[nxt + i] = w * d0 * _dact(a, act)
            p[w0 + i], vel[w0 + i] = _sgd(w * keep, vel[w0 + i], a * d0 + alpha * w, nesterov, opt)
        return
    for i in range(fi):
        a = acts[ai + i]
        r = w0 + i * fo
        s = _ZERO
        for j in range(fo):
            w = p[r + j]
            dj = dbuf[cur + j]
            s += w * dj
            p[r + j], vel[r + j] = _sgd(w * keep, vel[r + j], a * dj + alpha * w, nesterov, opt)
        dbuf[nxt + i] = s * _dact(a, act)


# Without reassociation: with it, this function's code came out differently when it was
# compiled in the process than when loaded from numba's disk cache (its tanh derivative
# and products regrouped), so a new environment's first fit differed in the last bits
# from later ones (tanh, batches > 1; found by tests/test_numba_reproducible.py).
@njit(**dict(_CALLEE, fastmath=_FAST - {"reassoc"}))
def _backward_accumulate_layer(p, gr, w0, b0, fi, fo, acts, ai, dbuf, cur, nxt, act):
    """Batch > 1: backward through layer (w0, b0), adding this row's gradient to ``gr``.

    As :func:`_backward_update_adam` without the update: the weights stay fixed over
    the batch, and the L2 term is added once per batch by :func:`_apply_adam` or
    :func:`_apply_sgd`.
    """
    w0, b0, ai, cur, nxt, fi, fo = _U(w0), _U(b0), _U(ai), _U(cur), _U(nxt), _U(fi), _U(fo)
    if fo == 1:
        d0 = dbuf[cur]
        for i in range(fi):
            a = acts[ai + i]
            dbuf[nxt + i] = p[w0 + i] * d0 * _dact(a, act)
            gr[w0 + i] += a * d0
    else:
        for i in range(fi):
            a = acts[ai + i]
            r = w0 + i * fo
            s = _ZERO
            for j in range(fo):
                dj = dbuf[cur + j]
                s += p[r + j] * dj
                gr[r + j] += a * dj
            dbuf[nxt + i] = s * _dact(a, act)
    for j in range(fo):
        gr[b0 + j] += dbuf[cur + j]


# ------------------------------------------------------------- batch > 1, blocked
# A batch of b > 1 rows runs layer by layer over all its rows (the weights are fixed
# within a batch, so this is the same mathematics as row by row): activations and errors
# of the whole batch live in scratch rows of stride ``sa`` / ``sw``. Rows go four at a
# time against each weight row, so that each weight (and each gradient entry) is loaded
# once per four rows instead of once per row (E=50, (100, 100), batch 32, 2 threads:
# 0.69 s -> 0.35 s per epoch of 10,000 rows; the forward pass also takes four inputs
# per pass, 16 products per output element loaded and stored).
@njit(**_CALLEE)
def _forward_rows4(p, w0, b0, fi, fo, acts, ai, hi, sa, act, hidden):
    """:func:`_forward_layer` for the four rows at ``acts[ai + r*sa]``, r = 0..3 (fo > 1)."""
    w0, b0, ai, hi, fi, fo, sa = _U(w0), _U(b0), _U(ai), _U(hi), _U(fi), _U(fo), _U(sa)
    a0, a1, a2, a3 = ai, ai + sa, ai + _U2 * sa, ai + _U3 * sa
    h0, h1, h2, h3 = hi, hi + sa, hi + _U2 * sa, hi + _U3 * sa
    for j in range(fo):
        bj = p[b0 + j]
        acts[h0 + j] = bj
        acts[h1 + j] = bj
        acts[h2 + j] = bj
        acts[h3 + j] = bj
    i = _U(0)
    while i + _U4 <= fi:
        x00 = acts[a0 + i]
        x10 = acts[a1 + i]
        x20 = acts[a2 + i]
        x30 = acts[a3 + i]
        x01 = acts[a0 + i + _U1]
        x11 = acts[a1 + i + _U1]
        x21 = acts[a2 + i + _U1]
        x31 = acts[a3 + i + _U1]
        x02 = acts[a0 + i + _U2]
        x12 = acts[a1 + i + _U2]
        x22 = acts[a2 + i + _U2]
        x32 = acts[a3 + i + _U2]
        x03 = acts[a0 + i + _U3]
        x13 = acts[a1 + i + _U3]
        x23 = acts[a2 + i + _U3]
        x33 = acts[a3 + i + _U3]
        q0 = w0 + i * fo
        q1 = q0 + fo
        q2 = q1 + fo
        q3 = q2 + fo
        for j in range(fo):
            u0 = p[q0 + j]
            u1 = p[q1 + j]
            u2 = p[q2 + j]
            u3 = p[q3 + j]
            acts[h0 + j] += x00 * u0 + x01 * u1 + x02 * u2 + x03 * u3
            acts[h1 + j] += x10 * u0 + x11 * u1 + x12 * u2 + x13 * u3
            acts[h2 + j] += x20 * u0 + x21 * u1 + x22 * u2 + x23 * u3
            acts[h3 + j] += x30 * u0 + x31 * u1 + x32 * u2 + x33 * u3
        i += _U4
    while i < fi:
        x0 = acts[a0 + i]
        x1 = acts[a1 + i]
        x2 = acts[a2 + i]
        x3 = acts[a3 + i]
        r0 = w0 + i * fo
        for j in range(fo):
            u = p[r0 + j]
            acts[h0 + j] += x0 * u
            acts[h1 + j] += x1 * u
            acts[h2 + j] += x2 * u
            acts[h3 + j] += x3 * u
        i += _U1
    if hidden:
        _activate(acts, h0, fo, act)
        _activate(acts, h1, fo, act)
        _activate(acts, h2, fo, act)
        _activate(acts, h3, fo, act)


@njit(**_CALLEE)
def _backward_rows4(p, gr, w0, b0, fi, fo, acts, ai, sa, dbuf, cur, nxt, sw, act, below):
    """:func:`_backward_accumulate_layer` for four rows at once (fo > 1).

    Row r's activations at ``acts[ai + r*sa]``, its errors at ``dbuf[cur + r*sw]`` and
    ``dbuf[nxt + r*sw]``. ``below`` False (first layer): the error sent below is not needed.
    """
    w0, b0, ai, cur, nxt = _U(w0), _U(b0), _U(ai), _U(cur), _U(nxt)
    fi, fo, sa, sw = _U(fi), _U(fo), _U(sa), _U(sw)
    c0, c1, c2, c3 = cur, cur + sw, cur + _U2 * sw, cur + _U3 * sw
    if below:
        for i in range(fi):
            e0 = acts[ai + i]
            e1 = acts[ai + sa + i]
            e2 = acts[ai + _U2 * sa + i]
            e3 = acts[ai + _U3 * sa + i]
            r = w0 + i * fo
            s0 = _ZERO
            s1 = _ZERO
            s2 = _ZERO
            s3 = _ZERO
            for j in range(fo):
                w = p[r + j]
                d0 = dbuf[c0 + j]
                d1 = dbuf[c1 + j]
                d2 = dbuf[c2 + j]
                d3 = dbuf[c3 + j]
                s0 += w * d0
                s1 += w * d1
                s2 += w * d2
                s3 += w * d3
                gr[r + j] += e0 * d0 + e1 * d1 + e2 * d2 + e3 * d3
            dbuf[nxt + i] = s0 * _dact(e0, act)
            dbuf[nxt + sw + i] = s1 * _dact(e1, act)
            dbuf[nxt + _U2 * sw + i] = s2 * _dact(e2, act)
            dbuf[nxt + _U3 * sw + i] = s3 * _dact(e3, act)
    else:
        for i in range(fi):
            e0 = acts[ai + i]
            e1 = acts[ai + sa + i]
            e2 = acts[ai + _U2 * sa + i]
            e3 = acts[ai + _U3 * sa + i]
            r = w0 + i * fo
            for j in range(fo):
                gr[r + j] += (
                    e0 * dbuf[c0 + j] + e1 * dbuf[c1 + j] + e2 * dbuf[c2 + j] + e3 * dbuf[c3 + j]
                )
    for j in range(fo):
        gr[b0 + j] += dbuf[c0 + j] + dbuf[c1 + j] + dbuf[c2 + j] + dbuf[c3 + j]


# ----------------------------------------------------------------- first layer
@njit(**_CALLEE)
def _first_inputs(X, r, first, W, acts, base):
    """``acts[base:base+W]``: the first-layer inputs of row ``r`` (see member_epoch's ``first``)."""
    src, lo, inv, low, high, code, _, _, _, _ = first
    base = _U(base)
    for f in range(_U(W)):
        x = X[r, src[f]]
        if code[f] >= _ZERO:  # a categorical feature's level: a one-hot
            acts[base + f] = _ONE if x == code[f] else _ZERO
            continue
        v = (x - lo[f]) * inv[f]
        v = high[f] if v > high[f] else v
        v = low[f] if v < low[f] else v
        acts[base + f] = v


# Batches of more than one row, when the first layer reads bins (the piecewise-linear
# encoding): its product with a value's ramps is computed from the bins' structure, never
# from the ramps themselves. For a value x of slot s in its bin j (of the run of n bin rows
# from r0 = run_row[s], edges lo_j = lo[r0 + j], inverse widths inv_j = inv[r0 + j]):
#
#   x W[s] + sum_i ramp_i(x) W[r0 + i] = P_j + (x - lo_j) V_j,
#   P_j = C_j + lo_j W[s],   C_j = sum_{i < j} W[r0 + i],   V_j = W[s] + inv_j W[r0 + j]:
#
# two rows of fo per value instead of 1 + n (the value's own row folded in). The batch is
# walked bin-major: for each value, its rows are sorted by bin (a counting sort), the bins
# visited in order with the prefix C running along, and P_j, V_j made once per bin for the
# rows in it, so every operand of the inner loops stays in L1. Backward, bin by bin from
# the top, the rows' errors d give A_j = sum d and B_j = sum (x - lo_j) d, and
#
#   grad W[s] += lo_j A_j + B_j,   grad W[r0 + j] += inv_j B_j + sum_{j' > j} A_j'
#
# (a suffix sum running down). Values without bins (binary features) read their row as
# in the dense path. ``vec`` is scratch for six rows of fo (C, P, V, A, B, the suffix);
# ``xj`` keeps each batch row's x - lo_j (or x), ``isc`` each slot's rows sorted by bin
# (a counting sort), both made by the forward pass for the backward pass.
@njit(**_CALLEE)
def _bin_rows(X, rows, start, b, slots, lo, xj, isc, nc):
    """Each batch row's value per slot (``xj``), and per slot its rows sorted by bin or level.

    ``slots``: ``(column, value row, run row, run length)`` arrays of the member's features;
    ``xj[q*k + s]``: x, or x - lo_j where the slot has bins (0 for a level); ``isc[s*b:]``
    the rows in bin order, ``isc[k*b + s*nc:]`` each bin's first position among them.
    """
    slot_src, value_row, run_row, run_n = slots
    k = slot_src.shape[0]
    kb = k * b
    for q in range(b):  # row-major: each row of X read once
        r = rows[start + q]
        for s in range(k):
            x = X[r, slot_src[s]]
            n = run_n[s]
            if n == 0:
                xj[q * k + s] = x
                continue
            r0 = run_row[s]
            if value_row[s] < 0:  # categorical: the code is the level
                j = min(max(np.int64(x), 0), n - 1)
                xj[q * k + s] = _ZERO
            else:
                j = 0
                for t in range(1, n):  # its bin: the edges at or below it (no branch)
                    j += lo[r0 + t] <= x
                xj[q * k + s] = x - lo[r0 + j]
            isc[s * b + q] = j  # the bin, for now; sorted below
    for s in range(k):  # a counting sort of the batch's rows by bin, per slot
        n = run_n[s]
        if n == 0:
            continue
        c = kb + s * nc
        for j in range(n + 1):
            isc[c + j] = 0
        for q in range(b):
            isc[c + isc[s * b + q] + 1] += 1
        for j in range(n):
            isc[c + j + 1] += isc[c + j]
        # isc[c + j] is now bin j's first position; place rows, moving a cursor per bin
        for q in range(b):
            isc[c + n + 1 + q] = isc[s * b + q]  # keep the bins: the rows overwrite them
        for q in range(b):
            j = isc[c + n + 1 + q]
            isc[s * b + isc[c + j]] = q
            isc[c + j] += 1
        for j in range(n, 0, -1):  # back to the firsts
            isc[c + j] = isc[c + j - 1]
        isc[c] = 0


@njit(**_CALLEE)
def _first_forward_binned(p, w0, b0, fo, X, rows, start, b, slots, lo, inv, acts, a1, sa,
                          act, xj, vec, isc, nc, blocked):
    """First layer of the batch's ``b`` rows, bin-major (see above), into ``acts[a1 + q*sa:]``.

    ``blocked``: four rows per pass where a bin has them (training); otherwise every row
    alike, so a row's result does not depend on the others in its batch (prediction).
    """
    slot_src, value_row, run_row, run_n = slots
    k = slot_src.shape[0]
    fo_, sa_, a1_ = _U(fo), _U(sa), _U(a1)
    pc, pp, pv = _U(0), _U(fo), _U(2) * _U(fo)
    _bin_rows(X, rows, start, b, slots, lo, xj, isc, nc)
    for q in range(b):
        for h in range(fo_):
            acts[a1_ + _U(q) * sa_ + h] = p[_U(b0) + h]
    for s in range(k):
        n = run_n[s]
        ws = _U(w0) + _U(max(value_row[s], 0)) * fo_
        if n == 0:
            for q in range(b):
                x = xj[q * k + s]
                hq = a1_ + _U(q) * sa_
                for h in range(fo_):
                    acts[hq + h] += x * p[ws + h]
            continue
        r0 = run_row[s]
        c = k * b + s * nc
        if value_row[s] < 0:  # categorical: each row adds its level's row
            for j in range(n):
                wr = _U(w0) + _U(r0 + j) * fo_
                stop = isc[c + j + 1] if j + 1 < n else b
                for i in range(isc[c + j], stop):
                    hq = a1_ + _U(isc[s * b + i]) * sa_
                    for h in range(fo_):
                        acts[hq + h] += p[wr + h]
            continue
        for h in range(fo_):
            vec[pc + h] = _ZERO
        for j in range(n):
            r = r0 + j
            wr = _U(w0) + _U(r) * fo_
            first, stop = isc[c + j], (isc[c + j + 1] if j + 1 < n else b)
            if stop > first:
                lo_j, inv_j = lo[r], inv[r]
                for h in range(fo_):
                    vec[pp + h] = vec[pc + h] + lo_j * p[ws + h]
                    vec[pv + h] = p[ws + h] + inv_j * p[wr + h]
                i = first
                while blocked and i + 4 <= stop:  # four rows per pass over P and V
                    q0, q1 = isc[s * b + i], isc[s * b + i + 1]
                    q2, q3 = isc[s * b + i + 2], isc[s * b + i + 3]
                    d0, d1, d2, d3 = xj[q0 * k + s], xj[q1 * k + s], xj[q2 * k + s], xj[q3 * k + s]
                    h0, h1 = a1_ + _U(q0) * sa_, a1_ + _U(q1) * sa_
                    h2, h3 = a1_ + _U(q2) * sa_, a1_ + _U(q3) * sa_
                    for h in range(fo_):
                        ph = vec[pp + h]
                        vh = vec[pv + h]
                        acts[h0 + h] += ph + d0 * vh
                        acts[h1 + h] += ph + d1 * vh
                        acts[h2 + h] += ph + d2 * vh
                        acts[h3 + h] += ph + d3 * vh
                    i += 4
                while i < stop:
                    q = isc[s * b + i]
                    dx = xj[q * k + s]
                    hq = a1_ + _U(q) * sa_
                    for h in range(fo_):
                        acts[hq + h] += vec[pp + h] + dx * vec[pv + h]
                    i += 1
            for h in range(fo_):
                vec[pc + h] += p[wr + h]
    for q in range(b):
        _activate(acts, a1_ + _U(q) * sa_, fo_, act)


@njit(**_CALLEE)
def _first_backward_binned(gr, w0, b0, fo, slots, lo, inv, b, dbuf, cur, swd, xj, vec, isc,
                           nc):
    """Add the batch's first-layer gradient to ``gr`` (see above).

    From its rows' errors ``dbuf[cur + q*swd:]``; the rows' bins and order are the forward
    pass's.
    """
    slot_src, value_row, run_row, run_n = slots
    k = slot_src.shape[0]
    fo_, cur_, swd_ = _U(fo), _U(cur), _U(swd)
    pa, pb, ps = _U(3) * fo_, _U(4) * fo_, _U(5) * fo_
    for q in range(b):
        dq = cur_ + _U(q) * swd_
        for h in range(fo_):
            gr[_U(b0) + h] += dbuf[dq + h]
    for s in range(k):
        n = run_n[s]
        ws = _U(w0) + _U(max(value_row[s], 0)) * fo_
        if n == 0:
            for q in range(b):
                x = xj[q * k + s]
                dq = cur_ + _U(q) * swd_
                for h in range(fo_):
                    gr[ws + h] += x * dbuf[dq + h]
            continue
        r0 = run_row[s]
        c = k * b + s * nc
        if value_row[s] < 0:  # categorical: each row's error to its level's row
            for j in range(n):
                wr = _U(w0) + _U(r0 + j) * fo_
                stop = isc[c + j + 1] if j + 1 < n else b
                for i in range(isc[c + j], stop):
                    dq = cur_ + _U(isc[s * b + i]) * swd_
                    for h in range(fo_):
                        gr[wr + h] += dbuf[dq + h]
            continue
        for h in range(fo_):
            vec[ps + h] = _ZERO  # the errors of the rows in the bins above
        for i in range(n):
            j = n - 1 - i  # from the top bin down
            r = r0 + j
            wr = _U(w0) + _U(r) * fo_
            first, stop = isc[c + j], (isc[c + j + 1] if j + 1 < n else b)
            for h in range(fo_):
                vec[pa + h] = _ZERO
                vec[pb + h] = _ZERO
            t = first
            while t + 4 <= stop:  # four rows per pass over A and B
                q0, q1 = isc[s * b + t], isc[s * b + t + 1]
                q2, q3 = isc[s * b + t + 2], isc[s * b + t + 3]
                x0, x1, x2, x3 = xj[q0 * k + s], xj[q1 * k + s], xj[q2 * k + s], xj[q3 * k + s]
                e0, e1 = cur_ + _U(q0) * swd_, cur_ + _U(q1) * swd_
                e2, e3 = cur_ + _U(q2) * swd_, cur_ + _U(q3) * swd_
                for h in range(fo_):
                    g0, g1, g2, g3 = dbuf[e0 + h], dbuf[e1 + h], dbuf[e2 + h], dbuf[e3 + h]
                    vec[pa + h] += (g0 + g1) + (g2 + g3)
                    vec[pb + h] += (x0 * g0 + x1 * g1) + (x2 * g2 + x3 * g3)
                t += 4
            while t < stop:
                q = isc[s * b + t]
                dx = xj[q * k + s]
                dq = cur_ + _U(q) * swd_
                for h in range(fo_):
                    d = dbuf[dq + h]
                    vec[pa + h] += d
                    vec[pb + h] += dx * d
                t += 1
            lo_j, inv_j = lo[r], inv[r]
            for h in range(fo_):
                a = vec[pa + h]
                bb = vec[pb + h]
                gr[ws + h] += lo_j * a + bb
                gr[wr + h] += inv_j * bb + vec[ps + h]
                vec[ps + h] += a


# ------------------------------------------------------------------- one member
def _make_member_epoch(act, loss, solver, one_row, many_rows):
    """The member epoch of one configuration, its codes compile-time constants.

    A closure over the codes ``act``, ``loss`` and ``solver`` and the bools ``one_row``
    and ``many_rows`` (whether the epoch has steps of one row, of more rows): numba types
    them as constants, prunes the branches on ``solver`` and on the step sizes before
    typing and passes ``act`` and ``loss`` as literals to the helpers; it hashes a
    closure's cell contents into the key of its on-disk cache, so each configuration
    compiles once per environment. Compiled for :data:`_MEMBER_ARGS` by
    :func:`_member_address`.
    """

    @njit(**_HOT)
    def member_epoch(
        p, st0, st1, t0, X, Y, sw, has_sw, rows, first, has_first, binned, offs, sizes, aoff,
        alpha, wd, bsz, lr, hyper, acts, dbuf, gr, tab, xj, isc, taus,
    ):
        """All steps of one member's epoch; returns (sum_i sw_i l_i over the epoch, new step count).

        p, st0, st1 : (P,) the member's parameter and optimizer-state rows, updated in place
        t0 : int, the member's step count before the epoch
        rows : (M,) int64, the member's sample order
        first : the member's first-layer map (read only if has_first): ``src (W,)`` int64,
            the column of X each input reads, and ``lo, inv, low, high (W,)`` float32:
            input ``f`` is ``clamp((X[r, src[f]] - lo[f]) * inv[f], low[f], high[f])``
            (:class:`skensemble._inputs.FirstLayer`); ``code (W,)``: a level's one-hot
            where ``>= 0``; and per feature it reads (slot), ``slot_src, value_row, run_row,
            run_n (k,)`` int64: its column, its value's row (-1: categorical), its run of
            bin or level rows
        binned : whether batches of more rows compute the first layer from the bins'
            structure (it reads bins); steps of one row compute its inputs (dense)
        alpha, wd : float32, the member's L2 strength and the decoupled weight decay
        lr : float32, the member's learning rate
        hyper : (activation code, nesterov, momentum, beta_1, beta_2, epsilon): int, bool,
            float32 x4 (the code at run time, for the derivative: see Compiling above)
        acts : (>=A,) scratch: the activations of one row, the input first
        dbuf : (2 * W,) scratch, W >= max(sizes): dl/d(output) of the current layer and of
            the layer below, in alternating halves
        gr : (>=P,) scratch: the batch gradient (batch > 1 only)
        tab : scratch: six rows of the first layer's width (binned)
        xj : scratch: each batch row's values (``k`` per row; binned)
        isc : int64 scratch: per slot, the batch's rows sorted by bin, then (``W + 2 + b``
            each) its bins' first positions and the rows' bins (binned)
        taus : (O,) float32, each output's quantile (loss="quantile"; empty otherwise)
        """
        M = rows.shape[0]
        L = offs.shape[0]
        F = sizes[0]
        n_out = sizes[L]
        P = offs[L - 1, 2]
        half = dbuf.shape[0] // 2
        rb = max(1, min(bsz, M))  # rows of scratch: a whole batch (as allocated by the caller)
        sa = acts.shape[0] // rb  # stride of a row's activations in acts
        sw_ = half // rb  # stride of a row's errors in each half of dbuf
        act_code, nesterov, mu, b1, b2, eps = hyper
        _, flo, finv, _, _, _, slot_src, value_row, run_row, run_n = first
        slots = (slot_src, value_row, run_row, run_n)  # the features read (binned)
        nc = F + 2 + max(1, min(bsz, M))  # per slot: bins' firsts, and the rows' bins
        for k in range(P):
            gr[k] = _ZERO
        total = 0.0  # float64: a sum over up to M rows
        t = t0
        for start in range(0, M, bsz):
            stop = min(start + bsz, M)
            b = stop - start
            t += 1
            lr_t = lr
            if solver == _ADAM:
                # The member's own step count, incremented before use (as apply_update), and
                # float32 arithmetic as there: 1 - b2^t loses ~1e-5 relative to cancellation
                # at small t, and the engines should lose the same.
                tf = _f32(t)
                lr_t = lr * np.sqrt(_ONE - b2**tf) / (_ONE - b1**tf)
            step_opt = (lr, lr_t, mu, b1, b2, eps)
            keep = _ONE - lr * wd  # decoupled weight decay of this step (1 without)
            if b == 1:
                if not one_row:  # a configuration without steps of one row: none here
                    continue
                r = rows[start]
                # ---- forward: acts = [x, h_1, ..., h_{L-1}, out]
                if has_first:
                    _first_inputs(X, r, first, F, acts, np.int64(0))
                else:
                    for f in range(F):
                        acts[f] = X[r, f]
                for li in range(L):
                    _forward_layer(
                        p, offs[li, 0], offs[li, 1], sizes[li], sizes[li + 1], acts, aoff[li],
                        aoff[li + 1], act, li < L - 1,
                    )
                # ---- output error, pre-scaled by sw_r / b (the batch mean of the weighted loss)
                wr = sw[r] if has_sw else _ONE
                # di not a literal 0: one compiled signature of _loss_delta
                total += wr * _loss_delta(
                    acts, aoff[L], Y, r, n_out, loss, _f32(wr), dbuf, np.int64(0), taus
                )
                # ---- backward, top layer first; dbuf[cur:] holds dl/d(output of layer li)
                cur = np.int64(0)
                for li in range(L - 1, -1, -1):
                    nxt = half - cur
                    # The gradient is applied as it is computed.
                    w0, b0, fi, fo = offs[li, 0], offs[li, 1], sizes[li], sizes[li + 1]
                    ai = aoff[li]
                    if solver == _ADAM:
                        _backward_update_adam(
                            p, st0, st1, w0, b0, fi, fo, acts, ai, dbuf, cur, nxt, act_code,
                            alpha, keep, step_opt,
                        )
                    else:
                        _backward_update_sgd(
                            p, st0, w0, b0, fi, fo, acts, ai, dbuf, cur, nxt, act_code, alpha,
                            keep, nesterov, step_opt,
                        )
                    cur = nxt
                continue
            if not many_rows:  # a configuration without steps of more rows: none here
                continue
            # ---- batch > 1: the whole batch layer by layer; row q at acts[q*sa], dbuf[q*sw]
            for q in range(b):
                r = rows[start + q]
                base = q * sa
                if binned:
                    continue  # the first layer reads X itself
                if has_first:
                    _first_inputs(X, r, first, F, acts, base)
                else:
                    for f in range(F):
                        acts[base + f] = X[r, f]
            for li in range(L):
                w0, b0, fi, fo = offs[li, 0], offs[li, 1], sizes[li], sizes[li + 1]
                hidden = li < L - 1
                if li == 0 and binned:
                    _first_forward_binned(
                        p, w0, b0, fo, X, rows, start, b, slots, flo, finv, acts, aoff[1], sa,
                        act, xj, tab, isc, nc, True,
                    )
                    continue
                q = np.int64(0)
                if fo > 1:
                    while q + 4 <= b:
                        _forward_rows4(
                            p, w0, b0, fi, fo, acts, aoff[li] + q * sa, aoff[li + 1] + q * sa, sa,
                            act, hidden,
                        )
                        q += 4
                while q < b:
                    _forward_layer(
                        p, w0, b0, fi, fo, acts, aoff[li] + q * sa, aoff[li + 1] + q * sa, act,
                        hidden,
                    )
                    q += 1
            # ---- output errors, pre-scaled by sw_r / b (the batch mean of the weighted loss)
            for q in range(b):
                r = rows[start + q]
                wr = sw[r] if has_sw else _ONE
                total += wr * _loss_delta(
                    acts, q * sa + aoff[L], Y, r, n_out, loss, _f32(wr / b), dbuf, q * sw_,
                    taus,
                )
            # ---- backward, top layer first, accumulating the batch gradient in gr
            cur = np.int64(0)
            for li in range(L - 1, -1, -1):
                nxt = half - cur
                w0, b0, fi, fo = offs[li, 0], offs[li, 1], sizes[li], sizes[li + 1]
                if li == 0 and binned:
                    _first_backward_binned(gr, w0, b0, fo, slots, flo, finv, b, dbuf, cur, sw_,
                                           xj, tab, isc, nc)
                    continue
                q = np.int64(0)
                if fo > 1:
                    while q + 4 <= b:
                        _backward_rows4(
                            p, gr, w0, b0, fi, fo, acts, aoff[li] + q * sa, sa, dbuf,
                            cur + q * sw_, nxt + q * sw_, sw_, act_code, li > 0,
                        )
                        q += 4
                while q < b:
                    _backward_accumulate_layer(
                        p, gr, w0, b0, fi, fo, acts, aoff[li] + q * sa, dbuf, cur + q * sw_,
                        nxt + q * sw_, act_code,
                    )
                    q += 1
                cur = nxt
            if b > 1:  # always true here (b == 1 continued above)
                alpha_b = _f32(alpha / b)  # L2 gradient alpha * W / b, with b the actual length
                for li in range(L):
                    w0, b0, end = offs[li, 0], offs[li, 1], offs[li, 2]
                    if solver == _ADAM:
                        _apply_adam(p, st0, st1, w0, b0 - w0, gr, w0, alpha_b, keep, step_opt)
                        _apply_adam(p, st0, st1, b0, end - b0, gr, b0, _ZERO, _ONE, step_opt)
                    else:
                        _apply_sgd(p, st0, w0, b0 - w0, gr, w0, alpha_b, keep, nesterov, step_opt)
                        _apply_sgd(p, st0, b0, end - b0, gr, b0, _ZERO, _ONE, nesterov, step_opt)
                for k in range(P):
                    gr[k] = _ZERO
        return total, t

    return member_epoch


def _pad(n):
    """Round a scratch row up to 16 floats (64 bytes) so that threads never share a line."""
    return (int(n) + 15) // 16 * 16


# ------------------------------------------------------------------ all members
# The member epoch's argument types, fixed: each configuration's member epoch is compiled
# for exactly these, and the kernel calls it with exactly these (_call_member checks).
_F1, _F2 = types.float32[::1], types.float32[:, ::1]
_I1, _I2 = types.int64[::1], types.int64[:, ::1]
# src, lo, inv, low, high, code, slot_src, value_row, run_row, run_n
_FIRST = types.Tuple((_I1, _F1, _F1, _F1, _F1, _F1, _I1, _I1, _I1, _I1))
_MEMBER_ARGS = (
    _F1, _F1, _F1, types.int64, _F2, _F2, _F1, types.boolean, _I1, _FIRST, types.boolean,
    types.boolean, _I2, _I1, _I1, types.float32, types.float32, types.int64, types.float32,
    types.Tuple((types.int64, types.boolean, *[types.float32] * 4)), _F1, _F1, _F1, _F1, _F1,
    _I1, _F1,
)  # p, st0, st1, t0, X, Y, sw, has_sw, rows, first, has_first, binned, offs, sizes, aoff,
#    alpha, wd, bsz, lr, hyper, acts, dbuf, gr, tab, xj, isc, taus
_MEMBER_RETURN = types.Tuple((types.float64, types.int64))  # (loss sum, step count)


@intrinsic
def _call_member(typingctx, address, args):
    """Call the member epoch compiled at ``address`` with the tuple ``args``.

    A call through a pointer, not a call of the dispatcher: a called dispatcher's code is
    linked into the caller's module and optimised and compiled to machine code again with
    it, and parfor lowering nests a prange body four modules deep, so the member epoch
    would be optimised five times. Through a pointer it is compiled once (per
    configuration), and this kernel, compiled once, serves every configuration. The
    member epoch raises nothing (numpy error model, no bounds checks), so its status is
    not read.
    """
    if not isinstance(address, types.Integer) or tuple(args) != _MEMBER_ARGS:
        raise errors.TypingError(f"_call_member needs (int, {_MEMBER_ARGS}), got {args}")

    def codegen(context, builder, sig, llargs):
        address, args = llargs
        fnty = context.call_conv.get_function_type(_MEMBER_RETURN, _MEMBER_ARGS)
        fn = builder.inttoptr(address, fnty.as_pointer())
        values = [builder.extract_value(args, i) for i in range(len(_MEMBER_ARGS))]
        result = cgutils.alloca_once(builder, fnty.args[0].pointee)  # numba's calling convention
        builder.store(cgutils.get_null_value(fnty.args[0].pointee), result)
        excinfo = cgutils.alloca_once(builder, fnty.args[1].pointee)
        packed = context.get_arg_packer(_MEMBER_ARGS).as_arguments(builder, values)
        builder.call(fn, [result, excinfo, *packed])
        return context.get_returned_value(builder, _MEMBER_RETURN, builder.load(result))

    return _MEMBER_RETURN(address, args), codegen


@njit(parallel=True, cache=True)
def _epoch_kernel(
    member, flat, state, steps, X, Y, sw, has_sw, order, src, flo, finv, flow, fhigh, fcode,
    slot_src, value_row, run_row, run_n, has_first, binned, offs, sizes, aoff,
    alphas, lrs, wd, bsz, hyper, acts, dbuf, gr, tab, xj, isc, taus, losses,
):
    """Run one epoch of every member, members in parallel (see :func:`epoch_numba`).

    ``member`` is the address of the configuration's compiled member epoch
    (:func:`_member_address`). The prange is this function's only parallel region: the
    scratch is allocated by the caller because, with parallel=True, each np.zeros here
    would be a parallel region of its own: one more wake-up of the worker threads and one
    more barrier.
    """
    M = order.shape[1]
    S = state.shape[0]
    for e in prange(flat.shape[0]):
        tid = numba.get_thread_id()
        # each member's own rows, rate and L2 strength; the thread's scratch
        total, t = _call_member(
            member,
            (
                flat[e], state[0, e], state[S - 1, e], steps[e], X, Y, sw, has_sw, order[e],
                (src[e], flo[e], finv[e], flow[e], fhigh[e], fcode[e], slot_src[e],
                 value_row[e], run_row[e], run_n[e]),
                has_first, binned, offs, sizes, aoff, alphas[e], wd, bsz, lrs[e], hyper,
                acts[tid], dbuf[tid], gr[tid], tab[tid], xj[tid], isc[tid], taus,
            ),
        )
        losses[e] = total / M
        steps[e] = t


# (activation, loss, solver, one_row, many_rows) -> (member epoch, address of its code)
_MEMBERS = {}
_MEMBERS_LOCK = threading.Lock()


def _member_address(act, loss, solver, one_row, many_rows):
    """Address of the compiled member epoch of this configuration (compiled or loaded once)."""
    key = (act, loss, solver, one_row, many_rows)
    with _MEMBERS_LOCK:
        if key not in _MEMBERS:
            fn = _make_member_epoch(*key)
            fn.compile(_MEMBER_ARGS)  # from the on-disk cache if there
            cres = fn.overloads[_MEMBER_ARGS]
            if cres.signature.return_type != _MEMBER_RETURN:
                raise TypeError(f"member epoch returns {cres.signature.return_type}")
            # The dispatcher is kept: it owns the compiled code.
            _MEMBERS[key] = fn, cres.library.get_pointer_to_function(cres.fndesc.mangled_name)
        return _MEMBERS[key][1]


# ----------------------------------------------------------- forward (validation)
def _make_member_forward(act):
    """One member's forward pass on its rows, for a first layer that reads bins.

    The activation ``act`` is a closure constant (as in :func:`_make_member_epoch`). Rows go
    in batches of ``bsz``: the first layer bin-major from the bins' structure (as in
    training: :func:`_first_forward_binned`), the other layers four rows at a time.
    """

    @njit(**_HOT)
    def member_forward(p, X, rows, first, offs, sizes, aoff, out, acts, xj, vec, isc, bsz,
                       blocked):
        """Raw outputs ``out (n, O)`` of the member ``p (P,)`` on the rows ``rows (n,)``.

        ``blocked``: rows four at a time (validation); otherwise one by one, every row's
        result independent of the other rows (prediction).
        """
        n = rows.shape[0]
        L = offs.shape[0]
        F = sizes[0]
        n_out = sizes[L]
        _, flo, finv, _, _, _, slot_src, value_row, run_row, run_n = first
        slots = (slot_src, value_row, run_row, run_n)
        nc = F + 2 + bsz
        sa = acts.shape[0] // bsz
        for start in range(0, n, bsz):
            b = min(bsz, n - start)
            for li in range(L):
                w0, b0, fi, fo = offs[li, 0], offs[li, 1], sizes[li], sizes[li + 1]
                hidden = li < L - 1
                if li == 0:
                    _first_forward_binned(
                        p, w0, b0, fo, X, rows, start, b, slots, flo, finv, acts, aoff[1], sa,
                        act, xj, vec, isc, nc, blocked,
                    )
                    continue
                q = np.int64(0)
                if blocked and fo > 1:
                    while q + 4 <= b:
                        _forward_rows4(p, w0, b0, fi, fo, acts, aoff[li] + q * sa,
                                       aoff[li + 1] + q * sa, sa, act, hidden)
                        q += 4
                while q < b:
                    _forward_layer(p, w0, b0, fi, fo, acts, aoff[li] + q * sa,
                                   aoff[li + 1] + q * sa, act, hidden)
                    q += 1
            for q in range(b):
                for o in range(n_out):
                    out[start + q, o] = acts[aoff[L] + q * sa + o]
        return 0

    return member_forward


_FORWARD_ARGS = (_F1, _F2, _I1, _FIRST, _I2, _I1, _I1, _F2, _F1, _F1, _F1, _I1, types.int64,
                 types.boolean)
_FORWARD_RETURN = types.int64


@intrinsic
def _call_forward(typingctx, address, args):
    """Call the member forward compiled at ``address`` with ``args`` (as :func:`_call_member`)."""
    if not isinstance(address, types.Integer) or tuple(args) != _FORWARD_ARGS:
        raise errors.TypingError(f"_call_forward needs (int, {_FORWARD_ARGS}), got {args}")

    def codegen(context, builder, sig, llargs):
        address, args = llargs
        fnty = context.call_conv.get_function_type(_FORWARD_RETURN, _FORWARD_ARGS)
        fn = builder.inttoptr(address, fnty.as_pointer())
        values = [builder.extract_value(args, i) for i in range(len(_FORWARD_ARGS))]
        result = cgutils.alloca_once(builder, fnty.args[0].pointee)
        builder.store(cgutils.get_null_value(fnty.args[0].pointee), result)
        excinfo = cgutils.alloca_once(builder, fnty.args[1].pointee)
        packed = context.get_arg_packer(_FORWARD_ARGS).as_arguments(builder, values)
        builder.call(fn, [result, excinfo, *packed])
        return context.get_returned_value(builder, _FORWARD_RETURN, builder.load(result))

    return _FORWARD_RETURN(address, args), codegen


@njit(parallel=True, cache=True)
def _forward_kernel(member, flat, X, idx, src, flo, finv, flow, fhigh, fcode, slot_src,
                    value_row, run_row, run_n, offs, sizes, aoff, out, acts, xj, vec, isc, bsz,
                    blocked):
    """Every member's forward pass on its own rows ``idx (E, n)``, members in parallel."""
    for e in prange(flat.shape[0]):
        tid = numba.get_thread_id()
        _call_forward(member, (
            flat[e], X, idx[e], (src[e], flo[e], finv[e], flow[e], fhigh[e], fcode[e],
                                 slot_src[e], value_row[e], run_row[e], run_n[e]),
            offs, sizes, aoff, out[e], acts[tid], xj[tid], vec[tid], isc[tid], bsz, blocked))


_FORWARDS = {}


def _forward_address(act):
    """Address of the compiled member forward of activation code ``act``."""
    with _MEMBERS_LOCK:
        if act not in _FORWARDS:
            fn = _make_member_forward(act)
            fn.compile(_FORWARD_ARGS)
            cres = fn.overloads[_FORWARD_ARGS]
            _FORWARDS[act] = fn, cres.library.get_pointer_to_function(cres.fndesc.mangled_name)
        return _FORWARDS[act][1]


#: Rows of a member that the forward pass takes at a time.
FORWARD_ROWS = 128


def forward_numba(flat, layout, X, idx, first, activation, blocked=True):
    """Raw outputs ``(E, n, O)`` float32 of each member on its own rows, in compiled code.

    For first layers that read bins (validation of the binned engine, predictions on the
    CPU): the structure of the bins as in training, never the encoded rows. ``flat (E,
    P)``, ``X (N, F)``, ``idx (E, n)`` int64, ``first`` a
    :class:`~skensemble._inputs.FirstLayer` with bins; CPU. ``blocked=False``: each row
    computed alike, whatever rows share its batch (predictions do not depend on them).
    """
    E, n = idx.shape
    W = layout.sizes[0]
    if not usable():
        raise RuntimeError("the numba kernel cannot run in a process forked after numba's "
                           "OpenMP threads started")
    sizes = np.asarray(layout.sizes, dtype=np.int64)
    aoff = np.concatenate([[0], np.cumsum(sizes)])
    n_threads = numba.get_num_threads()
    bsz = max(1, min(FORWARD_ROWS, n))
    kv = first.slot_src.shape[1]
    acts = np.zeros((n_threads, bsz * _pad(aoff[-1])), np.float32)
    xj = np.zeros((n_threads, bsz * kv), np.float32)
    vec = np.zeros((n_threads, 6 * layout.sizes[1]), np.float32)
    isc = np.zeros((n_threads, kv * (bsz + W + 2 + bsz)), np.int64)
    out = np.zeros((E, n, layout.sizes[-1]), np.float32)
    with KERNEL_LOCK:
        _forward_kernel(
            _forward_address(_ACT[activation]), _as_array(flat, np.float32),
            _as_array(X, np.float32), _as_array(idx, np.int64), *_first_arrays(first, None),
            layout.offsets_array(), sizes, aoff, out, acts, xj, vec, isc, bsz, bool(blocked))
    return torch.from_numpy(out)


def _per_member(value, E):
    """A float or ``(E,)`` values as a contiguous float32 array ``(E,)``, rounded once."""
    out = np.empty(E, np.float32)
    out[:] = np.asarray(value.cpu() if torch.is_tensor(value) else value,
                        dtype=np.float64).astype(np.float32)
    return out


def _first_arrays(first, E):
    """A first-layer map as the kernels' arrays (empty ones for none, ``E`` members)."""
    if first is None:
        ints, floats = np.zeros((E, 0), np.int64), np.zeros((E, 0), np.float32)
        return [ints, floats, floats, floats, floats, floats, ints, ints, ints, ints]
    return [_as_array(getattr(first, name), np.int64 if name in first._INT else np.float32)
            for name in first._FIELDS]


def _as_array(t, dtype):
    """C-contiguous numpy array of CPU tensor ``t`` (a view unless a copy is needed)."""
    return np.ascontiguousarray(t.detach().numpy(), dtype=dtype)


def _check_inputs(flat, X, Y, sw, order, layout, first):
    """Raise ValueError where compiled code would read out of bounds (it does not check)."""
    E, M = order.shape
    N = X.shape[0]
    k = layout.sizes[0]
    if flat.shape != (E, layout.n_params):
        raise ValueError(f"flat has shape {tuple(flat.shape)}, expected {(E, layout.n_params)}")
    if Y.shape != (N, layout.sizes[-1]) or (sw is not None and sw.shape != (N,)):
        raise ValueError("Y must be (N, O) and sw (N,) for X of N rows")
    if first is None:
        if X.shape[1] != k:
            raise ValueError(f"X has {X.shape[1]} features, the first layer takes {k}")
    elif tuple(first.src.shape) != (E, k) or (
        first.src.numel() and (first.src.min() < 0 or first.src.max() >= X.shape[1])
    ):
        raise ValueError(f"the first-layer map must be (E, {k}) column indices of X")
    if order.numel() and (order.min() < 0 or order.max() >= N):
        raise ValueError(f"order must hold row indices in [0, {N})")


def epoch_numba(params, data, order, member, hyper):
    """One epoch for all members, member-major in compiled code (numba, CPU).

    Same contract and mathematics as :func:`skensemble._engine.epoch_reference`.

    Parameters
    ----------
    params : Params
        ``flat (E, P)`` and ``state (S, E, P)`` float32, ``steps (E,)`` int64: contiguous
        CPU tensors, updated in place.
    data : Data
        ``X (N, F)``, ``Y (N, O)`` float32, ``sw (N,)`` or None, ``first`` (each member's
        first-layer map, :class:`~skensemble._inputs.FirstLayer`) or None.
    order : Tensor (E, M) int64
        Rows each member visits this epoch, in order.
    member : Member
        Each member's learning rate and (or None: ``hyper.alpha``) L2 strength.
    hyper : Hyper

    Returns
    -------
    Tensor (E,) float32: per-member mean training loss over the epoch (data term only).
    """
    flat, state, steps, layout = params.flat, params.state, params.steps, params.layout
    X, Y, sw, first = data.X, data.Y, data.sw, data.first
    for name, t in (("flat", flat), ("state", state), ("steps", steps)):
        # Updated in place through zero-copy numpy views: a copy would drop the update.
        if t.device.type != "cpu" or not t.is_contiguous():
            raise ValueError(f"epoch_numba needs {name} as a contiguous CPU tensor")
    if flat.dtype != torch.float32 or state.dtype != torch.float32 or steps.dtype != torch.int64:
        raise ValueError("epoch_numba needs float32 flat and state and int64 steps")
    E, M = order.shape
    _check_inputs(flat, X, Y, sw, order, layout, first)
    if state.shape != (hyper.n_state, *flat.shape) or steps.shape != (E,):
        raise ValueError(f"state must be {(hyper.n_state, *flat.shape)} and steps {(E,)}")
    if int(hyper.batch_size) < 1:  # the member epoch's range(0, M, bsz) would raise
        raise ValueError(f"batch_size must be at least 1, got {hyper.batch_size}")
    if E == 0 or M == 0:
        # No batches, so no update; the mean loss over no rows is nan, as in the reference.
        return torch.full((E,), float("nan"))
    losses = np.zeros(E, np.float64)  # (E,)
    # Empty arrays for the absent options keep the argument types fixed: one compilation.
    has_sw = sw is not None
    sw_np = _as_array(sw, np.float32) if has_sw else np.zeros(0, np.float32)  # (N,) or (0,)
    has_first = first is not None
    W = layout.sizes[0]
    fmap = _first_arrays(first, E)
    # batches of more rows compute a first layer that reads bins from their structure
    binned = bool(has_first and int(hyper.batch_size) > 1 and first.has_runs
                  and layout.n_layers > 1)
    sizes = np.asarray(layout.sizes, dtype=np.int64)  # (L + 1,)
    aoff = np.concatenate([[0], np.cumsum(sizes)])  # (L + 2,): layer starts in an acts row
    # Per-thread scratch, once per epoch; the kernel indexes it by numba.get_thread_id().
    n_threads = numba.get_num_threads()
    rb = max(1, min(int(hyper.batch_size), M))  # a whole batch's rows (as in the kernel)
    acts = np.zeros((n_threads, rb * _pad(aoff[-1])), np.float32)
    dbuf = np.zeros((n_threads, 2 * rb * _pad(sizes.max())), np.float32)
    gr = np.zeros((n_threads, _pad(layout.n_params)), np.float32)
    fo1 = layout.sizes[1]
    tab = np.zeros((n_threads, 6 * fo1 if binned else 0), np.float32)
    kv = fmap[6].shape[1]  # the features each member reads
    xj = np.zeros((n_threads, rb * kv if binned else 0), np.float32)
    isc = np.zeros((n_threads, kv * (rb + W + 2 + rb) if binned else 0), np.int64)
    if not usable():
        raise RuntimeError(
            "the numba kernel cannot run in a process forked after numba's OpenMP threads "
            "started; use engine='batched', or start worker processes with 'spawn' or "
            "'forkserver'."
        )
    act = _ACT[hyper.activation]
    bsz = int(hyper.batch_size)
    # Steps of one row (batch 1, or a last batch of one) and of more rows: the member
    # epoch compiles only the paths the epoch takes.
    one_row, many_rows = bsz == 1 or M % bsz == 1, bsz > 1 and M > 1
    address = _member_address(act, _LOSS[hyper.loss], _SOLVER[hyper.solver], one_row, many_rows)
    config = (
        act,
        bool(hyper.nesterovs_momentum),
        _f32(hyper.momentum),
        _f32(hyper.beta_1),
        _f32(hyper.beta_2),
        _f32(hyper.epsilon),
    )
    with KERNEL_LOCK:
        _epoch_kernel(
            address,
            flat.detach().numpy(),  # (E, P) view, written in place
            state.detach().numpy(),  # (S, E, P) view, written in place
            steps.numpy(),  # (E,) view, written in place
            _as_array(X, np.float32),  # (N, F)
            _as_array(Y, np.float32),  # (N, O)
            sw_np,
            has_sw,
            _as_array(order, np.int64),  # (E, M)
            *fmap,
            has_first,
            binned,
            layout.offsets_array(),  # (L, 3)
            sizes,
            aoff,
            _per_member(hyper.alpha if member.alpha is None else member.alpha, E),  # (E,)
            _per_member(member.lr, E),  # (E,) float32
            _f32(hyper.weight_decay),
            int(hyper.batch_size),
            config,
            acts,
            dbuf,
            gr,
            tab,
            xj,
            isc,
            np.asarray(hyper.quantiles, dtype=np.float32).reshape(-1),  # (O,) or (0,)
            losses,
        )
    return torch.from_numpy(losses.astype(np.float32))
