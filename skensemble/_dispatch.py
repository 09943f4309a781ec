"""Choosing the device, the engine and the thread budget for a fit.

Every engine implements the same epoch contract (see :mod:`skensemble._engine`) and
declares what it supports (:mod:`skensemble._engines`); this module maps a request
(``engine="auto"`` or a name) to one of them by those declarations, importing compiled
kernels lazily so that a missing optional dependency never breaks ``import skensemble``.

Threads
-------
Fits and predictions may run at the same time in several threads of one process
(threaded Dask workers, joblib's threading backend, a user's thread pool), each with its
own thread budget. :func:`thread_limit` therefore changes settings of the calling thread
only, and puts them back on exit, with no shared counter between blocks. What is per
thread, as measured here (torch 2.13 with GNU OpenMP, numba 0.68, Linux):

- ``torch.set_num_threads(n)`` sets the *calling thread's* OpenMP and MKL thread counts:
  set to 1 in a worker thread, the worker's ``exp`` and ``bmm`` ran on one OS thread
  while the main thread's ran on two, and the main thread still reported 2.
- It also stores ``n`` process-wide, and a thread adopts that value at its first
  parallel op or ``torch.get_num_threads()`` (ATen initialises each thread lazily). So
  a thread that had not touched torch yet, told to use 1, then ran on 2 because another
  thread set 2 before its first op; and a thread that starts while a block holds 1
  adopts 1 for good. :func:`thread_limit` therefore reads the count before it sets it
  (which initialises the thread), and, under one lock, remembers the process-wide value
  from before the first active block: a thread it first meets while blocks are active,
  holding the limit it last wrote, gets that value back instead, and the last block to
  leave writes it back. A thread that first touches torch outside skensemble while a
  block is active can still adopt the block's limit: torch has no call that sets the
  process-wide value without the calling thread's (a helper thread can, but starting
  one took milliseconds on the loaded machine, so it is used only when the last block
  leaves from a thread whose own count differs).
- ``numba.set_num_threads`` is thread-local (numba's docs; measured: a worker thread's
  setting leaves the main thread's alone), and a new thread starts at
  ``NUMBA_NUM_THREADS``. Its threading layer is chosen in :mod:`._kernels.numba_cpu`.

The numba kernel trains in its own threads; torch only does the per-epoch bookkeeping
beside it (sample orders, losses), on one thread. It used to get the kernel's count:
its small ops (an argsort and a gather of E x M indices per epoch) then ran as
two-thread OpenMP regions, each a fork and a join that waits for the other thread; on a
busy machine that thread is often descheduled, and each wait lasts a time slice. That
was the slowdown of the numba engine under load. E=16, (16,), B=64, 4,000 rows, 10
epochs, two busy-loop processes on the two cores: 1.88 s (median) with torch at 2
threads, 0.77 s at 1 (CPU time 0.63 s and 0.26 s); batched torch took 1.64 s. The
sample order alone, (16, 4,000), load average 4 on the two cores: 4 ms on one thread,
44 ms on two. The price: for very large E x M on an idle many-core machine the order is no longer
computed in parallel ((50, 100,000): 0.72 s on one thread here).
"""

import contextlib
import importlib.util
import os
import re
import sys
import threading

import torch

from . import _engines

ENGINES = _engines.NAMES

# Up to this batch size the member-major compiled kernel beats batched torch on the CPU.
# Measured on the 2-core development machine (10,000 x 30 rows, two tanh layers, sgd,
# engine forced, best of 2): numba/batched seconds per epoch were 1.1-11x in numba's
# favour at every batch in {8, 16, 32, 64} for E in {5, 50} and widths {10, 100}
# (e.g. E=50, (100, 100): B=32 0.66 s vs 1.08 s; B=64 0.68 s vs 0.82 s), the gap
# closing as the batch grows.
MEMBER_MAJOR_MAX_BATCH = 64
# ... and up to this one where first layers read a map of the rows (the bins' structure,
# categorical levels, feature subsets), which the kernel computes per value and torch per
# column: 50,000 flights rows (benchmarks/bench_scale.py), the default members, 8 bins,
# batch 256, one thread: numba 0.82 s per epoch against batched torch's 2.6 s.
MEMBER_MAJOR_MAPPED_MAX_BATCH = 256

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
_NUMBA_KERNEL = "skensemble._kernels.numba_cpu"


def resolve_device(device):
    """``torch.device`` for the ``device`` parameter, with errors that say what to change."""
    if not isinstance(device, str) or not _DEVICE_RE.match(device):
        raise ValueError(
            f"device={device!r} is not understood; use 'auto', 'cpu', 'cuda' or 'cuda:N'."
        )
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} but CUDA is not available in this process (torch "
                f"{torch.__version__}); use device='cpu' or device='auto'."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} but only {torch.cuda.device_count()} CUDA device(s) "
                "are visible."
            )
    return dev


# device="auto" takes the CPU where even a slow CPU trains an epoch faster than the GPU's
# floor, from the first H200 run (benchmarks/results/gpu.json, b957051) and the 2-core
# development machine (benchmarks/results/training_cpu.json), 10,000 rows, two layers:
#
# - GPU floor per row at batch <= 32: the Triton epoch took 0.027-0.035 s at every
#   E <= 1,000 of width 10 and every batch 1-32 (launch- and latency-bound: one program
#   per member walks the rows in order): GPU_ROW_S = 2.7 us.
# - GPU floor per step at larger batches: the graphed engine replayed 39 steps of batch
#   256 in 0.0038 s (E=5, width 10): GPU_STEP_S = 80 us (one step's kernels replayed).
# - CPU rate: the slowest measured, numba at batch 1 on the smallest members (P=431):
#   6.9 GFLOP/s for 6 * E * N * P flops per epoch: CPU_FLOPS = 7e9. Faster CPUs only make
#   the CPU's case stronger, so the rule errs towards the GPU.
#
# The rule: the CPU when 6 * E * N * P / CPU_FLOPS < min(N * GPU_ROW_S, ceil(N / B) *
# GPU_STEP_S), i.e. E * P < 3,150 at batch <= 32 and E * P * B < 93,000 beyond. The
# crossover measured: E=5, width 10 (E * P = 2,155): the CPU 0.019 s per epoch at batch 1
# and 0.008 s at 32 against the H200's 0.030 s and 0.027 s; E=50, width 10 (21,550): the
# H200 0.031 s against 0.18 s. (E=5, width 100 is still faster on the CPU, 0.097 s
# against 0.142 s at batch 1, but the rule leaves it to the GPU.)
GPU_ROW_S = 2.7e-6
GPU_STEP_S = 8e-5
CPU_FLOPS = 7e9


def cpu_is_faster(n_members, n_params, batch_size, n_rows):
    """Tell whether an epoch of this fit is expected to run faster on the CPU than on CUDA.

    Parameters
    ----------
    n_members : int
    n_params : int
        Parameters of one member.
    batch_size : int
    n_rows : int
        Rows one member visits per epoch.

    Returns
    -------
    bool
        The rule and its measured figures are in the comment above :data:`GPU_ROW_S`.
    """
    n_rows = max(1, int(n_rows))
    cpu_s = 6.0 * n_members * n_rows * n_params / CPU_FLOPS
    gpu_s = min(n_rows * GPU_ROW_S, -(-n_rows // max(1, int(batch_size))) * GPU_STEP_S)
    return cpu_s < gpu_s


def fit_device(device, n_members, sizes, batch_size, n_rows):
    """The ``device`` parameter for one fit: ``"auto"`` resolved by the fit's size.

    ``"auto"`` becomes ``"cpu"`` where :func:`cpu_is_faster` (small ``E * P``, small
    batches), and stays ``"auto"`` (CUDA where there is one) otherwise; any other value
    is returned as is, so ``device="cuda"`` always trains on the GPU. ``sizes``: a
    member's layer widths ``(inputs, hidden..., outputs)``.
    """
    if device != "auto" or not torch.cuda.is_available():
        return device
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    return "cpu" if cpu_is_faster(n_members, n_params, batch_size, n_rows) else device


def predict_device(device):
    """The device to predict on for the ``device`` parameter: it, or the CPU without CUDA.

    A model fitted on CUDA keeps its weights on the CPU, so it predicts anywhere; asked
    for CUDA where there is none, it warns and predicts on the CPU.
    """
    if isinstance(device, str) and device.startswith("cuda") and not torch.cuda.is_available():
        from . import _warn

        _warn.warn(f"device={device!r} but CUDA is not available here; predicting "
                   "on the CPU. Set device='cpu' (or 'auto') to silence this.")
        return torch.device("cpu")
    return resolve_device(device)


def device_scope(device):
    """A block with ``device`` made the current CUDA device (nothing on the CPU).

    CUDA graph capture records the current device's stream only, and Triton launches on
    the current device: for ``cuda:1`` while ``cuda:0`` is current, a capture records an
    empty graph (torch only warns) and a Triton launch fails. Every capture, replay and
    launch runs inside this.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return contextlib.nullcontext()
    return torch.cuda.device(device)


def is_oom(exc):
    """Whether ``exc`` is a device out-of-memory error, however it surfaced.

    Allocations raise ``torch.cuda.OutOfMemoryError``; during a CUDA graph capture, cuBLAS
    and the capture itself report it as a ``RuntimeError`` naming ``out of memory``.
    """
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


@contextlib.contextmanager
def oom_as_oom():
    """Re-raise any device out-of-memory error (:func:`is_oom`) as ``OutOfMemoryError``.

    So that the single translation into a ``MemoryError`` with advice (the training loop,
    prediction) sees every form of it.
    """
    try:
        yield
    except torch.cuda.OutOfMemoryError:
        raise
    except RuntimeError as exc:
        if not is_oom(exc):
            raise
        raise torch.cuda.OutOfMemoryError(str(exc)) from exc


def _has(module):
    return importlib.util.find_spec(module) is not None


def numba_usable():
    """Whether numba is installed and its kernels can run in this process."""
    return _has("numba") and _numba_usable()


def _numba_usable():
    """False in a child forked after numba's OpenMP threads started (see numba_cpu)."""
    kernel = sys.modules.get(_NUMBA_KERNEL)  # not imported: nothing started, nothing to fear
    return kernel is None or kernel.usable()


def available_engines(device):
    """Engines that can run on ``device`` in this environment."""
    names = ["reference", "batched"]
    if device.type == "cpu" and _has("numba") and _numba_usable():
        names.append("numba")
    if device.type == "cuda":
        names.append("graphed")
        if _has("triton"):
            names.append("triton")
    return names


def _why_unavailable(name, device):
    """What to change so that engine ``name`` can run on ``device`` (a sentence)."""
    if name not in ENGINES:
        return f"engine={name!r} is unknown; use 'auto' or one of {list(ENGINES)}."
    if name == "numba" and device.type != "cpu":
        return "engine='numba' runs on the CPU; use device='cpu' or engine='auto'."
    if name in ("graphed", "triton") and device.type != "cuda":
        return (
            f"engine={name!r} needs a CUDA device; use device='cuda' or engine='auto' "
            "(on the CPU: 'numba' or 'batched')."
        )
    if name in ("numba", "triton") and not _has(name):
        return f"engine={name!r} needs {name}: pip install {name}, or use engine='auto'."
    if name == "numba" and not _numba_usable():
        return (
            "engine='numba' cannot run in a process forked after numba's OpenMP threads "
            "started (GNU OpenMP does not survive fork); use engine='auto' or 'batched', "
            "or start worker processes with 'spawn' or 'forkserver'."
        )
    return f"engine={name!r} cannot run on {device}; use engine='auto'."  # pragma: no cover


def select_engine(requested, request, device):
    """Name of the engine to run, given the ``engine`` parameter.

    Parameters
    ----------
    requested : str
        ``"auto"`` or an engine's name.
    request : skensemble._engines.Request
        What the group's training needs (solver, activation, loss, layout, per-member
        values, feature subsets).
    device : torch.device

    ``"auto"``: among the engines whose declarations support the request, on the CPU the
    member-major numba kernel for batches up to :data:`MEMBER_MAJOR_MAX_BATCH` (up to
    :data:`MEMBER_MAJOR_MAPPED_MAX_BATCH` where first layers read a map of the rows),
    batched torch otherwise; on CUDA the member-major Triton kernel where it is the faster (small
    batches and members, measured: :func:`._kernels.triton_gpu.auto_prefers`), otherwise
    the batched path replayed from CUDA graphs. A named engine that cannot run the
    request raises a ``ValueError`` naming what it lacks and the engines that would run it.
    """
    avail = available_engines(device)
    if requested != "auto":
        if requested not in avail:
            raise ValueError(_why_unavailable(requested, device))
        why = _refusal(requested, request, device)
        if why is not None:
            others = [n for n in avail if n != requested and _refusal(n, request, device) is None]
            hint = " or ".join(repr(n) for n in others)
            raise ValueError(
                f"engine={requested!r} does not support {why}; use engine='auto'"
                + (f" (or {hint})." if hint else "."))
        return requested
    if device.type == "cpu":
        limit = (MEMBER_MAJOR_MAPPED_MAX_BATCH if request.mapped_inputs
                 else MEMBER_MAJOR_MAX_BATCH)
        if ("numba" in avail and request.hyper.batch_size <= limit
                and _refusal("numba", request, device) is None):
            return "numba"
        return "batched"
    if "triton" in avail and _refusal("triton", request, device) is None:
        from ._kernels import triton_gpu

        if triton_gpu.auto_prefers(request.hyper, request.sizes):
            return "triton"
    return "graphed"


def _refusal(name, request, device):
    """Why engine ``name`` cannot run ``request`` on ``device`` (a phrase), or None."""
    why = _engines.ENGINES[name].refusal(request)
    if why is None and name == "triton":
        from ._kernels import triton_gpu

        if triton_gpu.build_mode(device) is None:
            why = f"{device} with this triton (compiled kernels need triton >= 3.3 on CUDA)"
    return why


def epoch_function(name):
    """The epoch function of engine ``name`` (imported lazily)."""
    return _engines.epoch_function(name)


# Below this many multiply-adds per step a torch step runs on one thread. Torch's
# intra-op threads synchronise at every operation, so on a busy machine (a search with
# n_jobs, another process) one descheduled thread stalls every step: measured here, a
# 4M multiply-add step ran 25-60x slower on 2 threads than on 1 with other work on the
# cores, and gained little when idle. Only big steps are worth that risk.
MIN_WORK_PER_THREAD = 50_000_000

# torch's thread counts are read and written under this lock. ``_torch_blocks`` counts
# the thread_limit blocks that hold a changed count; while there are any, the
# process-wide value (what a thread adopts at its first op), last written by us as
# ``_torch_written``, may be one of their limits, and ``_torch_default`` holds the value
# it had before the first of them (taken as the count of the thread that opened it).
_TORCH_LOCK = threading.Lock()
_torch_blocks = 0
_torch_default = None
_torch_written = None
_seen = threading.local()  # .torch: we have read this thread's count before


def _set_torch_threads(n):
    """``torch.set_num_threads(n)``, remembering that ``n`` is now the process-wide value."""
    global _torch_written
    torch.set_num_threads(n)
    _torch_written = n


def _own_torch_threads():
    """Torch thread count of the calling thread, corrected if it adopted a block's limit.

    Call under ``_TORCH_LOCK``. A thread that first touches torch while a block holds a
    changed count adopts that block's limit (see the module docstring): the first time we
    see a thread whose count is the limit we last wrote while blocks are active, it gets
    the count that was the process-wide one before them.
    """
    current = torch.get_num_threads()  # a fresh thread adopts the process-wide value here
    if not getattr(_seen, "torch", False):
        _seen.torch = True
        if _torch_blocks and current == _torch_written != _torch_default:
            _set_torch_threads(_torch_default)
            current = _torch_default
    return current


def default_threads(work=None):
    """Cores this fit may use: the affinity mask, capped by limits joblib or the user set.

    Inside a joblib worker, joblib sets ``OMP_NUM_THREADS`` (cores / n_jobs); torch's own
    thread count in the calling thread reflects that or a user's ``torch.set_num_threads``.
    ``work`` (multiply-adds per step or per call) caps the count so that tiny steps run on
    one thread.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    limit = os.environ.get("OMP_NUM_THREADS")
    if limit and limit.isdigit() and int(limit) > 0:
        cores = min(cores, int(limit))
    with _TORCH_LOCK:
        cores = min(cores, _own_torch_threads())
    if work is not None:
        cores = min(cores, 1 + int(work) // MIN_WORK_PER_THREAD)
    return max(1, cores)


@contextlib.contextmanager
def thread_limit(n_threads, engine):
    """Run the block with ``n_threads`` threads for ``engine``, in the calling thread only.

    ``n_threads`` is the engine's thread count: numba's for ``"numba"`` (capped by this
    thread's own numba setting), torch's otherwise. Beside the numba kernel torch gets one
    thread (see the module docstring). Other threads' settings are
    left alone; this thread's are restored on exit, and the count a new thread adopts
    when the last concurrent block leaves.
    """
    n = max(1, int(n_threads))
    numba_saved = _enter_numba(n) if engine == "numba" else None
    try:
        torch_n = 1 if engine == "numba" else n
        torch_saved = _enter_torch(torch_n)
        try:
            yield
        finally:
            _exit_torch(torch_saved, torch_n)
    finally:
        if numba_saved is not None:
            _exit_numba(numba_saved)


def _enter_torch(n):
    """Set this thread's torch thread count to ``n``; return the count to restore."""
    global _torch_blocks, _torch_default
    with _TORCH_LOCK:
        saved = _own_torch_threads()  # first: a later set is then this thread's for good
        if saved != n:
            if not _torch_blocks:
                _torch_default = saved  # no block holds a count: this is the process's
            _torch_blocks += 1
            _set_torch_threads(n)  # this thread's count (and the process-wide value)
    return saved


def _exit_torch(saved, n):
    global _torch_blocks
    with _TORCH_LOCK:
        if saved == n:
            return
        _set_torch_threads(saved)  # this thread's count (and the process-wide value)
        _torch_blocks -= 1
        if not _torch_blocks and saved != _torch_default:
            _set_process_default(_torch_default)  # rare: threads had different counts


def _set_process_default(n):
    """Make ``n`` the torch thread count that threads adopt, leaving this thread's alone."""
    helper = threading.Thread(target=_set_torch_threads, args=(n,), daemon=True)
    try:
        helper.start()
    except RuntimeError:  # pragma: no cover - interpreter shutting down: no new threads
        return
    helper.join()


def _enter_numba(n):
    """Set this thread's numba thread count to ``n`` (at most its current count)."""
    if _NUMBA_KERNEL not in sys.modules:
        # Importing the kernel starts numba's threading layer, which resets this thread's
        # torch count and puts it back (see numba_cpu): do it with the count corrected.
        with _TORCH_LOCK:
            _own_torch_threads()
            from ._kernels import numba_cpu  # noqa: F401
    import numba

    saved = numba.get_num_threads()
    numba.set_num_threads(min(n, saved))
    return saved


def _exit_numba(saved):
    import numba

    numba.set_num_threads(saved)
