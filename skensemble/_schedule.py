"""How the batched epoch runs on a device: replayed from CUDA graphs, or streamed.

Two schedules of :func:`skensemble._engine.epoch_batched`'s steps, each with the same
contract as every engine (one epoch for all members in, updated parameters and
per-member losses out) and the same result:

* :func:`epoch_graphed` captures ``chunk`` batched steps once in a CUDA graph on static
  buffers and replays it, so an epoch of small batches costs one launch per chunk
  instead of one per kernel; the steps left over after the last whole chunk are
  captured too, as a second graph. Capture and replay run with the parameters' device
  made current (``torch.cuda.device``): a capture for ``cuda:1`` while ``cuda:0`` is
  current records an empty graph (torch only warns) and replays would train nothing.
  On the CPU (``capture=False``) the identical static-buffer schedule runs eagerly;
  that is how the tests check it without a GPU (and ``tests/fake_cuda.py`` simulates
  capture and replay).
* :func:`epoch_streamed` leaves the training data in host memory and copies, chunk by
  chunk, the rows the members visit next into one reused device buffer.

The mathematics lives in :mod:`skensemble._engine`; this module only decides where the
tensors live and when the kernels launch. The graph runner and the staging buffers are
kept per thread and dropped by :func:`release_graphs` when a group's training ends.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import fields

import torch

from . import _dispatch, _warn
from ._engine import Data, Params, _batched_step, _batches
from ._inputs import FirstLayer

# A runner captured for C members serves n <= C active members while C <= n * SLACK:
# members stop one by one, and a new capture for each count would cost more than the
# padding. The first capture is for exactly the members that train (E=513 computes 513,
# not the next power of two, 1024); later ones happen when the active count falls
# below C / SLACK, so a fit captures at most about log(E) / log(SLACK) + 1 times
# (E=1,000: 31) and computes at most 25% more members than it trains.
SLACK = 1.25


def _serves(C, n):
    """Whether a runner captured for ``C`` members serves ``n`` active ones."""
    return n <= C <= n * SLACK


class _ChunkRunner:
    """Static copies of up to ``C`` members plus ``chunk`` batched steps, captured once.

    A CUDA graph replays fixed kernels on fixed addresses, so the runner owns the tensors
    its steps read and write: parameters ``(C, P)``, optimizer state ``(S, C, P)``, step
    counts ``(C,)``, each member's values (rates, drawn values) ``(C,)``, first-layer maps
    and a window of the sample order ``(C, chunk * B)``. An epoch copies the members it
    trains into the first rows, replays the graph once per whole chunk of steps (a
    device-to-device copy of the next slice of the order, no launch per kernel, no host
    synchronisation), replays a second graph of the leftover steps (captured once per
    leftover length: an epoch of M rows has one, a streamed epoch two) and copies the
    members back. Rows past the members trained run on stale rows of the order and are
    never read back: members are independent in every operation, so they cannot affect
    the others.

    The data ``X``, ``Y`` and ``sw`` are read in place; the runner is reused while they
    stay at the same addresses (the whole fit, also when streaming: see
    :func:`epoch_streamed`).
    """

    def __init__(self, C, data, hyper, layout, chunk, capture, device, member):
        B, P = hyper.batch_size, layout.n_params
        self.C, self.chunk = C, chunk
        self.params = Params(
            flat=torch.zeros(C, P, dtype=torch.float32, device=device),
            state=torch.zeros(hyper.n_state, C, P, dtype=torch.float32, device=device),
            steps=torch.zeros(C, dtype=torch.int64, device=device), layout=layout)
        # each member's values, static: a field the fit gives per member gets a buffer
        self.member = member._map(lambda t: torch.zeros(C, dtype=torch.float32, device=device))
        self.total = torch.zeros(C, dtype=torch.float32, device=device)
        self.grad = torch.empty(C, P, dtype=torch.float32, device=device)
        self.order = torch.zeros(C, chunk * B, dtype=torch.int64, device=device)
        first = None if data.first is None else _static_first(data.first, C)
        self.data = Data(data.X, data.Y, data.sw, first)  # X, Y, sw read in place
        self.hyper = hyper
        self.device, self.capture = device, capture
        self.graph = None
        self.tails = {}  # leftover rows -> graph of their steps
        if capture:
            self.graph = self._capture(self.chunk * B)

    def step(self, idx):
        """One eager batched step of all ``C`` rows on the rows ``idx (C, b)``."""
        _batched_step(self.params, self.grad, self.data, idx, self.member, self.hyper,
                      self.total)

    def _steps(self, rows):
        """The steps over the first ``rows`` columns of the static order (batches of B)."""
        for start, stop in _batches(rows, self.hyper.batch_size):
            self.step(self.order[:, start:stop])

    def _capture(self, rows):
        """A CUDA graph of the steps over the first ``rows`` columns of the static order."""
        device = self.device
        # Fits in other threads (a threaded Dask worker, a user's thread pool) keep using
        # CUDA while this one captures. "thread_local" lets their calls through (the
        # default mode fails them), and the lock keeps whole captures apart, warm-up
        # included. Measured on an H200 with three threads, each unguarded step failed:
        # entering a capture synchronises the device, which is not allowed while another
        # stream captures (cudaErrorStreamCaptureUnsupported); and torch hands out side
        # streams round-robin from a pool of 32, so another thread's warm-up stream can
        # be the very stream being captured (cudaErrorStreamCaptureIsolation). Either
        # invalidates the capture in progress too.
        with _CAPTURE_LOCK:
            # Warm up (cuBLAS handles, allocator pools) on a side stream, as torch's
            # docs ask; the buffers are still zeros, so nothing of the fit is touched.
            # One side stream per device for the process: cuBLAS keeps a workspace per
            # stream it ever ran on, and a new pool stream per capture grew live device
            # memory by ~0.5 GiB over one gpu_check run (H200).
            side = _WARMUP_STREAMS.get(device)
            if side is None:
                side = _WARMUP_STREAMS[device] = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    self.step(self.order[:, : min(rows, self.hyper.batch_size)])
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                self._steps(rows)
        return graph

    def epoch(self, params, order, member, first):
        """Train ``params``' members for one epoch on ``order (n, M)``; their losses summed."""
        n, M = order.shape
        B = self.hyper.batch_size
        per_chunk = self.chunk * B
        tail = M % per_chunk
        if self.capture and tail and tail not in self.tails:
            # before the members are copied in: warming up runs steps on the buffers
            self.tails[tail] = self._capture(tail)
        mine = self.params
        mine.flat[:n] = params.flat
        mine.state[:, :n] = params.state
        mine.steps[:n] = params.steps
        for f in fields(member):
            value = getattr(member, f.name)
            if value is not None:
                getattr(self.member, f.name)[:n] = value
        if first is not None:
            for name in FirstLayer._FIELDS:
                getattr(self.data.first, name)[:n] = getattr(first, name)
        self.total.zero_()
        n_chunks = M // per_chunk
        for c in range(n_chunks):
            self.order[:n] = order[:, c * per_chunk : (c + 1) * per_chunk]
            self._run(per_chunk)
        done = n_chunks * per_chunk
        if done < M:  # leftover steps, fewer than a chunk: their own graph
            self.order[:n, : M - done] = order[:, done:]
            self._run(M - done)
        params.flat.copy_(mine.flat[:n])
        params.state.copy_(mine.state[:, :n])
        params.steps.copy_(mine.steps[:n])
        return self.total[:n]

    def _run(self, rows):
        """The steps over the first ``rows`` columns of the static order: replayed, or eager."""
        if not self.capture:
            self._steps(rows)
            return
        graph = self.graph if rows == self.chunk * self.hyper.batch_size else self.tails[rows]
        graph.replay()


def _static_first(first, C):
    """Zeroed buffers for ``C`` members' first layers, shaped as ``first``'s."""
    return first._map(lambda name, t: torch.zeros((C, *t.shape[1:]), dtype=t.dtype,
                                                  device=t.device))


# One capture at a time in the process (see _ChunkRunner._capture), and the side stream
# each device's captures warm up on (used under the lock only).
_CAPTURE_LOCK = threading.Lock()
_WARMUP_STREAMS = {}

# Per thread: the runner of the fit running in this thread (a fit runs in one thread), so
# that fits in other threads neither reuse nor drop it.
_RUNNERS = threading.local()

# Whether epoch_graphed captures CUDA graphs on CUDA; tests that simulate a device on the
# CPU turn it off to run the identical static-buffer schedule eagerly.
CAPTURE_GRAPHS = True


def release_graphs():
    """Drop this thread's graph runner and streaming buffers (device memory, graph pool).

    Called when a group's training ends, so that a finished fit holds no device memory.
    """
    _RUNNERS.__dict__.clear()


def cached_runner_count():
    """Graph runners this thread holds (0 or 1); tests check that a fit releases them."""
    return int(getattr(_RUNNERS, "runner", None) is not None)


def epoch_graphed(params, data, order, member, hyper, chunk=64, capture=None):
    """Batched epoch replayed from a CUDA graph of ``chunk`` steps at a time.

    Same contract as :func:`skensemble._engine.epoch_reference`.
    ``capture=None`` captures on CUDA; with ``capture=False`` the identical static-buffer
    schedule runs eagerly (how the CPU tests check it). The steps that do not fill a
    whole chunk replay a graph of their own.

    One runner (graphs and static buffers) is kept per thread and reused while the data
    and the mathematics stay the same and the active members number between ``C /
    SLACK`` and the ``C`` it was captured for (:data:`SLACK`). Capture and replay run
    with ``params``' device current; device out-of-memory during capture raises
    ``torch.cuda.OutOfMemoryError`` (some surface as other errors while capturing).
    """
    flat, layout = params.flat, params.layout
    E, M = order.shape
    B = hyper.batch_size
    X, Y, sw, first = data.X, data.Y, data.sw, data.first
    capture = (flat.is_cuda and CAPTURE_GRAPHS) if capture is None else capture
    key = (X.data_ptr(), Y.data_ptr(), None if sw is None else sw.data_ptr(),
           None if first is None else (first.width, first.slot_src.shape[1]), member.present(),
           hyper, layout, capture, flat.device)
    with _dispatch.device_scope(flat.device), _dispatch.oom_as_oom():
        runner = getattr(_RUNNERS, "runner", None)
        # Streaming hands in views of one staging buffer, the first chunk of an epoch the
        # longest: a runner made on a longer view serves the shorter ones.
        if (runner is None or _RUNNERS.key != key or not _serves(runner.C, E)
                or runner.data.X.shape[0] < X.shape[0]):
            _RUNNERS.runner = None  # free the old graph's memory before capturing a new one
            runner = _ChunkRunner(E, data, hyper, layout, max(1, min(chunk, M // B)),
                                  capture, flat.device, member)
            _RUNNERS.runner, _RUNNERS.key = runner, key
        return runner.epoch(params, order, member, first) / M


# ---------------------------------------------------------------------- streaming
def epoch_streamed(epoch_fn, params, data, order, member, hyper, chunk_steps=64):
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
    params : Params
        On the compute device.
    data : Data
        ``X``, ``Y``, ``sw`` on the CPU; ``first`` on the compute device.
    order : Tensor (E, M) int64 on the CPU
    chunk_steps : int
        Batches per chunk; a chunk holds ``E * chunk_steps * B`` rows on the device.

    Returns
    -------
    Tensor (E,) on the device: per-member mean training loss.
    """
    E, M = order.shape
    rows_per_chunk = max(1, chunk_steps) * hyper.batch_size
    device = params.flat.device
    pin = device.type == "cuda"
    total = torch.zeros(E, dtype=params.flat.dtype, device=device)
    staged = [_staging(i, t, E * min(M, rows_per_chunk), device)
              for i, t in enumerate((data.X, data.Y, data.sw))]
    for start in range(0, M, rows_per_chunk):
        idx = order[:, start : start + rows_per_chunk]  # (E, c) rows of this chunk
        c = idx.shape[1]
        flat_idx = idx.reshape(-1)  # (E * c,)

        def move(t, buf):
            # Into the same device buffer every chunk: a graph runner keeps reading it.
            # Same stream: the copy waits for the last chunk's kernels to finish with it.
            part = t[flat_idx]
            buf[: E * c].copy_(part.pin_memory() if pin else part, non_blocking=True)
            return buf[: E * c]

        local = torch.arange(E * c, device=device).view(E, c)  # member e's rows, in order
        chunk = Data(move(data.X, staged[0]), move(data.Y, staged[1]),
                     None if data.sw is None else move(data.sw, staged[2]), data.first)
        loss = epoch_fn(params, chunk, local, member, hyper)
        total += loss * c
    return total / M


def _staging(slot, t, rows, device):
    """Return this thread's device buffer for streamed chunks of ``t``: grown, never shrunk.

    Kept until :func:`release_graphs`, so that every chunk of every epoch lands at the
    same address and a CUDA-graph runner captured on it stays valid.
    """
    if t is None:
        return None
    shape = (rows, *t.shape[1:])
    buf = getattr(_RUNNERS, f"staging{slot}", None)
    if (buf is None or buf.shape[0] < rows or buf.shape[1:] != shape[1:]
            or buf.dtype != t.dtype or buf.device != device):
        buf = torch.empty(shape, dtype=t.dtype, device=device)
        setattr(_RUNNERS, f"staging{slot}", buf)
    return buf


# ------------------------------------------------- device memory and fallback
# Batches per streamed chunk, forced; None decides from the device's free memory. Tests
# set it to exercise streaming on the CPU.
STREAM_CHUNK_STEPS = None


def stream_chunk_steps(X, Y, device, hyper, n_members, n_visits=0):
    """Batches per chunk when the training data must stream from host memory, else None.

    On CUDA the data stays on the device when it and the visiting orders take at most
    half its free memory; otherwise it streams in chunks sized to a quarter of the free
    memory. The orders count three times ``n_members * n_visits`` int64 words: the order,
    the random words it is sorted by and the sort's indices live at once while an epoch's
    order is drawn (E=1,000 members of 1M rows: 24 GB).
    """
    if STREAM_CHUNK_STEPS is not None:
        return int(STREAM_CHUNK_STEPS)
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    data_bytes = X.nbytes + 4 * Y.size * 2 + 3 * 8 * n_members * n_visits
    if data_bytes <= free // 2:
        return None
    # each row of a chunk: its values, targets, weight, and its local order entry
    row_bytes = 4 * (X.shape[1] + Y.shape[1] + 1) + 8
    return max(1, int(free // 4 // (n_members * hyper.batch_size * row_bytes)))


@contextlib.contextmanager
def device_memory(device, E, layout, hyper):
    """Turn device out-of-memory errors into a ``MemoryError`` that says what to change.

    Covers the allocations, graph capture and training; releases the graph runner at
    the end.
    """
    try:
        with _dispatch.oom_as_oom():
            yield
    except torch.cuda.OutOfMemoryError as exc:
        raise MemoryError(
            f"{device} ran out of memory training {E} members of {layout.n_params} "
            f"parameters with batch_size={hyper.batch_size}. Lower n_estimators or "
            "batch_size, free memory held by other processes, or use device='cpu'."
        ) from exc
    finally:
        release_graphs()


class FallBack:
    """An engine's epoch function that hands over to another if its first call fails.

    For a compiled kernel not yet measured on the device at hand (``engine="auto"``
    choosing Triton): if compiling or launching it raises, or the device reports an
    error when the first epoch is waited for (kernel faults are asynchronous: they
    surface at the next synchronisation), the members' parameters, optimizer state and
    step counts are put back from a host copy, a warning says why, and this and later
    epochs run ``fallback``. A fault that leaves the device unusable (the restore fails
    too) raises a ``RuntimeError`` that says so. :attr:`engine` names what ran.
    """

    def __init__(self, fn, fallback):
        self.fn, self.fallback, self.engine = fn, fallback, None

    def __call__(self, params, *args, **kwargs):
        if self.engine is not None:
            return self.fn(params, *args, **kwargs)
        device = params.flat.device
        # on the host: a device fault may leave device memory unreadable
        saved = Params(*(t.to(torch.device("cpu"), copy=True) for t in (
            params.flat, params.state, params.steps)), params.layout)
        try:
            out = self.fn(params, *args, **kwargs)
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # an asynchronous fault surfaces here
        except (torch.cuda.OutOfMemoryError, MemoryError):
            raise  # the data or the ensemble are too big: no other engine helps
        except Exception as exc:  # noqa: BLE001 - any compile, launch or kernel failure
            if _dispatch.is_oom(exc):
                raise
            try:
                params.copy_from(saved)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
            except Exception as fault:  # noqa: BLE001 - the device is unusable
                raise RuntimeError(
                    f"The Triton kernel failed on {device} ({type(exc).__name__}: "
                    f"{str(exc).strip()[:200]}) and left the device unusable in this "
                    "process. Refit in a new process with engine='graphed', or "
                    "device='cpu'.") from fault
            first = str(exc).strip().splitlines()
            why = f"{type(exc).__name__}: {first[0][:200] if first else ''}"
            _warn.warn(
                f"The Triton kernel failed on {params.flat.device} ({why}); training with "
                f"engine={self.fallback!r} instead (see engine_). Pass "
                f"engine={self.fallback!r} to skip the attempt, or engine='triton' to see "
                "the error.", RuntimeWarning)
            self.fn = _dispatch.epoch_function(self.fallback)
            self.engine = f"{self.fallback} (triton failed: {type(exc).__name__})"
            return self.fn(params, *args, **kwargs)
        self.engine = "triton"
        return out
