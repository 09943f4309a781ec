"""The one fit pipeline: ``fit``, warm start and ``partial_fit`` as a plan, executed once.

scikit-learn's MLP has one ``_fit(X, y, incremental)``; so do we. :func:`fit` takes the
estimator's parameters (:class:`Settings`), its task (:mod:`._tasks`), validated data,
the previous :class:`~skensemble._fitted.FittedEnsemble` (or None) and the mode:

- ``"fresh"``: a new ensemble;
- ``"more"``: ``warm_start`` with more members: only the new ones train, beside the old;
- ``"resume"``: ``warm_start`` with as many members: all continue, with a new optimizer;
- ``"partial"``: ``partial_fit``: one epoch for every member on the rows given (the first
  call initialises the members).

It first builds a :class:`Plan` (the input transform, targets, member seeds and draws,
initial groups, what trains), then executes it: trains the groups (:mod:`._parallel`),
merges them with the old ones, computes the out-of-bag scores and the ensemble weights
(:mod:`._heldout`), and returns the new fitted state. Nothing is written to the
estimator: it assigns the result, so a fit that raises leaves it as it was.

Must not validate user input (the estimators do, with ``validate_data``).

Shape legend: E members, N rows, F features, k features one member reads, O outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from . import (
    _dask,
    _dispatch,
    _engine,
    _groups,
    _heldout,
    _hetero,
    _history,
    _hyperspace,
    _inputs,
    _mothernets,
    _parallel,
    _predict,
    _sampling,
    _scaling,
    _tabular,
    _training,
    _warn,
)
from ._fitted import FittedEnsemble, draw_counts

# batch_size="auto": small enough for the member-major kernels (_dispatch.MEMBER_MAJOR_MAX_BATCH)
# and, on the tuning half of benchmarks/bench_quality.py, better than 200 (the MLP's).
AUTO_BATCH = 64
# The defaults that follow the data's size (see recipe()): members that train on at least
# LARGE_ROWS rows take batches of LARGE_BATCH and a warm-up + cosine schedule over
# LARGE_ROW_PASSES / n epochs, within [LARGE_EPOCHS, LARGE_MAX_EPOCHS] (a budget of rows
# visited, so that 50K-row sets are not cut at the full-size sets' 15 epochs: on
# bench_scale's birthdays at 50K rows 15 epochs gave an RMSE of 0.1806, 60 gave 0.1616;
# members still stop on their validation rows); members that cannot stop on validation
# rows (small data) anneal over at most SMALL_EPOCHS. Measured in benchmarks/bench_scale.py
# (large) and benchmarks/bench_small.py (small); docs/user_guide/scale.rst gives the figures.
LARGE_ROWS = 40_000
LARGE_BATCH = 256
LARGE_EPOCHS = 15
LARGE_MAX_EPOCHS = 60
LARGE_ROW_PASSES = 2_700_000
SMALL_EPOCHS = 50
AUTO_MAX_ITER = 200  # max_iter="auto" otherwise: scikit-learn's MLP default
# early_stopping="auto" stops members on held-out rows when each would hold out at
# least this many (n_samples >= 200 at validation_fraction=0.1): fewer make the
# validation loss too noisy to choose epochs by, and cost scarce training rows.
AUTO_MIN_VALIDATION_ROWS = 20


class Settings:
    """The estimator's parameters as the pipeline reads them (attribute access, read-only)."""

    def __init__(self, params):
        self.__dict__.update(params)

    def __setattr__(self, name, value):
        raise AttributeError("Settings are read-only")


# ------------------------------------------------------------- parameters resolved
def early_stopping(p, n_samples):
    """Whether members stop on validation rows (``early_stopping`` resolved)."""
    if p.early_stopping != "auto":
        return bool(p.early_stopping)
    return bool(np.ceil(p.validation_fraction * n_samples) >= AUTO_MIN_VALIDATION_ROWS)


def sampling_plan(p, n_samples, n_features):
    """How members sample rows and features in a fit (:class:`~._sampling.Plan`)."""
    holdout = None
    # Members stop on rows they hold out when there are no out-of-bag rows (no
    # bootstrap), and also with oob_score=True: stopping on the out-of-bag rows would
    # pick each member's weights by the very rows oob_score_ then scores.
    if early_stopping(p, n_samples) and (not p.bootstrap or p.oob_score):
        holdout = float(p.validation_fraction)
        n_held = int(np.ceil(holdout * n_samples))
        if n_held < 2 or n_samples - n_held < 1:
            raise ValueError(
                f"The validation set is too small: early_stopping with "
                f"validation_fraction={p.validation_fraction} holds out {n_held} of "
                f"{n_samples} rows per member and needs at least 2, with rows left to "
                "train on. Increase validation_fraction, use more data, or set "
                "early_stopping=False."
            )
        n_pool = n_samples - n_held
    else:
        n_pool = n_samples
    return _sampling.Plan(
        n_samples=n_samples, n_features=n_features,
        n_draw=_sampling.count(p.max_samples, n_pool, "max_samples"),
        n_feat=_sampling.count(p.max_features, n_features, "max_features"),
        bootstrap=bool(p.bootstrap), bootstrap_features=bool(p.bootstrap_features),
        holdout=holdout,
    )


@dataclass(frozen=True)
class Recipe:
    """What ``batch_size="auto"`` and ``learning_rate="auto"`` resolve to in one fit."""

    batch_size: int
    learning_rate: str
    max_iter: int
    lr_scale: float = 1.0  # learning_rate_init is multiplied by it


def large_epochs(n_rows):
    """``max_iter="auto"`` of members that train on ``n_rows >= LARGE_ROWS`` rows each."""
    return int(np.clip(round(LARGE_ROW_PASSES / n_rows), LARGE_EPOCHS, LARGE_MAX_EPOCHS))


def recipe(p, n_rows, validates=True, partial=False):
    """The size-aware defaults for members that train on ``n_rows`` rows each.

    ``batch_size="auto"``: ``min(64, n_rows)``, and ``LARGE_BATCH`` from ``LARGE_ROWS``
    rows on. ``learning_rate="auto"``: ``"warmup_cosine"`` from ``LARGE_ROWS`` rows on,
    its peak rate ``learning_rate_init * sqrt(batch_size / 64)`` (the square-root rule
    for adaptive optimizers and batch size), and when ``early_stopping="auto"`` finds too
    few rows to validate on (``validates=False``); ``"constant"`` in between (members
    stop on validation rows, or run ``max_iter`` epochs with ``early_stopping=False``),
    and always in ``partial_fit`` (``partial=True``), whose calls have no end to anneal
    towards. ``max_iter="auto"``: the cosine's budget, ``SMALL_EPOCHS`` epochs on small
    data, ``LARGE_ROW_PASSES / n_rows`` epochs within ``[LARGE_EPOCHS, LARGE_MAX_EPOCHS]``
    on large data, and 200 otherwise. Explicit values are kept as given.
    """
    large = n_rows >= LARGE_ROWS
    if p.batch_size != "auto":
        batch = int(p.batch_size)
    else:
        batch = min(LARGE_BATCH if large else AUTO_BATCH, n_rows)
    small = not validates and p.early_stopping == "auto"
    anneal = p.learning_rate == "auto" and not partial and (large or small)
    schedule = "warmup_cosine" if anneal else (
        "constant" if p.learning_rate == "auto" else p.learning_rate)
    scale = float(np.sqrt(batch / AUTO_BATCH)) if anneal and large else 1.0
    if p.max_iter != "auto":
        max_iter = int(p.max_iter)
    else:
        max_iter = (large_epochs(n_rows) if large else SMALL_EPOCHS) if anneal else AUTO_MAX_ITER
    return Recipe(batch_size=batch, learning_rate=schedule, max_iter=max_iter,
                  lr_scale=scale)


def hyper(p, task, n_rows, warn=False):
    """The mathematics of a step (:class:`~skensemble._engine.Hyper`) for ``n_rows``."""
    batch = recipe(p, n_rows).batch_size
    if warn and batch > n_rows:
        _warn.warn(f"Got batch_size={batch} larger than the {n_rows} rows each member "
                   "trains on; it is clipped to that.")
    return _engine.Hyper(
        activation=p.activation, loss=task.loss, solver=p.solver,
        alpha=float(p.alpha), weight_decay=float(p.weight_decay),
        batch_size=max(1, min(batch, n_rows)),
        momentum=float(p.momentum), nesterovs_momentum=bool(p.nesterovs_momentum),
        beta_1=float(p.beta_1), beta_2=float(p.beta_2), epsilon=float(p.epsilon),
        quantiles=tuple(task.quantiles),
    )


def config(p, n_rows, validates=True, stop=True, t_start=0, max_iter=None):
    """How the epoch loop runs (:class:`~skensemble._training.Config`).

    For members that train on ``n_rows`` rows each (:func:`recipe`); ``max_iter``
    overrides the recipe's (partial_fit).
    """
    r = recipe(p, n_rows, validates=validates, partial=max_iter is not None)
    return _training.Config(
        max_iter=r.max_iter if max_iter is None else int(max_iter),
        learning_rate=r.learning_rate,
        learning_rate_init=float(p.learning_rate_init) * r.lr_scale, power_t=float(p.power_t),
        shuffle=bool(p.shuffle), tol=float(p.tol),
        n_iter_no_change=int(p.n_iter_no_change), stop=stop, t_start=int(t_start),
        engine=p.engine, verbose=p.verbose,
        plateau_decays=int(p.plateau_decays), prune=p.prune == "halving",
        prune_keep=float(p.prune_keep),
    )


def pad_groups(p):
    """Whether members of one depth but different widths share one padded group.

    On CUDA yes: one stacked computation keeps the device busy. On the CPU no: the
    engines there compute padding units like any other, so each architecture trains
    as its own group.
    """
    return _dispatch.resolve_device(p.device).type == "cuda"


# ------------------------------------------------------------------------ plan
@dataclass
class Plan:
    """What one call trains, built before anything trains.

    Attributes
    ----------
    mode : str
        ``"fresh"``, ``"more"``, ``"resume"`` or ``"partial"``.
    fitted : FittedEnsemble
        The state the new one starts from: inputs, targets, seeds, archs, features,
        member draws (history and weights as before the call).
    Xs : ndarray (N, F') float32
        The rows as the members read them.
    Y : ndarray (N, O) float64
        Encoded targets.
    sw : ndarray (N,) or None
    sampling : skensemble._sampling.Plan
        The sampling of this call (``partial_fit``: of these rows).
    train : ndarray (E',) int64
        Positions of the members that train.
    rows : ndarray (E', M) int64
    held : list of ndarray or None
    columns : ndarray (E', width) or None
        Their input columns.
    groups : list of Group
        Their initial groups.
    config : skensemble._training.Config
    order_seed : int
    """

    mode: str
    fitted: FittedEnsemble
    Xs: np.ndarray
    Y: np.ndarray
    sw: np.ndarray
    sampling: _sampling.Plan
    train: np.ndarray
    rows: np.ndarray
    held: list
    columns: np.ndarray
    groups: list
    config: _training.Config
    order_seed: int


def fit(p, task, X, y, sw, previous, mode, classes=None, names=None):
    """Plan and execute one fit; returns the new :class:`FittedEnsemble`.

    Parameters
    ----------
    p : Settings
    task : skensemble._tasks.Regression or skensemble._tasks.Classification
    X : ndarray (N, F) float64 or float32
    y : ndarray (N,) or (N, O)
    sw : ndarray (N,) or None
        Sample weights (mean 1).
    previous : FittedEnsemble or None
    mode : str
        ``"fresh"``, ``"more"``, ``"resume"`` or ``"partial"`` (see the module docstring).
    classes : array-like or None
        ``partial_fit``'s ``classes`` on its first call.
    names : ndarray of str or None
        The columns' names (``feature_names_in_``) where ``X`` is a validated matrix.
    """
    p = Settings({**vars(p), "device": _fit_device(p, X)})
    plan = (_plan_partial(p, task, X, y, sw, previous, classes, names) if mode == "partial"
            else _plan_fit(p, task, X, y, sw, previous, mode, names))
    return _execute(p, task, plan, y)


def _fit_device(p, X):
    """``device="auto"`` resolved by the fit's size (:func:`._dispatch.fit_device`).

    Estimated from the estimator's parameters before anything is encoded: each numeric
    column read with its bins (``piecewise_linear``), one output.
    """
    n_rows, n_cols = X.shape[0], X.shape[1]
    width = n_cols * (1 + int(p.n_bins)) if p.numeric_encoding != "none" else n_cols
    hidden = p.hidden_layer_sizes
    hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    batch = recipe(p, n_rows).batch_size
    return _dispatch.fit_device(p.device, int(p.n_estimators), (width, *hidden, 1), batch,
                                n_rows)


def _plan_fit(p, task, X, y, sw, previous, mode, names=None):
    """The plan of ``fit`` (fresh, or a warm start with more or as many members)."""
    warm = mode != "fresh"
    if warm:
        schema, inputs, bin_counts = previous.schema, previous.inputs, previous.bin_counts
        if _n_columns(X) != schema.n_columns:
            raise ValueError("warm_start=True needs the same features as the first fit.")
        A, codes = _split(schema, X)
    else:
        schema, A, codes, inputs, bin_counts = _fit_inputs(p, X, sw, names)
    sampling = sampling_plan(p, A.shape[0], inputs.n_features)
    if p.prune is not None and not early_stopping(p, sampling.n_samples):
        raise ValueError(
            f"prune={p.prune!r} stops members by their validation loss, but this fit "
            "does not validate (early_stopping resolved to False). Set "
            "early_stopping=True (or 'auto' with enough rows), or prune=None.")
    rng = check_random_state(p.random_state)
    seeds = _sampling.draw_seeds(rng, p.n_estimators)
    order_seed = int(rng.randint(_sampling.MAX_SEED))
    old = previous.member_params if warm else None
    params = _hyperspace.draw(p.member_params, seeds, old, classifier=task.loss == "log_loss")
    n_draws = draw_counts(params, sampling)  # each member's rows, or None
    if n_draws is not None:
        sampling = replace(sampling, n_draw=int(n_draws.max()))
    _heldout.check_selection(p.ensemble_selection, sampling, n_draws)
    archs = _architectures(p, params)
    n_old = _check_warm_start(p, previous, archs, sampling) if warm else 0
    targets = previous.targets if warm else task.fit_targets(y, sw)
    keys = _input_keys(p, params, previous, bin_counts, n_old)
    Y = task.encode(y, targets)  # (N, O) float64
    if warm:
        seeds[:n_old] = previous.seeds  # old members keep theirs; new ones get fresh ones
    stratify = task.stratify(y)
    # Warm start with more members trains only the new ones (bagging's meaning); with
    # the same number it continues training all of them (the MLP's meaning).
    train = np.arange(n_old if mode == "more" else 0, p.n_estimators)
    rows, held, feats = _sampling.member_samples(
        seeds[train], sampling, sw if sampling.bootstrap else None, stratify,
        None if n_draws is None else n_draws[train])
    feats = None if sampling.all_features else feats
    features = feats  # every member's: the new ones' after the old ones' (warm start)
    if mode == "more" and feats is not None:
        features = np.concatenate([previous.features, feats])
    fitted = FittedEnsemble(
        schema=schema, inputs=inputs, bin_counts=bin_counts, targets=targets, seeds=seeds,
        plan=sampling,
        groups=previous.groups if warm else [], archs=archs,
        history=previous.history if warm else None, features=features, input_keys=keys,
        member_params=params, sample_weight=sw, stratify=stratify,
        early_stopping=early_stopping(p, sampling.n_samples), activation=p.activation,
        hatching=previous.hatching if warm else None)
    # the statistics' freed temporaries (quantile sample, sorts) go back before the copy
    _predict.trim_heap()
    Xs = fitted.scaled(A, codes)  # (N, F) float32, the one copy the engines read
    del A, codes
    _predict.trim_heap()  # and the copy's
    if mode == "resume":  # same weights, new optimizer (a changed solver or rate takes effect)
        groups = [g.restarted() for g in previous.groups]
    else:
        groups = _new_groups(p, task, fitted, Xs, Y, sw, stratify, train)
    _groups.set_vectors(groups, _hyperspace.vectors(params))
    columns = inputs.columns(feats, None if keys is None else keys[train], train.size)
    return Plan(mode=mode, fitted=fitted, Xs=Xs, Y=Y, sw=sw, sampling=sampling, train=train,
                rows=rows, held=held, columns=columns, groups=groups,
                config=config(p, sampling.n_draw, early_stopping(p, sampling.n_samples)),
                order_seed=order_seed)


def _plan_partial(p, task, X, y, sw, previous, classes, names=None):
    """The plan of one ``partial_fit`` call (the first initialises the members)."""
    if p.ensemble_selection is not None:
        raise ValueError(
            f"ensemble_selection={p.ensemble_selection} weighs members on validation "
            "rows that only fit sets aside; partial_fit has none. Use fit, or set "
            "ensemble_selection=None to train with partial_fit (all members then weigh "
            "the same, but those prune stopped)."
        )
    first = previous is None
    if first:
        schema, A, codes, inputs, bin_counts = _fit_inputs(p, X, sw, names)
        targets = task.fit_targets(y, sw, **({} if classes is None else {"classes": classes}))
    else:
        schema, inputs, bin_counts = previous.schema, previous.inputs, previous.bin_counts
        if _n_columns(X) != schema.n_columns:
            raise ValueError(f"X has {_n_columns(X)} features, but the ensemble was fitted "
                             f"with {schema.n_columns}.")
        A, codes = _split(schema, X)
        targets = previous.targets
    N, F = A.shape[0], inputs.n_features
    Y = task.encode(y, targets)
    n_feat = _sampling.count(p.max_features, F, "max_features")
    if not first:
        n_feat = F if previous.features is None else previous.features.shape[1]
    sampling = _sampling.Plan(N, F, _sampling.count(p.max_samples, N, "max_samples"), n_feat,
                              bool(p.bootstrap), bool(p.bootstrap_features))
    if first:
        E = p.n_estimators
        seeds = _sampling.draw_seeds(check_random_state(p.random_state), E)
        params = _hyperspace.draw(p.member_params, seeds, None,
                                  classifier=task.loss == "log_loss")
        feats = _sampling.member_samples(seeds, sampling)[2]  # features: fixed now
        fitted = FittedEnsemble(
            schema=schema, inputs=inputs, bin_counts=bin_counts, targets=targets, seeds=seeds,
            plan=sampling, groups=[], archs=_architectures(p, params),
            history=_history.History(loss=np.empty((0, E)),
                                     n_iter=np.zeros(E, dtype=np.int64)),
            features=None if sampling.all_features else feats,
            input_keys=_input_keys(p, params, None, bin_counts, 0), member_params=params,
            activation=p.activation)
    else:
        fitted = replace(previous, targets=targets)
    Xs = fitted.scaled(A, codes)
    del A, codes
    E = fitted.n_members
    if first:
        groups = _new_groups(p, task, fitted, Xs, Y, sw, None, np.arange(E))
        _groups.set_vectors(groups, _hyperspace.vectors(fitted.member_params))
    else:
        groups = fitted.groups
    fitted.partial_calls += 1
    seeds = _sampling.call_seeds(fitted.seeds, fitted.partial_calls)  # this call's rows
    n_draws = draw_counts(fitted.member_params, sampling)
    if n_draws is not None:
        sampling = replace(sampling, n_draw=int(n_draws.max()))
    rows, _, _ = _sampling.member_samples(seeds, sampling, sw if sampling.bootstrap else None,
                                          None, n_draws)
    return Plan(mode="partial", fitted=fitted, Xs=Xs, Y=Y, sw=sw, sampling=sampling,
                train=np.arange(E), rows=rows, held=None,
                columns=fitted.columns(fitted.features), groups=groups,
                config=config(p, sampling.n_draw, stop=False, t_start=fitted.t, max_iter=1),
                order_seed=int(seeds[0]))


# ---------------------------------------------------------------------- pieces
def _architectures(p, params):
    """Each member's hidden layers: drawn (``member_params``) or the estimator's."""
    if params is not None and "hidden_layer_sizes" in params[0]:
        return [q["hidden_layer_sizes"] for q in params]
    return _hetero.member_architectures(p.hidden_layer_sizes, p.n_estimators)


def _fit_inputs(p, X, sw, names):
    """Read ``X`` and fit its scaling: ``(schema, A, codes, inputs, bin_counts)``.

    The schema (:mod:`._tabular`) of a table or a numeric matrix, the numeric values
    ``A (N, Fn)`` and codes ``(N, Fc)`` (or None) it splits ``X`` into, the input
    transform fitted on them, and every bin count it encodes.
    """
    if isinstance(X, _dask.Rows):  # a Dask input: read by partitions (:mod:`._dask`)
        schema = X.fit_schema(sw, names)
    elif _tabular.reads_columns(X, p.categorical_features):
        schema = _tabular.fit_schema(X, p.categorical_features, p.max_categories,
                                     p.min_frequency, sw)
    else:
        schema = _tabular.numeric_schema(X, sw, names)
    A, codes = _split(schema, X)
    counts = _hyperspace.bin_counts(p.member_params, p.numeric_encoding, p.n_bins)
    inputs = _scaling.fit_input_transform(
        A, sw, robust=p.input_scaling == "robust",
        n_bins=(None if not counts else counts[0] if len(counts) == 1 else counts),
        levels=schema.n_codes if schema.categorical.size else None)
    return schema, A, codes, inputs, counts  # counts: what members may read


def _split(schema, X):
    """``schema.split(X)``; a Dask input's :class:`~._dask.Rows` split by partitions."""
    return X.split(schema) if isinstance(X, _dask.Rows) else schema.split(X)


def _n_columns(X):
    return X.shape[1]


def _input_keys(p, params, previous, bin_counts, n_old):
    """Each member's input key (``member_params``' ``numeric_encoding``/``n_bins``).

    None where no member drew them. After a warm start the ``n_old`` fitted members
    keep theirs; a new member's bin count must be one the first fit encoded.
    """
    keys = _hyperspace.input_keys(params, p.numeric_encoding, p.n_bins)
    old = previous.input_keys if n_old else None
    if not n_old or keys is None and old is None:
        return keys
    if old is None:
        raise ValueError(
            "warm_start=True keeps the fitted members' inputs: member_params cannot "
            "add 'numeric_encoding' or 'n_bins' after the first fit. Refit with "
            "warm_start=False.")
    if keys is None:  # the space no longer draws them: new members read the estimator's
        keys = np.full(p.n_estimators, _hyperspace.key_of(p.numeric_encoding, p.n_bins),
                       np.int64)
    keys[:n_old] = old[:n_old]
    missing = sorted(set(keys[n_old:].tolist()) - set(bin_counts) - {0})
    if missing:
        raise ValueError(
            f"warm_start=True: new members would read n_bins={missing}, but the first "
            f"fit encoded only {sorted(bin_counts)}. Keep member_params['n_bins'] and the "
            "estimator's n_bins as they were for the first fit, or refit with "
            "warm_start=False.")
    return keys


def _check_warm_start(p, previous, archs, sampling):
    """Number of fitted members a warm start keeps; raises on what it cannot change."""
    n_old = len(previous.archs)
    if p.n_estimators < n_old:
        raise ValueError(
            f"n_estimators={p.n_estimators} must be larger or equal to the "
            f"{n_old} members already fitted when warm_start=True."
        )
    if archs[:n_old] != previous.archs:
        raise ValueError(
            "warm_start=True keeps the fitted members: hidden_layer_sizes must give "
            f"them the same architectures ({previous.archs[:3]}...)."
        )
    if (previous.features is None) != sampling.all_features:
        raise ValueError("warm_start=True cannot change max_features or bootstrap_features.")
    return n_old


def _new_groups(p, task, fitted, Xs, Y, sw, stratify, train):
    """Initial groups of the members ``train``, for every mode that makes new members.

    Random initialisation from each member's seed, or (``init="mothernet"``) hatched
    from MotherNets trained on ``Xs``; members of equal depth share one group.
    """
    sampling, keys = fitted.plan, fitted.input_keys
    archs = [fitted.archs[e] for e in train]
    seeds = fitted.seeds[train]
    n_out = Y.shape[1]
    k = None if sampling.all_features else sampling.n_feat
    n_in = (fitted.inputs.n_inputs(k) if keys is None
            else [fitted.inputs.n_inputs(k, key) for key in keys[train].tolist()])
    settings = _hyperspace.group_settings(fitted.member_params, train)
    acts = (None if settings is None or settings[0].activation is None
            else [s.activation for s in settings])
    if p.init == "mothernet":
        if keys is not None:
            raise ValueError(
                "init='mothernet' grows every member from a MotherNet that reads the "
                "estimator's inputs, so members cannot draw their own: remove "
                "'numeric_encoding' and 'n_bins' from member_params, or use init='random'.")
        if acts is not None:
            raise ValueError(
                "init='mothernet' grows every member from a MotherNet of the estimator's "
                "activation, so members cannot draw their own: remove 'activation' from "
                "member_params, or use init='random'.")
        if not sampling.all_features:
            raise ValueError(
                "init='mothernet' grows every member from a network that sees all "
                "features; use max_features=1.0 and bootstrap_features=False with it."
            )
        rows, fitted.hatching = _mothernets.hatch(
            Xs, Y.astype(np.float32), sw, archs, seeds, _inputs.Encoding.of(fitted.inputs),
            n_mothernets=p.n_mothernets,
            noise=float(p.mothernet_noise), validation_fraction=float(p.validation_fraction),
            stratify=stratify, activation=p.activation, hyper=hyper(p, task, Xs.shape[0]),
            config=config(p, Xs.shape[0], early_stopping(p, Xs.shape[0])),
            device=_dispatch.resolve_device(p.device),
            member_score=task.member_scores,
        )
    else:
        rows = _groups.random_rows(archs, [_sampling.init_seed(s) for s in seeds], n_in,
                                   n_out, acts or p.activation)
    return _groups.make_groups(rows, archs, train, n_in, n_out, p.activation,
                               pad=pad_groups(p), settings=settings)


# --------------------------------------------------------------------- execute
def _execute(p, task, plan, y):
    """Train what ``plan`` says, merge, score the held-out rows; the new fitted state."""
    fitted, sampling = plan.fitted, plan.sampling
    run = _train(p, task, plan)
    fitted.engine, fitted.device, fitted.report = run.engine, run.device, run.report
    history = run.history
    if plan.mode == "partial":
        before = fitted.history
        fitted.history = replace(before, loss=np.concatenate([before.loss, history.loss]),
                                 n_iter=before.n_iter + 1, seconds=history.seconds)
        fitted.groups = run.groups
        fitted.t = int(fitted.t + sampling.n_draw)
        fitted.weights = _heldout.uniform(fitted).weights  # the members changed
        fitted.selection_score = fitted.uniform_score = None
        return fitted
    if plan.mode == "more":
        history = history.beside(fitted.history)
        fitted.groups = _groups.merge_groups(fitted.groups, run.groups, p.activation,
                                             pad=pad_groups(p))
    else:
        if plan.mode == "resume":
            history = history.after(fitted.history)
        fitted.groups = run.groups
    fitted.history = history
    fitted.partial_calls = 0
    fitted.t = int(history.n_iter.max() * sampling.n_draw)
    device = _dispatch.predict_device(p.device)
    fitted.oob = _heldout.oob(fitted, task, plan.Xs, y, device) if p.oob_score else None
    # over all members, old ones too after a warm start
    weights = _heldout.select(fitted, task, plan.Xs, plan.Y, plan.sw, p.ensemble_selection,
                              device)
    fitted.weights = weights.weights
    fitted.selection_score, fitted.uniform_score = weights.selection_score, weights.uniform_score
    # a warm-up + cosine schedule ends at its last epoch by design (its rate reaches 0)
    if history.unconverged and plan.config.learning_rate != "warmup_cosine":
        what = "validation" if fitted.early_stopping else "training"
        _warn.warn(
            f"{history.unconverged} of {len(plan.train)} members reached max_iter="
            f"{plan.config.max_iter} before their {what} loss stopped improving by tol="
            f"{p.tol}; raise max_iter or tol to silence this.",
            ConvergenceWarning,
        )
    return fitted


def _train(p, task, plan):
    """Train the plan's groups (in chunks of members over workers with ``n_jobs``)."""
    sampling, train = plan.sampling, plan.train
    n_chunks = _parallel.n_chunks(p.n_jobs, len(train))
    val_mask = None
    if plan.config.stop and early_stopping(p, sampling.n_samples):
        if sampling.holdout is not None:  # each member validates on the rows it held out
            val_mask = _sampling.held_mask(plan.held, sampling.n_samples)
        else:  # ... or on its own out-of-bag rows
            val_mask = ~_sampling.in_bag_mask(plan.rows, sampling.n_samples)
    shared = _parallel.Shared(
        X=plan.Xs, Y=plan.Y.astype(np.float32),
        loss_weight=None if sampling.bootstrap else plan.sw, val_weight=plan.sw,
        label_smoothing=task.label_smoothing,
        encoding=_inputs.Encoding.of(plan.fitted.inputs))
    members = _parallel.Members(positions=train, rows=plan.rows, columns=plan.columns,
                                val_mask=val_mask)
    run = _parallel.train(plan.groups, shared, members,
                          hyper(p, task, sampling.n_draw, warn=True), plan.config,
                          p.device, plan.order_seed, task.member_scores, n_chunks)
    if p.verbose and run.report.n_chunks > 1:
        r = run.report
        sent = "" if r.seconds_sending is None else f", {r.seconds_sending:.2f} s sending data"
        print(f"{r.n_chunks} chunks of members on {r.backend}: {r.seconds:.2f} s{sent}")
    return run
