"""The epoch loop of groups of members: pure torch and numpy, no scikit-learn.

Owns
----
- training groups of members that share one layout (:class:`._groups.Group`, built and
  merged in :mod:`._groups`);
- per-member stopping (patience on each member's training or validation loss), keeping
  each member's best weights, successive halving; the learning-rate schedules are
  declared in :mod:`._optim` and applied here;
- validation on each member's own rows;
- whether the training data stays on the device or streams from host memory;
- the thread scope of a fit and the translation of device out-of-memory errors;
- per-epoch visiting orders;
- the targets a group's members fit (one-hot labels smoothed by the group's label
  smoothing: :func:`._engine.smooth_labels`).

It takes standardised float32 arrays and small dataclasses and returns them. It must
not validate user input, scale data, draw member seeds or know about estimators and
labels: :mod:`._parallel` calls :func:`train_group` once per group (and chunk of
members), :mod:`._mothernets` once per MotherNet. Everything here runs (and is tested)
without scikit-learn.

Shape legend (as in :mod:`._engine`): E members of a group, N rows, M rows one member
visits per epoch, F features, k features one member reads, O outputs, P parameters of
one member, S optimizer state slots, T epochs.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from . import _dispatch, _engine, _engines, _inputs, _optim, _sampling, _schedule, _warn
from ._history import History
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
        Scaled values, read in place.
    Y : ndarray (N, O) float32
        Targets (standardised, or one-hot).
    rows : ndarray (E, M) int64
        Rows each member visits per epoch.
    loss_weight : ndarray (N,) or None
        Per-row weights of the training loss.
    columns : ndarray (E, w) int64 or None
        Each member's columns of the encoded space ``encoding`` describes (its values and
        their bins, :meth:`._scaling.InputTransform.columns`); None: every column in order.
    encoding : skensemble._inputs.Encoding or None
        The encoded space of ``X``: its bins. None: ``X``'s columns themselves.
    val_mask : ndarray (E, N) bool or None
        Rows each member validates on; None: members stop on their training loss.
    val_weight : ndarray (N,) or None
        Per-row weights of the validation loss.
    label_smoothing : float
        Members fit the one-hot ``Y`` smoothed by this (a group's own value, where it has
        one, instead) and validate on ``Y`` itself.
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
    columns: np.ndarray = None
    encoding: object = None
    val_mask: np.ndarray = None
    val_weight: np.ndarray = None
    label_smoothing: float = 0.0
    val_rows: np.ndarray = None


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
    """Visiting order of every member for one epoch, on the CPU (the CPU engines').

    On a CUDA device the training loop draws the orders there instead, with
    :func:`._sampling.keyed_order` (equal in distribution, not bit-identical to this).

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


# Where the visiting orders are drawn: None draws them on the device on CUDA
# (:func:`._sampling.keyed_order`) and with each member's CPU generator on the CPU
# (:func:`epoch_order`); True draws keyed orders everywhere (tests compare a CPU fit
# with a fit on the fake device by it).
KEYED_ORDER = None

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


def _validation(data, Y_val, t, device):
    """The rows any member validates on, gathered once (None without validation).

    ``Y_val (N, O)``: the targets to validate on where they differ from those trained on
    (the hard labels when those are smoothed), or None; ``t``: the data as tensors.
    """
    if data.val_mask is None:
        return None
    counts = data.val_mask.sum(1)
    if counts.size and counts.min() == counts.max() and counts[0] > 0:
        return _own_validation(data, Y_val, t, device)
    vrows = data.val_rows
    if vrows is None:
        vrows = np.flatnonzero(data.val_mask.any(0))  # forward only rows someone validates on
    if not vrows.size:  # none at all (tiny data): every member stops on its training loss
        return None
    vw = data.val_mask[:, vrows].astype(np.float32)  # (E, Nv)
    if data.val_weight is not None:
        vw = vw * data.val_weight[vrows].astype(np.float32)
    vidx = torch.from_numpy(vrows).to(t.X.device)  # indexes the data where it lives
    if Y_val is None:
        Y = t.Y[vidx].to(device)
    else:
        Y = torch.from_numpy(np.ascontiguousarray(Y_val[vrows], dtype=np.float32)).to(device)
    return _Validation(X=t.X[vidx], Y=Y, w=torch.from_numpy(vw).to(device))


def _own_validation(data, Y_val, t, device):
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
    if Y_val is None:
        Y = t.Y[torch.from_numpy(own).to(t.Y.device)].to(device)  # (E, n, O)
    else:
        Y = torch.from_numpy(np.ascontiguousarray(Y_val[own], dtype=np.float32)).to(device)
    if t.X.device.type == "cpu":  # the rows where they are: no gathered copy (1M x 100
        # rows, ten members: the union's copy took 250 MB); a device gets the union only
        return _Validation(X=t.X, Y=Y, w=torch.from_numpy(w).to(device),
                           idx=torch.from_numpy(own).to(t.X.device))
    return _Validation(X=t.X[vidx], Y=Y, w=torch.from_numpy(w).to(device),
                       idx=torch.from_numpy(inverse.reshape(own.shape)).to(t.X.device))


# ------------------------------------------------------------------------- train
def _targets(data, settings):
    """The targets ``(N, O)`` the group's members fit, and those to validate on (or None).

    With label smoothing (the group's own, else ``data.label_smoothing``) the members
    fit the smoothed one-hot labels and validate on the labels themselves.
    """
    eps = settings.label_smoothing
    eps = data.label_smoothing if eps is None else eps
    if not eps:
        return data.Y, None
    return _engine.smooth_labels(data.Y, eps), data.Y


def _first_layer(data, E, width):
    """What the group's ``E`` first layers of ``width`` inputs read (numpy), or None."""
    if data.columns is None and data.encoding is None:
        return None  # X's columns themselves, in order
    columns = None if data.columns is None else data.columns[:, :width]
    encoding = data.encoding or _inputs.Encoding.plain(data.X.shape[1])
    return encoding.first_layer(columns, E, width)


def _member_values(group, hyper, E, config):
    """Each member's per-member values as numbers: ``{Member field: (E,) float64}``.

    The learning rate always (the group's current rates, else the estimator's), the
    others where members drew them (NaN entries: the estimator's value, ``hyper``'s).
    """
    out = {}
    for name, values in group.vectors.items():
        if name == "lr":
            continue
        values = np.asarray(values, dtype=np.float64)
        out[name] = np.where(np.isnan(values), getattr(hyper, name), values)
    if "lr" in group.vectors:  # each member's own rate (continued, or drawn)
        lr = np.asarray(group.vectors["lr"], dtype=np.float64).copy()
    else:
        lr = np.full(E, float(config.learning_rate_init))
    return lr, out


def train_group(group, data, hyper, config, device, *, seed=0, member_score=None):
    """Train one group of members until each stops or ``config.max_iter`` epochs.

    Parameters
    ----------
    group : Group
        Initial weights and, to continue, optimizer state.
    data : Data
    hyper : skensemble._engine.Hyper
        The estimator's step; the group's settings (:class:`~._hyperspace.GroupSettings`)
        replace its activation and weight decay.
    config : Config
    device : torch.device
    seed : int
        Seed of the per-epoch visiting orders; each member's stream is seeded by ``seed``
        and its position in the ensemble (:func:`order_generators` on the CPU; on CUDA
        :func:`._sampling.order_keys`, the orders drawn on the device).
    member_score : callable or None
        ``(out (E, Nv, O), Y (E, Nv, O), w (E, Nv)) -> (E,)`` validation score per member
        (higher is better), recorded in the history.

    Returns
    -------
    group : Group
        Trained weights, optimizer state and learning rates (numpy, CPU).
    history : History
    engine : str
        The engine that ran.
    """
    hyper = group.settings.hyper(hyper)
    Y_fit, Y_val = _targets(data, group.settings)
    layout = group.layout
    E = group.flat.shape[0]
    first = _first_layer(data, E, layout.sizes[0])
    lr, values = _member_values(group, hyper, E, config)
    request = _engines.Request(hyper, layout.sizes, first is not None, frozenset(values))
    engine = _dispatch.select_engine(config.engine, request, device)
    stream = _schedule.stream_chunk_steps(data.X, Y_fit, device, hyper, E, data.rows.shape[1])
    home = _CPU if stream else device  # where the training data lives
    with _schedule.device_memory(device, E, layout, hyper):
        return _train_on(group, data, hyper, config, device, seed, member_score, engine,
                         stream, home, Y_fit, Y_val, first, lr, values)


def _train_on(group, data, hyper, config, device, seed, member_score, engine, stream, home,
              Y_fit, Y_val, first, lr, values):
    """:func:`train_group` from the first allocation on the device (see there)."""
    layout = group.layout
    E = group.flat.shape[0]
    t = _engine.Data(
        X=torch.from_numpy(data.X).to(home),
        Y=torch.from_numpy(Y_fit).to(home),
        sw=None if data.loss_weight is None else torch.from_numpy(
            data.loss_weight.astype(np.float32)).to(home),
        first=None if first is None else first.to(device),
    )
    val = _validation(data, Y_val, t, device) if config.stop else None
    # a copy: the caller's group (a fitted estimator's, when resuming) stays untouched
    flat = torch.from_numpy(np.array(group.flat, dtype=np.float32, order="C")).to(device)
    if group.opt_state is not None:
        if group.opt_state.shape[0] != hyper.n_state:
            raise ValueError("warm_start=True cannot change the solver of fitted members.")
        state = torch.from_numpy(group.opt_state.copy()).to(device)
        steps = torch.from_numpy(group.steps.copy()).to(device)
    else:
        state, steps = _engine.init_state(flat, hyper)
    params = _engine.Params(flat, state, steps, layout)
    if engine in ("numba", "triton"):
        # Member-major: threads meet once per epoch, one thread per member up to the
        # cores this fit may use.
        n_threads = min(_dispatch.default_threads(), E)
    else:  # torch steps synchronise per operation: only big steps get threads
        n_threads = _dispatch.default_threads(E * layout.n_params * hyper.batch_size)
    epoch_fn = _dispatch.epoch_function(engine)
    if engine == "triton" and config.engine == "auto":
        epoch_fn = _schedule.FallBack(epoch_fn, "graphed")
    rates = _optim.Rates.start(lr)
    start = time.perf_counter()
    keyed = device.type == "cuda" if KEYED_ORDER is None else bool(KEYED_ORDER)
    gens = (_sampling.order_keys(seed, group.members) if keyed
            else order_generators(seed, group.members))
    with _dispatch.thread_limit(n_threads, engine):
        history = _Loop(params, t, stream, val, values, rates, hyper, config,
                        epoch_fn, member_score, engine).run(torch.from_numpy(data.rows), gens)
    history.seconds = time.perf_counter() - start
    engine = getattr(epoch_fn, "engine", None) or engine
    trained = replace(group, flat=params.flat.cpu().numpy().copy(),
                      opt_state=params.state.cpu().numpy().copy(),
                      steps=params.steps.cpu().numpy().copy(),
                      vectors={**group.vectors, "lr": rates.lr})
    return trained, history, engine


@dataclass
class _MemberStops:
    """Each member's stopping state over the epochs of one group's training."""

    E: int
    active: np.ndarray = None  # (E,) bool: still training
    n_iter: np.ndarray = None  # (E,) epochs trained
    best: np.ndarray = None  # (E,) best stopping criterion so far
    no_improve: np.ndarray = None  # (E,) epochs since it last improved by tol
    n_decays: np.ndarray = None  # (E,) plateau decays taken
    reason: np.ndarray = None  # (E,) object: why it stopped
    losses: list = field(default_factory=list)
    val_losses: list = field(default_factory=list)
    val_scores: list = field(default_factory=list)

    def __post_init__(self):
        E = self.E
        self.active = np.ones(E, dtype=bool)
        self.n_iter = np.zeros(E, dtype=np.int64)
        self.best = np.full(E, np.inf)
        self.no_improve = np.zeros(E, dtype=np.int64)
        self.n_decays = np.zeros(E, dtype=np.int64)
        self.reason = np.full(E, "max_iter", dtype=object)


class _Loop:
    """The epoch loop of one group: all members in one call per epoch, each stopping on its own.

    Members that stopped are left out of later epochs (their parameters and optimizer
    state are untouched). ``rates`` (:class:`._optim.Rates`) are updated in place by
    the schedule.
    """

    def __init__(self, params, t, stream, val, values, rates, hyper, config, epoch_fn,
                 member_score, engine=None):
        self.params, self.t, self.val, self.values = params, t, val, values
        self.rates, self.hyper, self.config = rates, hyper, config
        self.member_score = member_score
        self.device = params.flat.device
        self.order_device = self.device
        if stream:
            epoch_fn = functools.partial(_schedule.epoch_streamed, epoch_fn, chunk_steps=stream)
            self.order_device = _CPU  # the host gathers each chunk's rows
        self.epoch_fn = epoch_fn
        self.schedule = _optim.schedule(config.learning_rate, hyper.solver)
        # the numba engine validates first layers that read bins in compiled code, from
        # the bins' structure (the torch forward would compute every encoded input)
        first = t.first
        self.compiled_forward = (
            engine == "numba" and first is not None and params.layout.n_layers > 1
            and first.has_runs)
        self.plateau = (_optim.PlateauDecay(config.plateau_decays, config.plateau_factor)
                        if config.plateau_decays and self.schedule.name != "adaptive" else None)

    def run(self, rows, gens):
        """Train until every member stopped or ``max_iter`` epochs; returns the History."""
        config, params = self.config, self.params
        E, M = rows.shape
        st = _MemberStops(E)
        best_flat = params.flat.clone() if self.val is not None else None
        checkpoint = max(1, config.n_iter_no_change)  # next successive-halving epoch
        t_seen = config.t_start
        bar = progress(config.max_iter, config.verbose)
        interrupted = False
        keyed = isinstance(gens, np.ndarray)  # member keys: orders drawn where they are used
        if keyed:
            rows = rows.to(self.order_device)
            gens = torch.from_numpy(gens).to(self.order_device)
        for epoch in range(config.max_iter):
            try:
                if keyed:  # (E, M) on the device (the CPU when streaming)
                    order = _sampling.keyed_order(rows, gens, epoch) if config.shuffle else rows
                else:
                    order = epoch_order(rows, gens, config.shuffle)  # (E, M) on the CPU
                self.schedule.before_epoch(self.rates, epoch, t_seen, config)
                loss, vloss, vscore = self._epoch(order, st.active)
                t_seen += M
                st.n_iter[st.active] += 1
                crit = self._record(st, epoch, loss, vloss, vscore, bar)
                if config.stop:
                    self._stop(st, crit, best_flat)
                    if config.prune and self.val is not None and epoch + 1 == checkpoint:
                        checkpoint *= 2
                        unpruned = E - int((st.reason == "pruned").sum())
                        pruned = _halving(st.active, st.best,
                                          unpruned - prune_floor(config.prune_keep, E))
                        st.reason[pruned] = "pruned"
                        st.active &= ~pruned
                bar.update(float(np.nanmean(st.losses[-1])), int(st.active.sum()), E,
                           None if self.val is None else float(np.nanmean(st.val_losses[-1])))
                if not st.active.any():
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
        self.schedule.after_fit(self.rates)
        if self.val is not None:
            params.flat.copy_(best_flat)  # every member ends with its best-validation weights
        if interrupted:
            st.reason[st.active] = "interrupted"
            st.active[:] = False  # do not also warn about convergence
        history = History(loss=np.asarray(st.losses).reshape(-1, E), n_iter=st.n_iter,
                          unconverged=int(st.active.sum()), stop_reason=st.reason)
        if self.val is not None:
            history.val_loss = np.asarray(st.val_losses).reshape(-1, E)
            history.val_score = np.asarray(st.val_scores).reshape(-1, E)
            history.best = st.best
        return history

    def _epoch(self, order, active):
        """One epoch of the active members; their losses and validation (device tensors)."""
        E = active.size
        members = np.flatnonzero(active)
        loss = torch.full((E,), float("nan"), device=self.device)
        loss[torch.from_numpy(members).to(self.device)] = _epoch_subset(
            self.epoch_fn, members, self.params, self.t, order, self.order_device,
            self.rates.lr, self.values, self.hyper)
        if self.val is None:
            return loss, None, None
        vloss, vscore = _validate(self.params.flat, self.val, self.hyper, self.params.layout,
                                  self.t.first, self.member_score, self.compiled_forward)
        return loss, vloss, vscore

    def _record(self, st, epoch, loss, vloss, vscore, bar):
        """Store the epoch's curves; return each member's stopping criterion ``(E,)``."""
        loss_np = loss.cpu().numpy().astype(np.float64)  # one sync per epoch
        bad = st.active & ~np.isfinite(loss_np)
        if bad.any():
            bar.close()
            raise ValueError(
                f"Training diverged: the loss of member(s) {np.flatnonzero(bad).tolist()} "
                f"became non-finite in epoch {epoch + 1} with solver={self.hyper.solver!r} "
                f"and learning_rate_init={self.config.learning_rate_init}. Lower "
                "learning_rate_init (e.g. by 10x), or use solver='adam'."
            )
        st.losses.append(loss_np)
        if vloss is None:
            return loss_np
        vloss_np = vloss.cpu().numpy().astype(np.float64)
        vloss_np[~st.active] = np.nan
        st.val_losses.append(vloss_np)
        st.val_scores.append(np.where(st.active, vscore.cpu().numpy(), np.nan))
        # Members without validation rows (tiny data) fall back to their training loss.
        return np.where(np.isfinite(vloss_np), vloss_np, loss_np)

    def _stop(self, st, crit, best_flat):
        """Patience, best weights, schedule and plateau decays after one epoch."""
        config, active = self.config, st.active
        worse = active & (crit > st.best - config.tol)
        st.no_improve[worse] += 1
        st.no_improve[active & ~worse] = 0
        improved = active & (crit < st.best)
        st.best[improved] = crit[improved]
        flat = self.params.flat
        if self.val is not None and improved.any():
            keep = torch.from_numpy(np.flatnonzero(improved)).to(self.device)
            best_flat[keep] = flat[keep]
        out = active & (st.no_improve >= config.n_iter_no_change)
        still = self.schedule.on_patience(out, self.rates)  # "adaptive" lowers rates instead
        st.no_improve[out & ~still] = 0
        out = still
        if self.plateau is not None:
            decay = self.plateau.decay(out, st.n_decays, self.rates)
            if decay.any():
                st.no_improve[decay] = 0
                out &= ~decay
                if self.val is not None:  # on from the best weights, at the lower rate
                    back = torch.from_numpy(np.flatnonzero(decay)).to(self.device)
                    flat[back] = best_flat[back]
        st.reason[out] = "no improvement"
        st.active &= ~out


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


def _epoch_subset(epoch_fn, members, params, t, order, order_device, lr, values, hyper):
    """Run one epoch for ``members`` only; returns their losses ``(len(members),)``.

    ``order (E, M)`` is on the CPU or already on ``order_device`` (the device, or the CPU
    when streaming) and moves there; each index tensor is made on the device of the
    tensor it indexes.
    ``lr (E,)`` and ``values`` (``{Member field: (E,)}``) are every member's numbers.
    """
    device = params.flat.device
    member = _engine.Member.of(lr[members], device,
                               **{k: v[members] for k, v in values.items()})
    if members.size == params.flat.shape[0]:
        return epoch_fn(params, t, order.to(order_device), member, hyper)
    order_idx = torch.from_numpy(members).to(order.device)  # indexes the order
    idx = order_idx.to(device)  # indexes parameters, state and features
    part = params.take(idx)
    out = epoch_fn(part, t.for_members(idx), order[order_idx].to(order_device), member, hyper)
    params.put(idx, part)
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
def _validate(flat, val, hyper, layout, first, member_score, compiled=False):
    """Per-member weighted validation loss ``(E,)`` and score ``(E,)`` (device tensors).

    ``compiled``: the forward pass in numba's compiled code (first layers that read bins).
    """
    if compiled:
        from ._kernels.numba_cpu import forward_numba

        E = flat.shape[0]
        idx = (val.idx if val.idx is not None
               else torch.arange(val.X.shape[0]).expand(E, -1).contiguous())
        # rows four at a time only on each member's own rows: in the shared layout the
        # union of rows depends on the other members, and a row's result must not
        out = forward_numba(flat, layout, val.X, idx, first, hyper.activation,
                            blocked=val.idx is not None)  # (E, n, O)
        Y = val.Y if val.idx is not None else val.Y.unsqueeze(0).expand_as(out)
    elif val.idx is None:
        out = torch.cat(
            _engine.predict_chunked(flat, layout, val.X, hyper.activation, lambda o: o,
                                    first=first),
            dim=1,
        )  # (E, Nv, O)
        Y = val.Y.unsqueeze(0).expand_as(out)
    else:
        out = _engine.predict_rows(flat, layout, val.X, val.idx, hyper.activation, first)
        Y = val.Y  # (E, n, O)
    rows = _engine.per_row_loss(out, Y, hyper.loss, hyper.quantiles)  # (E, Nv)
    # nan where a member has no validation rows
    loss = member_sum(rows * val.w) / member_sum(val.w)
    if member_score is None:
        return loss, torch.full_like(loss, float("nan"))
    return loss, member_score(out, Y, val.w)
