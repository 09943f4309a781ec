"""Training an ensemble's members in chunks, in parallel (``n_jobs``): joblib or Dask.

Owns
----
- splitting the members to train into contiguous chunks (each chunk holds, per group,
  the group's members in it, at the group's padded layout);
- running each chunk (:func:`._training.train_group` on each of its pieces) in a joblib
  worker (loky by default) or, inside ``joblib.parallel_backend("dask")``, as a task on
  the Dask cluster, with the training data sent once to each worker;
- each chunk's device (chunk ``i`` on ``cuda:i mod device_count`` with ``device="cuda"``)
  and thread budget;
- merging the trained pieces back into the groups exactly as one process holds them;
- what a failed or interrupted parallel run raises.

Why the result is bit-identical to one process: a member's rows, features, hold-out
rows and initial weights come from its own seed (:mod:`._sampling`), its visiting
orders from a stream of its own (:func:`._training.order_generators`), a chunk keeps
its group's padded layout, validates on its group's rows (``Data.val_rows``), and the
member-major numba engine computes every member's update from that member's data alone
(bit-identical, tests/test_parallel.py). The torch engines ("batched", "reference") stack
members in one batched matrix product whose float32 rounding can depend on how many are
stacked: they agree with one process to rounding, not bit for bit (tested too).

It must not validate user input or know about estimators: :mod:`._base` hands it
groups, data and settings and gets trained groups and one history back.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import sys
import time
from dataclasses import dataclass, replace

import joblib
import numpy as np
import torch

from . import _dispatch, _training


# ------------------------------------------------------------------------- state
@dataclass
class Shared:
    """Training data that every chunk reads, sent once to each worker.

    ``X (N, F)`` float32, ``Y (N, O)`` float32, ``loss_weight (N,)``, ``val_weight (N,)``,
    ``label_smoothing`` and ``encoding`` as in :class:`._training.Data`.
    """

    X: np.ndarray
    Y: np.ndarray
    loss_weight: np.ndarray = None
    val_weight: np.ndarray = None
    label_smoothing: float = 0.0
    encoding: object = None


@dataclass
class Members:
    """Per-member data of the members being trained, in the order of ``positions``.

    ``positions (E,)`` sorted; ``rows (E, M)``; ``columns (E, w)`` (of the encoded space)
    or None; ``val_mask (E, N)`` bool or None.
    """

    positions: np.ndarray
    rows: np.ndarray
    columns: np.ndarray = None
    val_mask: np.ndarray = None


@dataclass
class _Piece:
    """The members of one group that one chunk trains, with their own data."""

    group: _training.Group
    rows: np.ndarray  # (E_p, M)
    columns: np.ndarray  # (E_p, w) or None
    val_mask: np.ndarray  # (E_p, N) or None
    val_rows: np.ndarray  # (Nv,): the whole group's validation rows, or None


@dataclass(frozen=True)
class _Job:
    """What every chunk shares besides the data."""

    hyper: object  # skensemble._engine.Hyper
    config: _training.Config
    device: str  # the ``device`` parameter, resolved in the worker (:func:`chunk_device`)
    seed: int
    member_score: object  # callable or None
    threads: int = None  # thread budget of a chunk; None: the worker's own limits


@dataclass
class Report:
    """How a fit's members were trained.

    Attributes
    ----------
    n_chunks : int
    backend : str
        ``"none"`` (in this process), or the joblib backend's name (``"loky"``,
        ``"threading"``, ...), or ``"dask"``.
    seconds : float
        Wall-clock seconds of the training, sending and merging included.
    seconds_sending : float or None
        On Dask: seconds to scatter the training data to the workers.
    """

    n_chunks: int
    backend: str
    seconds: float
    seconds_sending: float = None


@dataclass
class Run:
    """Trained groups, their history, and where and how they trained."""

    groups: list
    history: _training.History
    engine: object  # str, or tuple of str when groups differed
    device: object  # str, or tuple of str when chunks trained on several devices
    report: Report


# ---------------------------------------------------------------- choices
def _dask_backend():
    """The active joblib backend when it is Dask's, else None."""
    if "distributed" not in sys.modules:  # no Dask in this process: no Dask backend
        return None
    backend, _ = joblib.parallel.get_active_backend()
    return backend if type(backend).__name__ == "DaskDistributedBackend" else None


def _in_dask_worker():
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return False
    try:
        distributed.get_worker()
    except ValueError:
        return False
    return True


def n_chunks(n_jobs, n_members):
    """Chunks to split ``n_members`` into for ``n_jobs`` (joblib's meaning of it).

    ``n_jobs=None`` is 1 outside a ``joblib.parallel_backend`` context and the context's
    number inside one (all of a Dask cluster's threads). A fit that already runs as a
    task of a Dask search (inside a worker) keeps its members together unless
    ``n_jobs`` asks otherwise: the search spreads the fits.
    """
    if n_jobs is None and _in_dask_worker():
        return 1
    return max(1, min(int(joblib.effective_n_jobs(n_jobs)), int(n_members)))


def chunk_device(device, index):
    """The ``torch.device`` chunk ``index`` trains on, for the ``device`` parameter.

    ``"cuda"`` (and ``"auto"`` where it means CUDA) spreads the chunks over the visible
    GPUs: chunk ``i`` on ``cuda:(i mod device_count)``; ``"cuda:N"`` and ``"cpu"`` are
    kept. Called where the chunk runs, so a Dask worker uses the GPUs it sees.
    """
    dev = _dispatch.resolve_device(device)
    if dev.type == "cuda" and dev.index is None:
        return torch.device("cuda", index % torch.cuda.device_count())
    return dev


# ----------------------------------------------------------- split and merge
def _split(groups, members, n):
    """``n`` contiguous chunks of ``members.positions``: per chunk, ``[(k, idx, piece)]``.

    ``idx`` are the rows of group ``k`` the piece holds.
    """
    pos = members.positions
    bounds = [c[[0, -1]] for c in np.array_split(pos, n) if c.size]
    locs = [np.searchsorted(pos, g.members) for g in groups]
    val_rows = [None if members.val_mask is None
                else np.flatnonzero(members.val_mask[loc].any(0)) for loc in locs]
    chunks = []
    for lo, hi in bounds:
        pieces = []
        for k, (g, loc) in enumerate(zip(groups, locs)):
            idx = np.flatnonzero((g.members >= lo) & (g.members <= hi))
            if not idx.size:
                continue
            sel = loc[idx]

            def cut(a, sel=sel):
                return None if a is None else np.ascontiguousarray(a[sel])

            pieces.append((k, idx, _Piece(g.take(idx), cut(members.rows),
                                          cut(members.columns), cut(members.val_mask),
                                          val_rows[k])))
        chunks.append(pieces)
    return chunks


# ------------------------------------------------------------------ run
def _train_chunk(shared, pieces, job, index):
    """Train one chunk's pieces in turn; returns ``([(group, history, engine)], device)``.

    ``index`` None: the only chunk, on the device the parameter names (not spread).
    """
    if index is None:
        device = _dispatch.resolve_device(job.device)
    else:
        device = chunk_device(job.device, index)
    budget = (_dispatch.thread_limit(job.threads, "batched") if job.threads
              else contextlib.nullcontext())
    out = []
    with budget:  # train_group's own thread choices stay within the budget
        for p in pieces:
            data = _training.Data(
                X=shared.X, Y=shared.Y, rows=p.rows, loss_weight=shared.loss_weight,
                columns=p.columns, encoding=shared.encoding, val_mask=p.val_mask,
                val_weight=shared.val_weight,
                label_smoothing=shared.label_smoothing, val_rows=p.val_rows)
            out.append(_training.train_group(p.group, data, job.hyper, job.config, device,
                                             seed=job.seed, member_score=job.member_score))
    return out, str(device)


def _worker_died(exc, n):
    return RuntimeError(
        f"A worker died while training the ensemble's members in {n} chunks "
        f"({type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc) else ''}"
        "). fit stopped; the estimator is as it was before this fit. A worker dies when it "
        "runs out of memory or is killed: train fewer members per worker (more chunks on "
        "a cluster, a smaller n_estimators) or a smaller batch, or set n_jobs=1 to see "
        "any error in this process."
    )


def _dead_worker_errors():
    errors = [concurrent.futures.BrokenExecutor]  # loky's TerminatedWorkerError among them
    distributed = sys.modules.get("distributed")
    if distributed is not None:
        errors.append(distributed.KilledWorker)
    return tuple(errors)


def _run_joblib(shared, chunks, job):
    """The chunks through joblib's active backend (loky by default)."""
    backend, _ = joblib.parallel.get_active_backend()
    # mmap_mode="r+": loky workers read the data from one shared memory-mapped copy, and
    # torch.from_numpy accepts it without a read-only warning (nothing writes to it).
    parallel = joblib.Parallel(n_jobs=len(chunks), mmap_mode="r+")
    name = type(backend).__name__.replace("Backend", "").lower()
    try:
        results = parallel(joblib.delayed(_train_chunk)(shared, [p for _, _, p in pieces], job,
                                                        i)
                           for i, pieces in enumerate(chunks))
    except KeyboardInterrupt:
        if name == "loky":
            _stop_loky_workers()
        raise
    return results, name or "joblib", None


def _stop_loky_workers():
    """Kill loky's worker processes: after Ctrl-C no chunk may keep training.

    joblib aborts its backend on an exception in the waiting loop too; this does not
    rely on it (nor on when the interrupt lands). The next parallel fit starts new workers.
    """
    from joblib.externals.loky import reusable_executor

    executor = getattr(reusable_executor, "_executor", None)
    if executor is not None:
        executor.shutdown(wait=False, kill_workers=True)


@contextlib.contextmanager
def _dask_client(backend):
    """The client to submit with: the backend's, or, inside a worker, one that secedes."""
    if _in_dask_worker():
        from distributed import worker_client

        with worker_client() as client:  # this task waits without holding a worker thread
            yield client
    else:
        yield backend.client


def _run_dask(backend, shared, chunks, job):
    """The chunks as tasks of the Dask cluster, the data scattered to the workers once."""
    with _dask_client(backend) as client:
        start = time.perf_counter()
        # The shared data to every worker (broadcast) when there are chunks enough for all
        # of them, before any task needs it; each chunk's own members' data (rows, masks,
        # weights) to one worker, where the scheduler then runs the chunk. Tasks carry
        # only references, so nothing large goes through the scheduler.
        n_workers = len(client.scheduler_info(n_workers=-1)["workers"])
        [data] = client.scatter([shared], broadcast=len(chunks) >= n_workers, hash=False)
        own = client.scatter([[p for _, _, p in pieces] for pieces in chunks], hash=False)
        sending = time.perf_counter() - start
        futures = [client.submit(_train_chunk, data, part, job, i, pure=False,
                                 key=f"skensemble-chunk-{i}-of-{len(chunks)}-{data.key}")
                   for i, part in enumerate(own)]
        try:
            results = client.gather(futures)
        except BaseException:
            client.cancel(futures, force=True)  # KeyboardInterrupt too: nothing keeps running
            raise
        finally:
            client.cancel([data, *own])
    return results, "dask", sending


def train(groups, shared, members, hyper, config, device, seed, member_score, n):
    """Train ``groups`` in ``n`` chunks of members; returns a :class:`Run`.

    Parameters
    ----------
    groups : list of _training.Group
        The groups of the members being trained (their positions are ``members.positions``).
    shared : Shared
    members : Members
    hyper : skensemble._engine.Hyper
    config : _training.Config
    device : str
        The ``device`` parameter (each chunk resolves it where it runs).
    seed : int
        Seed of the visiting orders (with each member's position).
    member_score : callable or None
        As in :func:`._training.train_group`; with ``n > 1`` it is pickled.
    n : int
        Number of chunks (:func:`n_chunks`); 1 trains every group here, in turn.
    """
    start = time.perf_counter()
    dask = _dask_backend() if n > 1 else None
    if dask is None:  # a wrong device raises here, before any training; on Dask the
        _dispatch.resolve_device(device)  # workers resolve it (the client may have no GPU)
    chunks = _split(groups, members, n)
    job = _Job(hyper=hyper, config=config, device=device, seed=int(seed),
               member_score=member_score)
    if len(chunks) == 1:  # in this process
        backend, sending = "none", None
        results = [_train_chunk(shared, [p for _, _, p in chunks[0]], job, None)]
    else:
        try:
            if dask is not None:  # each worker's own limits (distributed: one thread each)
                results, backend, sending = _run_dask(dask, shared, chunks, job)
            else:  # the cores of this machine, shared out between the chunks
                job = replace(job, threads=max(1, _dispatch.default_threads() // len(chunks)))
                results, backend, sending = _run_joblib(shared, chunks, job)
        except _dead_worker_errors() as exc:
            raise _worker_died(exc, len(chunks)) from exc
    pos = members.positions
    parts, per_group, engines = [], [[] for _ in groups], [set() for _ in groups]
    for pieces, (out, _) in zip(chunks, results):
        for (k, idx, _), (group, history, engine) in zip(pieces, out):
            per_group[k].append((idx, group))
            engines[k].add(engine)
            parts.append((np.searchsorted(pos, group.members), history))
    trained = [g.joined(p) for g, p in zip(groups, per_group)]
    history = _training.History.combine(parts, len(pos))
    engine = [e.pop() if len(e) == 1 else tuple(sorted(e)) for e in engines]
    devices = list(dict.fromkeys(d for _, d in results))
    report = Report(n_chunks=len(chunks), backend=backend,
                    seconds=time.perf_counter() - start, seconds_sending=sending)
    if len(chunks) > 1:
        history.seconds = report.seconds  # wall-clock, not the chunks' sum
    return Run(groups=trained, history=history,
               engine=engine[0] if len(set(engine)) == 1 else tuple(engine),
               device=devices[0] if len(devices) == 1 else tuple(devices), report=report)
