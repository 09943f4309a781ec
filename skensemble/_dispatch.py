"""Choosing the device, the engine and the thread budget for a fit.

Every engine implements the same epoch contract (see :mod:`skensemble._engine`); this
module maps a request (``engine="auto"`` or a name) to one of them, importing compiled
kernels lazily so that a missing optional dependency never breaks ``import skensemble``.
"""

import contextlib
import importlib.util
import os
import re
import sys
import threading

import torch

from . import _engine

ENGINES = ("reference", "batched", "graphed", "numba", "triton")

# Up to this batch size the member-major compiled kernel beats batched torch on the CPU.
# Measured on the 2-core development machine (10,000 x 30 rows, two tanh layers, sgd,
# engine forced, best of 2): numba/batched seconds per epoch were 1.1-11x in numba's
# favour at every batch in {8, 16, 32, 64} for E in {5, 50} and widths {10, 100}
# (e.g. E=50, (100, 100): B=32 0.66 s vs 1.08 s; B=64 0.68 s vs 0.82 s), the gap
# closing as the batch grows.
MEMBER_MAJOR_MAX_BATCH = 64

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


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


def _has(module):
    return importlib.util.find_spec(module) is not None


def available_engines(device):
    """Engines that can run on ``device`` in this environment."""
    names = ["reference", "batched"]
    if device.type == "cpu" and _has("numba"):
        names.append("numba")
    if device.type == "cuda":
        names.append("graphed")
        if _has("triton"):
            names.append("triton")
    return names


def select_engine(requested, hyper, layout, device, feature_subsets=False):
    """Name of the engine to run, given the ``engine`` parameter.

    ``"auto"``: on the CPU the member-major numba kernel for batches up to
    :data:`MEMBER_MAJOR_MAX_BATCH`, batched torch above; on CUDA the member-major
    Triton kernel where it supports the configuration, otherwise the batched path
    replayed from CUDA graphs.
    """
    avail = available_engines(device)
    if requested != "auto":
        if requested not in avail:
            raise ValueError(
                f"engine={requested!r} cannot run on device {device} here; available: "
                f"{avail}. Install the optional dependency or use engine='auto'."
            )
        if requested == "triton":
            from ._kernels import triton_gpu

            if feature_subsets or not triton_gpu.supports(hyper, layout, device):
                raise ValueError(
                    "engine='triton' does not support this configuration "
                    f"(hidden layers {layout.sizes[1:-1]}, batch_size={hyper.batch_size}); "
                    "use engine='auto'."
                )
        return requested
    if device.type == "cpu":
        if "numba" in avail and hyper.batch_size <= MEMBER_MAJOR_MAX_BATCH and (
            not feature_subsets or _kernel_takes_features("numba")
        ):
            return "numba"
        return "batched"
    if "triton" in avail and not feature_subsets:
        from ._kernels import triton_gpu

        if triton_gpu.supports(hyper, layout, device):
            return "triton"
    return "graphed"


def _kernel_takes_features(name):
    """Whether a compiled kernel accepts per-member feature subsets."""
    import inspect

    return "features" in inspect.signature(epoch_function(name)).parameters


def epoch_function(name):
    """The epoch function of engine ``name`` (imported lazily)."""
    if name == "reference":
        return _engine.epoch_reference
    if name == "batched":
        return _engine.epoch_batched
    if name == "graphed":
        return _engine.epoch_graphed
    if name == "numba":
        from ._kernels.numba_cpu import epoch_numba

        return epoch_numba
    if name == "triton":
        from ._kernels.triton_gpu import epoch_triton

        return epoch_triton
    raise ValueError(f"unknown engine {name!r}; choose from {ENGINES}")


# Below this many multiply-adds per step a torch step runs on one thread. Torch's
# intra-op threads synchronise at every operation, so on a busy machine (a search with
# n_jobs, another process) one descheduled thread stalls every step: measured here, a
# 4M multiply-add step ran 25-60x slower on 2 threads than on 1 with other work on the
# cores, and gained little when idle. Only big steps are worth that risk.
MIN_WORK_PER_THREAD = 50_000_000


def default_threads(work=None):
    """Cores this fit may use: the affinity mask, capped by limits joblib or the user set.

    Inside a joblib worker, joblib sets ``OMP_NUM_THREADS`` (cores / n_jobs); torch's own
    thread count reflects that or a user's ``torch.set_num_threads``. ``work`` (multiply-
    adds per step or per call) caps the count so that tiny steps run on one thread.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    limit = os.environ.get("OMP_NUM_THREADS")
    if limit and limit.isdigit() and int(limit) > 0:
        cores = min(cores, int(limit))
    cores = min(cores, torch.get_num_threads())
    if work is not None:
        cores = min(cores, 1 + int(work) // MIN_WORK_PER_THREAD)
    return max(1, cores)


_LIMIT_LOCK = threading.Lock()
_LIMIT_DEPTH = 0
_LIMIT_SAVED = None


@contextlib.contextmanager
def thread_limit(n_threads, engine):
    """Run the block with ``n_threads`` torch (and numba) threads; restore afterwards.

    Thread counts are process-wide, so concurrent blocks (predictions from several
    threads) share one setting: the first to enter sets it, the last to leave restores
    what was there before.
    """
    global _LIMIT_DEPTH, _LIMIT_SAVED
    with _LIMIT_LOCK:
        if _LIMIT_DEPTH == 0:
            _LIMIT_SAVED = (torch.get_num_threads(), _numba_threads())
            torch.set_num_threads(n_threads)
            if engine == "numba":
                _set_numba_threads(n_threads)
        _LIMIT_DEPTH += 1
    try:
        yield
    finally:
        with _LIMIT_LOCK:
            _LIMIT_DEPTH -= 1
            if _LIMIT_DEPTH == 0:
                torch.set_num_threads(_LIMIT_SAVED[0])
                if _LIMIT_SAVED[1] is not None:
                    _set_numba_threads(_LIMIT_SAVED[1])


def _numba_threads():
    """Numba's current thread count, or None when numba was never imported."""
    numba = sys.modules.get("numba")
    return None if numba is None else numba.get_num_threads()


def _set_numba_threads(n):
    import numba

    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
