"""The epoch loop of groups of members: pure torch and numpy, no scikit-learn.

Owns
----
- training groups of members that share one layout (:class:`._groups.Group`, built and
  merged in :mod:`._groups`);
- per-member stopping (patience on each member's training or validation loss), keeping
  each member's best weights, and the learning-rate schedules;
- validation on each member's own rows;
- whether the training data stays on the device or streams from host memory;
- the thread scope of a fit and the translation of device out-of-memory errors;
- per-epoch visiting orders.

It takes standardised float32 arrays and small dataclasses and returns them. It must
not validate user input, scale data, draw member seeds or know about estimators and
labels: the facade (:mod:`._base`) does that and calls :func:`train_group` once per
group. Everything here runs (and is tested) without scikit-learn.

Shape legend (as in :mod:`._engine`): E members of a group, N rows, M rows one member
visits per epoch, F features, k features one member reads, O outputs, P parameters of
one member, S optimizer state slots, T epochs.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from . import _dispatch, _engine, _schedule, _warn
from ._groups import Group, make_groups, merge_groups, random_rows  # noqa: F401 (re-exported)
from ._progress import progress

_CPU = torch.device("cpu")


@dataclass(frozen=True)
class Config:
    """How the epoch loop runs: schedule, stopping, order, engine request, progress.

    ``stop=False`` runs exactly ``max_iter`` epochs with no stopping (``partial_fit``);
    ``t_start`` is the number of rows seen before (``"invscaling"`` continues from it).
    ``prune``: successive halving at epochs ``n_iter_no_change * 2**k``: the members still
    training whose best validation loss is worse than that of the better half stop, but
    never so many that fewer than ``ceil(prune_keep * E)`` (at least 1) of the ``E``
    members remain unpruned.
    ``plateau_decays``: times a member whose stopping criterion ran out of patience has
    its rate multiplied by ``plateau_factor`` and goes back to its best weights (when it
    validates) instead of stopping (any solver; sgd's ``"adaptive"`` schedule aside).
    """

    max_iter: int = 200
    learning_rate: str = "constant"
    learning_rate_init: float = 2e-3
    power_t: float = 0.5
    shuffle: bool = True
    tol: float = 1e-4
    n_iter_no_change: int = 10
    stop: bool = True
    t_start: int = 0
    engine: str = "auto"
    verbose: int = 0
    plateau_decays: int = 0
    plateau_factor: float = 0.1
    prune: bool = False
    prune_keep: float = 0.5


@dataclass
class Data:
    """What one group trains on (numpy, host memory).

    Attributes
    ----------
    X : ndarray (N, F) float32
        Standardised inputs, read in place.
    Y : ndarray (N, O) float32
        Targets (standardised, or one-hot).
    rows : ndarray (E, M) int64
        Rows each member visits per epoch.
    loss_weight : ndarray (N,) or None
        Per-row weights of the training loss.
    features : ndarray (E, k) int64 or None
        Each member's feature subset (None: all features).
    val_mask : ndarray (E, N) bool or None
        Rows each member validates on; None: members stop on their training loss.
    val_weight : ndarray (N,) or None
        Per-row weights of the validation loss.
    Y_val : ndarray (N, O) or None
        Targets to validate on where they differ from ``Y`` (the hard labels when ``Y``
        is smoothed); None: ``Y``.
    val_rows : ndarray (Nv,) int64 or None
        Sorted rows the validation pass computes, a superset of those in ``val_mask``;
        None: the rows some member here validates on. A chunk of a group's members
        passes the whole group's, so that each member's validation loss is summed over
        the same rows, in the same order, as in one process (bit for bit).
    """

    X: np.ndarray
    Y: np.ndarray
    rows: np.ndarray
    loss_weight: np.ndarray = None
    features: np.ndarray = None
    val_mask: np.ndarray = None
    val_weight: np.ndarray = None
    Y_val: np.ndarray = None
    val_rows: np.ndarray = None


@dataclass
class History:
    """Per-epoch curves of the members (NaN once a member stopped).

    Attributes
    ----------
    loss : ndarray (T, E)
    n_iter : ndarray (E,) int64
    unconverged : int
        Members still improving when ``max_iter`` ended the loop.
    seconds : float
    val_loss, val_score : ndarray (T, E) or None
    best : ndarray (E,) or None
        Each member's best validation loss.
    stop_reason : ndarray (E,) of str or None
        Why each member stopped: ``"no improvement"`` (patience ran out), ``"pruned"``
        (``prune``), ``"max_iter"`` or ``"interrupted"``.
    """

    loss: np.ndarray
    n_iter: np.ndarray
    unconverged: int = 0
    seconds: float = 0.0
    val_loss: np.ndarray = None
    val_score: np.ndarray = None
    best: np.ndarray = None
    stop_reason: np.ndarray = None

    @classmethod
    def combine(cls, parts, n_members):
        """One history for members trained in groups: ``parts = [(positions, History)]``."""
        T = max(h.loss.shape[0] for _, h in parts)
        has_val = parts[0][1].val_loss is not None
        out = cls(loss=np.full((T, n_members), np.nan),
                  n_iter=np.zeros(n_members, dtype=np.int64),
                  unconverged=sum(h.unconverged for _, h in parts),
                  seconds=sum(h.seconds for _, h in parts))
        if has_val:
            out.val_loss = np.full((T, n_members), np.nan)
            out.val_score = np.full((T, n_members), np.nan)
            out.best = np.full(n_members, np.nan)
        if all(h.stop_reason is not None for _, h in parts):
            out.stop_reason = np.empty(n_members, dtype=object)
        for loc, h in parts:
            out.loss[: h.loss.shape[0], loc] = h.loss
            out.n_iter[loc] = h.n_iter
            if out.stop_reason is not None:
                out.stop_reason[loc] = h.stop_reason
            if has_val:
                out.val_loss[: h.val_loss.shape[0], loc] = h.val_loss
                out.val_score[: h.val_score.shape[0], loc] = h.val_score
                out.best[loc] = h.best
        return out

    def after(self, earlier):
        """The epochs of this history following ``earlier``'s (a resumed fit)."""
        def cat(a, b):
            return None if a is None or b is None else np.concatenate([a, b])

        return replace(self, loss=np.concatenate([earlier.loss, self.loss]),
                       n_iter=earlier.n_iter + self.n_iter,
                       val_loss=cat(earlier.val_loss, self.val_loss),
                       val_score=cat(earlier.val_score, self.val_score),
                       best=self.best if earlier.best is not None else None)

    def beside(self, earlier):
        """New members' curves next to ``earlier``'s (warm start with more members)."""
        def pad(old, fresh):
            if old is None or fresh is None:
                return None
            T = max(old.shape[0], fresh.shape[0])
            out = np.full((T, old.shape[1] + fresh.shape[1]), np.nan)
            out[: old.shape[0], : old.shape[1]] = old
            out[: fresh.shape[0], old.shape[1]:] = fresh
            return out

        best = None
        if earlier.best is not None and self.best is not None:
            best = np.concatenate([earlier.best, self.best])
        reason = None  # members with no reason (partial_fit only) get None beside the others
        if earlier.stop_reason is not None or self.stop_reason is not None:
            reason = np.concatenate([
                np.full(len(h.n_iter), None, dtype=object) if h.stop_reason is None
                else np.asarray(h.stop_reason, dtype=object) for h in (earlier, self)])
        return replace(self, stop_reason=reason, loss=pad(earlier.loss, self.loss),
                       n_iter=np.concatenate([earlier.n_iter, self.n_iter]),
                       val_loss=pad(earlier.val_loss, self.val_loss),
                       val_score=pad(earlier.val_score, self.val_score), best=best)


# ------------------------------------------------------------------ orders, streaming
def order_generators(seed, members):
    """One CPU generator per member for its visiting orders: list of ``torch.Generator``.

    Member ``members[e]`` (its position in the ensemble) draws from a stream seeded by
    ``(seed, members[e])`` alone, so its orders do not depend on which other members
    train beside it: a fit split into chunks of members (``n_jobs``) visits every
    member's rows in the same order as one process does.
    """
    return [
        torch.Generator().manual_seed(
            int(np.random.SeedSequence([int(seed), int(m)]).generate_state(1)[0]))
        for m in members  # set-up: one small seeding per member
    ]


def epoch_order(rows, generator, shuffle):
    """Visiting order of every member for one epoch, on the CPU.

    Parameters
    ----------
    rows : Tensor (E, M) int64 on the CPU
    generator : list of E torch.Generator (CPU), or one torch.Generator
        Each member's own stream (:func:`order_generators`), or one stream for all.
    shuffle : bool

    Returns
    -------
    Tensor (E, M) int64: ``rows`` permuted independently within each member.
    """
    if not shuffle:
        return rows
    if isinstance(generator, torch.Generator):
        keys = torch.rand(rows.shape, generator=generator)  # (E, M) one key per visit
    else:  # one draw per member (E=1,000, M=2,000: as fast as one draw, the sort dominates)
        keys = torch.stack([torch.rand(rows.shape[1], generator=g) for g in generator])
    # stable: tied keys keep their row order, so a member's order is a function of its keys
    return torch.gather(rows, 1, torch.argsort(keys, dim=1, stable=True))  # (E, M)


# Batches per streamed chunk, forced; None decides from the device's free memory. Tests
# set it to exercise streaming on the CPU.
STREAM_CHUNK_STEPS = None


def stream_chunk_steps(X, Y, device, hyper, n_members):
    """Batches per chunk when the training data must stream from host memory, else None.

    On CUDA the data stays on the device when it takes at most half its free memory;
    otherwise it streams in chunks sized to a quarter of the free memory.
    """
    if STREAM_CHUNK_STEPS is not None:
        return int(STREAM_CHUNK_STEPS)
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    data_bytes = X.nbytes + 4 * Y.size * 2
    if data_bytes <= free // 2:
        return None
    row_bytes = 4 * (X.shape[1] + Y.shape[1] + 1)
    return max(1, int(free // 4 // (n_members * hyper.batch_size * row_bytes)))


@dataclass
class _Tensors:
    """The training data as tensors.

    X, Y and sw sit where the data lives (``home``), the features on the compute device.
    """

    X: torch.Tensor  # (N, F) on home
    Y: torch.Tensor  # (N, O) on home
    sw: torch.Tensor  # (N,) on home, or None
    features: torch.Tensor  # (E, k) on the device, or None
    stream: int  # batches per streamed chunk, or None (resident)
    alpha: np.ndarray = None  # (E,) each member's L2 strength, or None (hyper.alpha)


@dataclass
class _Validation:
    """The validation rows, in one of two layouts.

    Shared (``idx`` None): every member is computed on the union of the rows any member
    validates on, ``w`` zero where a member does not. Own (``idx``): each member on its
    own rows only, the same number for every member (held-out rows), so a member's
    validation costs its rows, not the union's (ten members holding out 10% each cover
    about 65% of the data).
    """

    X: torch.Tensor  # (Nv, F) on home: only rows some member validates on
    Y: torch.Tensor  # (Nv, O) on the device (shared), or (E, n, O) (own)
    w: torch.Tensor  # (E, Nv) on the device: row weight where member e validates, else 0;
    # or (E, n): the weights of each member's own rows
    idx: torch.Tensor = None  # (E, n) int64 on home: each member's rows of X, ascending


def _validation(data, t, device):
    """The rows any member validates on, gathered once (None without validation)."""
    if data.val_mask is None:
        return None
    counts = data.val_mask.sum(1)
    if counts.size and counts.min() == counts.max() and counts[0] > 0:
        return _own_validation(data, t, device)
    vrows = data.val_rows
    if vrows is None:
        vrows = np.flatnonzero(data.val_mask.any(0))  # forward only rows someone validates on
    if not vrows.size:  # none at all (tiny data): every member stops on its training loss
        return None
    vw = data.val_mask[:, vrows].astype(np.float32)  # (E, Nv)
    if data.val_weight is not None:
        vw = vw * data.val_weight[vrows].astype(np.float32)
    vidx = torch.from_numpy(vrows).to(t.X.device)  # indexes the data where it lives
    if data.Y_val is None:
        Y = t.Y[vidx].to(device)
    else:
        Y = torch.from_numpy(np.ascontiguousarray(data.Y_val[vrows], dtype=np.float32)).to(device)
    return _Validation(X=t.X[vidx], Y=Y, w=torch.from_numpy(vw).to(device))


def _own_validation(data, t, device):
    """Each member's own validation rows (every member holds out as many).

    The shapes do not depend on the other members, so neither do a member's sums
    (``n_jobs`` chunks).
    """
    E = data.val_mask.shape[0]
    own = np.nonzero(data.val_mask)[1].reshape(E, -1)  # (E, n): each member's, ascending
    vrows, inverse = np.unique(own, return_inverse=True)  # the union, and positions in it
    vidx = torch.from_numpy(vrows).to(t.X.device)
    w = (np.ones(own.shape, np.float32) if data.val_weight is None
         else data.val_weight[own].astype(np.float32))
    if data.Y_val is None:
        Y = t.Y[torch.from_numpy(own).to(t.Y.device)].to(device)  # (E, n, O)
    else:
        Y = torch.from_numpy(np.ascontiguousarray(data.Y_val[own], dtype=np.float32)).to(device)
    return _Validation(X=t.X[vidx], Y=Y, w=torch.from_numpy(w).to(device),
                       idx=torch.from_numpy(inverse.reshape(own.shape)).to(t.X.device))


# ------------------------------------------------------------------------- train
def train_group(group, data, hyper, config, device, *, seed=0, member_score=None):
    """Train one group of members until each stops or ``config.max_iter`` epochs.

    Parameters
    ----------
    group : Group
        Initial weights and, to continue, optimizer state.
    data : Data
    hyper : skensemble._engine.Hyper
    config : Config
    device : torch.device
    seed : int
        Seed of the per-epoch visiting orders; each member's stream is seeded by ``seed``
        and its position in the ensemble (:func:`order_generators`).
    member_score : callable or None
        ``(out (E, Nv, O), Y (E, Nv, O), w (E, Nv)) -> (E,)`` validation score per member
        (higher is better), recorded in the history.

    Returns
    -------
    group : Group
        Trained weights and optimizer state (numpy, CPU).
    history : History
    engine : str
        The engine that ran.
    """
    if group.activation is not None:  # the group's own (member_params)
        hyper = replace(hyper, activation=group.activation)
    if group.weight_decay is not None:  # the group's own (member_params)
        hyper = replace(hyper, weight_decay=group.weight_decay)
    if group.label_smoothing is not None:  # the group's own targets, from the hard labels
        hard = data.Y if data.Y_val is None else data.Y_val
        eps = group.label_smoothing
        data = replace(data, Y=((1 - eps) * hard + eps / hard.shape[1]).astype(np.float32),
                       Y_val=hard if eps else None)
    layout = group.layout
    E = group.flat.shape[0]
    if data.features is not None:  # members of narrower inputs than others: this group's
        data = replace(data, features=np.ascontiguousarray(data.features[:, : layout.sizes[0]]))
    engine = _dispatch.select_engine(config.engine, hyper, layout, device,
                                     data.features is not None)
    stream = stream_chunk_steps(data.X, data.Y, device, hyper, E)
    home = _CPU if stream else device  # where the training data lives
    t = _Tensors(
        X=torch.from_numpy(data.X).to(home),
        Y=torch.from_numpy(data.Y).to(home),
        sw=None if data.loss_weight is None else torch.from_numpy(
            data.loss_weight.astype(np.float32)).to(home),
        features=None if data.features is None else torch.from_numpy(data.features).to(device),
        stream=stream,
        alpha=None if group.alpha is None else np.where(  # NaN: the estimator's alpha
            np.isnan(group.alpha), hyper.alpha, group.alpha).astype(np.float64),
    )
    val = _validation(data, t, device) if config.stop else None
    # a copy: the caller's group (a fitted estimator's, when resuming) stays untouched
    flat = torch.from_numpy(np.array(group.flat, dtype=np.float32, order="C")).to(device)
    if group.opt_state is not None:
        if group.opt_state.shape[0] != hyper.n_state:
            raise ValueError("warm_start=True cannot change the solver of fitted members.")
        state = torch.from_numpy(group.opt_state.copy()).to(device)
        steps = torch.from_numpy(group.steps.copy()).to(device)
    else:
        state, steps = _engine.init_state(flat, hyper)
    if group.lr is not None:  # each member's own rate (continued, or set per member)
        lr = np.asarray(group.lr, dtype=np.float64).copy()
    else:
        lr = np.full(E, float(config.learning_rate_init))
    if engine in ("numba", "triton"):
        # Member-major: threads meet once per epoch, one thread per member up to the
        # cores this fit may use.
        n_threads = min(_dispatch.default_threads(), E)
    else:  # torch steps synchronise per operation: only big steps get threads
        n_threads = _dispatch.default_threads(E * layout.n_params * hyper.batch_size)
    epoch_fn = _dispatch.epoch_function(engine)
    if engine == "triton" and config.engine == "auto":
        epoch_fn = _FallBack(epoch_fn, "graphed")
    start = time.perf_counter()
    try:
        with _dispatch.thread_limit(n_threads, engine):
            history = _loop(flat, state, steps, lr, t, val, torch.from_numpy(data.rows),
                            order_generators(seed, group.members), hyper, layout, engine,
                            epoch_fn, config, member_score)
    except torch.cuda.OutOfMemoryError as exc:
        raise MemoryError(
            f"{device} ran out of memory training {E} members of {layout.n_params} "
            f"parameters with batch_size={hyper.batch_size}. Lower n_estimators or "
            "batch_size, free memory held by other processes, or use device='cpu'."
        ) from exc
    finally:
        _schedule.release_graphs()
    history.seconds = time.perf_counter() - start
    engine = getattr(epoch_fn, "engine", None) or engine
    trained = Group(members=group.members, sizes=group.sizes, flat=flat.cpu().numpy().copy(),
                    opt_state=state.cpu().numpy().copy(), steps=steps.cpu().numpy().copy(),
                    lr=lr, alpha=group.alpha, activation=group.activation,
                    label_smoothing=group.label_smoothing, weight_decay=group.weight_decay)
    return trained, history, engine


class _FallBack:
    """An engine's epoch function that hands over to another if its first call fails.

    For a compiled kernel not yet measured on the device at hand (``engine="auto"``
    choosing Triton): if compiling or launching it raises, the members' parameters,
    optimizer state and step counts are put back as they were, a warning says why, and
    this and later epochs run ``fallback``. :attr:`engine` names what ran.
    """

    def __init__(self, fn, fallback):
        self.fn, self.fallback, self.engine = fn, fallback, None

    def __call__(self, flat, state, steps, *args, **kwargs):
        if self.engine is not None:
            return self.fn(flat, state, steps, *args, **kwargs)
        saved = flat.clone(), state.clone(), steps.clone()
        try:
            out = self.fn(flat, state, steps, *args, **kwargs)
        except (torch.cuda.OutOfMemoryError, MemoryError):
            raise  # the data or the ensemble are too big: no other engine helps
        except Exception as exc:  # noqa: BLE001 - any compile or launch failure
            for tensor, before in zip((flat, state, steps), saved):
                tensor.copy_(before)
            first = str(exc).strip().splitlines()
            why = f"{type(exc).__name__}: {first[0][:200] if first else ''}"
            _warn.warn(
                f"The Triton kernel failed on {flat.device} ({why}); training with "
                f"engine={self.fallback!r} instead (see engine_). Pass "
                f"engine={self.fallback!r} to skip the attempt, or engine='triton' to see "
                "the error.", RuntimeWarning)
            self.fn = _dispatch.epoch_function(self.fallback)
            self.engine = f"{self.fallback} (triton failed: {type(exc).__name__})"
            return self.fn(flat, state, steps, *args, **kwargs)
        self.engine = "triton"
        return out


def warmup_cosine(epoch, max_iter):
    """Factor on the rate in epoch ``epoch`` (from 0) of ``max_iter``: linear warm-up, cosine.

    Over the first ``w = max(1, max_iter // 20)`` epochs ``(epoch + 1) / w``; then
    ``0.5 * (1 + cos(pi * (epoch - w) / (max_iter - w)))``, which falls from 1 to 0.
    """
    w = max(1, max_iter // 20)
    if epoch < w:
        return (epoch + 1) / w
    span = max(1, max_iter - w)
    return 0.5 * (1.0 + math.cos(math.pi * (epoch - w) / span))


def _loop(flat, state, steps, lr, t, val, rows, gens, hyper, layout, engine, epoch_fn, config,
          member_score):
    """The epoch loop: all members in one call per epoch, each stopping on its own.

    Members that stopped are left out of later epochs (their parameters and optimizer
    state are untouched); members sharing a learning rate are trained by one call.
    ``lr (E,)`` is updated in place (schedules).
    """
    E = flat.shape[0]
    device = flat.device
    order_device = device
    if t.stream:
        epoch_fn = functools.partial(_schedule.epoch_streamed, epoch_fn, chunk_steps=t.stream)
        order_device = _CPU  # the host gathers each chunk's rows
    per_member_lr = engine in _dispatch.PER_MEMBER_LR
    adaptive = hyper.solver == "sgd" and config.learning_rate == "adaptive"
    invscaling = hyper.solver == "sgd" and config.learning_rate == "invscaling"
    cosine = config.learning_rate == "warmup_cosine"
    base_lr = lr.copy()  # each member's rate before the per-epoch schedule
    active = np.ones(E, dtype=bool)
    n_iter = np.zeros(E, dtype=np.int64)
    best = np.full(E, np.inf)
    no_improve = np.zeros(E, dtype=np.int64)
    n_decays = np.zeros(E, dtype=np.int64)
    reason = np.full(E, "max_iter", dtype=object)
    checkpoint = max(1, config.n_iter_no_change)  # next successive-halving epoch
    best_flat = flat.clone() if val is not None else None
    losses, val_losses, val_scores = [], [], []
    M = rows.shape[1]
    t_seen = config.t_start
    bar = progress(config.max_iter, config.verbose)
    interrupted = False
    for epoch in range(config.max_iter):
        try:
            order = epoch_order(rows, gens, config.shuffle)  # (E, M) on the CPU
            if invscaling:
                lr[:] = config.learning_rate_init / (t_seen + 1) ** config.power_t
            elif cosine:
                lr[:] = base_lr * warmup_cosine(epoch, config.max_iter)
            epoch_loss = torch.full((E,), float("nan"), device=device)
            if per_member_lr:  # one call, each member at its own rate
                calls = [(np.flatnonzero(active), None)]
            else:  # one call per distinct rate
                calls = [(np.flatnonzero(active & (lr == rate)), float(rate))
                         for rate in np.unique(lr[active])]
            for members, rate in calls:
                epoch_loss[torch.from_numpy(members).to(device)] = _epoch_subset(
                    epoch_fn, members, flat, state, steps, t, order, order_device,
                    lr[members] if rate is None else rate, hyper, layout,
                )
            t_seen += M
            n_iter[active] += 1
            if val is not None:
                vloss, vscore = _validate(flat, val, hyper, layout, t.features, member_score)
            loss_np = epoch_loss.cpu().numpy().astype(np.float64)  # one sync per epoch
            bad = active & ~np.isfinite(loss_np)
            if bad.any():
                bar.close()
                raise ValueError(
                    f"Training diverged: the loss of member(s) {np.flatnonzero(bad).tolist()} "
                    f"became non-finite in epoch {epoch + 1} with solver={hyper.solver!r} and "
                    f"learning_rate_init={config.learning_rate_init}. Lower learning_rate_init "
                    "(e.g. by 10x), or use solver='adam'."
                )
            losses.append(loss_np)
            crit = loss_np
            if val is not None:
                vloss_np = vloss.cpu().numpy().astype(np.float64)
                vloss_np[~active] = np.nan
                val_losses.append(vloss_np)
                val_scores.append(np.where(active, vscore.cpu().numpy(), np.nan))
                # Members without validation rows (tiny data) fall back to their training loss.
                crit = np.where(np.isfinite(vloss_np), vloss_np, loss_np)
            if config.stop:
                worse = active & (crit > best - config.tol)
                no_improve[worse] += 1
                no_improve[active & ~worse] = 0
                improved = active & (crit < best)
                best[improved] = crit[improved]
                if val is not None and improved.any():
                    keep = torch.from_numpy(np.flatnonzero(improved)).to(device)
                    best_flat[keep] = flat[keep]
                patience_out = active & (no_improve >= config.n_iter_no_change)
                if adaptive:
                    shrink = patience_out & (lr / 5.0 >= 1e-6)
                    lr[shrink] /= 5.0
                    no_improve[shrink] = 0
                    patience_out &= ~shrink
                elif config.plateau_decays:
                    decay = patience_out & (n_decays < config.plateau_decays)
                    if decay.any():
                        lr[decay] *= config.plateau_factor
                        base_lr[decay] *= config.plateau_factor
                        n_decays[decay] += 1
                        no_improve[decay] = 0
                        patience_out &= ~decay
                        if val is not None:  # on from the best weights, at the lower rate
                            back = torch.from_numpy(np.flatnonzero(decay)).to(device)
                            flat[back] = best_flat[back]
                reason[patience_out] = "no improvement"
                active &= ~patience_out
                if config.prune and val is not None and epoch + 1 == checkpoint:
                    checkpoint *= 2
                    unpruned = E - int((reason == "pruned").sum())
                    pruned = _halving(active, best, unpruned - prune_floor(config.prune_keep, E))
                    reason[pruned] = "pruned"
                    active &= ~pruned
            bar.update(float(np.nanmean(loss_np)), int(active.sum()), E,
                       None if val is None else float(np.nanmean(val_losses[-1])))
            if not active.any():
                break
        except KeyboardInterrupt:
            # Like scikit-learn's MLP: stop, keep what was learnt, leave a usable model.
            _warn.warn(
                f"Training interrupted by the user in epoch {epoch + 1}; keeping the "
                "weights so far (each member's best with early_stopping). Call fit again "
                "with warm_start=True to continue.")
            interrupted = True
            break
    bar.close()
    if cosine:
        lr[:] = base_lr  # a continued fit (warm_start) runs the schedule again from these
    if val is not None:
        flat.copy_(best_flat)  # every member ends with its best-validation weights
    if interrupted:
        reason[active] = "interrupted"
        active[:] = False  # do not also warn about convergence
    history = History(loss=np.asarray(losses).reshape(-1, E), n_iter=n_iter,
                      unconverged=int(active.sum()), stop_reason=reason)
    if val is not None:
        history.val_loss = np.asarray(val_losses).reshape(-1, E)
        history.val_score = np.asarray(val_scores).reshape(-1, E)
        history.best = best
    return history


def prune_floor(keep, n):
    """Members of a group of ``n`` that halving leaves unpruned: ``ceil(keep * n)``, >= 1.

    The product is rounded to 9 decimals first, so that a fraction such as 0.55 of 100
    (55.00000000000001 in floating point) keeps 55 members, not 56.
    """
    return max(1, math.ceil(round(keep * n, 9)))


def _halving(active, best, n_spare):
    """Members to stop at a successive-halving checkpoint: the worse half of ``active``.

    Ranked by best validation loss so far (ties: the earlier member ranks first); the
    better ``ceil(n / 2)`` of the ``n`` active members go on. At most ``n_spare`` stop
    (the members that may still be pruned before the ensemble is at its floor).
    """
    idx = np.flatnonzero(active)
    out = np.zeros(active.shape, dtype=bool)
    n_stop = min(idx.size // 2, n_spare)
    if n_stop <= 0:
        return out
    ranked = idx[np.argsort(best[idx], kind="stable")]
    out[ranked[-n_stop:]] = True
    return out


def _epoch_subset(epoch_fn, members, flat, state, steps, t, order, order_device, lr, hyper,
                  layout):
    """Run one epoch for ``members`` only; returns their losses ``(len(members),)``.

    ``order (E, M)`` is on the CPU and moves to ``order_device`` (the device, or the CPU
    when streaming); each index tensor is made on the device of the tensor it indexes.
    """
    extra = {}
    if t.alpha is not None:
        extra["alpha"] = t.alpha[members]
    if members.size == flat.shape[0]:
        if t.features is not None:
            extra["features"] = t.features
        return epoch_fn(flat, state, steps, t.X, t.Y, t.sw, order.to(order_device), lr, hyper,
                        layout, **extra)
    host_idx = torch.from_numpy(members)  # indexes the host order
    idx = host_idx.to(flat.device)  # indexes parameters, state and features
    sub_flat, sub_state, sub_steps = flat[idx], state[:, idx].contiguous(), steps[idx]
    if t.features is not None:
        extra["features"] = t.features[idx].contiguous()
    sub_order = order[host_idx].to(order_device)  # (len(members), M)
    out = epoch_fn(sub_flat, sub_state, sub_steps, t.X, t.Y, t.sw, sub_order, lr, hyper, layout,
                   **extra)
    flat[idx], state[:, idx], steps[idx] = sub_flat, sub_state, sub_steps
    return out


def member_sum(x):
    """Sum over the last axis, each row from its first element to its last: ``(..., n) -> (...)``.

    ``torch.sum`` chooses its order of summation by the tensor's shape and strides: summed
    with other members (or as a column of a column-major array), a member's sum rounded
    differently than alone (measured). A running sum does not depend on the other rows,
    so a member's validation loss and score are the same bit for bit whichever members
    are trained beside it (``n_jobs`` chunks).
    """
    if x.shape[-1] == 0:
        return x.sum(-1)
    return x.cumsum(-1)[..., -1]


@torch.no_grad()
def _validate(flat, val, hyper, layout, features, member_score):
    """Per-member weighted validation loss ``(E,)`` and score ``(E,)`` (device tensors)."""
    if val.idx is None:
        out = torch.cat(
            _engine.predict_chunked(flat, layout, val.X, hyper.activation, lambda o: o,
                                    features=features),
            dim=1,
        )  # (E, Nv, O)
        Y = val.Y.unsqueeze(0).expand_as(out)
    else:
        out = _engine.predict_rows(flat, layout, val.X, val.idx, hyper.activation, features)
        Y = val.Y  # (E, n, O)
    rows = _engine.per_row_loss(out, Y, hyper.loss)  # (E, Nv)
    # nan where a member has no validation rows
    loss = member_sum(rows * val.w) / member_sum(val.w)
    if member_score is None:
        return loss, torch.full_like(loss, float("nan"))
    return loss, member_score(out, Y, val.w)
