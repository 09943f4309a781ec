"""BaseNeuralBagging: parameters, validation and the orchestration of fit and predict.

Owns: the estimator's parameters and their constraints, input validation, the three fit
modes (fresh, warm start with more members, resumed training) and ``partial_fit``, all
through one group set-up and one training call; the fitted attributes, bagging's
recomputed draws and pickling. Out-of-bag scores and ensemble selection are the
:class:`~skensemble._heldout.HeldOutRows` mixin's, member access and export the
:class:`~skensemble._members.FittedMembers` mixin's. The task classes (:mod:`._regressor`,
:mod:`._classifier`) say how targets become a float matrix ``Y (N, O)``, which loss
trains the members and how member outputs are aggregated.

Must not hold training mechanics: the epoch loop lives in :mod:`._training`, scaling in
:mod:`._scaling`, the forward pass of a fitted ensemble in :mod:`._predict`, MotherNets
in :mod:`._mothernets`, device/engine/thread choices in :mod:`._dispatch`.
"""

import functools
from abc import ABCMeta, abstractmethod
from dataclasses import replace
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, _fit_context, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import (
    _dispatch,
    _engine,
    _hetero,
    _hyperspace,
    _mothernets,
    _parallel,
    _predict,
    _sampling,
    _scaling,
    _training,
    _version,
    _warn,
)
from ._heldout import HeldOutRows
from ._members import FittedMembers

_FLOAT = (np.float64, np.float32)
# batch_size="auto": small enough for the member-major kernels (_dispatch.MEMBER_MAJOR_MAX_BATCH)
# and, on the tuning half of benchmarks/bench_quality.py, better than 200 (the MLP's).
AUTO_BATCH = 64


def _apply_member_params(groups, params):
    """Give each group its members' own learning rates and L2 strengths (in place)."""
    if params is None:
        return
    for g in groups:
        drawn = [params[int(m)] for m in g.members]
        if "learning_rate_init" in drawn[0]:
            g.lr = np.array([p["learning_rate_init"] for p in drawn], dtype=np.float64)
        if "alpha" in drawn[0]:
            g.alpha = np.array([p["alpha"] for p in drawn], dtype=np.float64)


def _all_or_nothing(fit):
    """``fit`` that leaves the estimator exactly as it was when it raises.

    A worker that died, ``KeyboardInterrupt`` with ``n_jobs``, any error: no partly
    fitted state remains.
    """

    @functools.wraps(fit)
    def wrapper(self, *args, **kwargs):
        before = dict(self.__dict__)  # fit replaces attributes; it never mutates them
        try:
            return fit(self, *args, **kwargs)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise

    return wrapper


class BaseNeuralBagging(HeldOutRows, FittedMembers, BaseEstimator, metaclass=ABCMeta):
    """Shared machinery of :class:`NeuralBaggingRegressor` and :class:`NeuralBaggingClassifier`.

    Not for direct use: it has no loss of its own.
    """

    _parameter_constraints = {
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(_engine.ACTIVATIONS))],
        "solver": [StrOptions(set(_engine.SOLVERS))],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive", "warmup_cosine"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "member_params": [None, StrOptions({"auto"}), dict],
        "plateau_decays": [Interval(Integral, 0, None, closed="left")],
        "prune": [None, StrOptions({"halving"})],
        "prune_keep": [Interval(Real, 0, 1, closed="right")],
        "early_stopping": [StrOptions({"auto"}), "boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "bootstrap": ["boolean"],
        "max_samples": [
            Interval(Integral, 1, None, closed="left"),
            Interval(Real, 0, 1, closed="right"),
        ],
        "max_features": [
            Interval(Integral, 1, None, closed="left"),
            Interval(Real, 0, 1, closed="right"),
        ],
        "bootstrap_features": ["boolean"],
        "input_scaling": [StrOptions({"standard", "robust"})],
        "numeric_encoding": [StrOptions({"none", "piecewise_linear"})],
        "n_bins": [Interval(Integral, 2, None, closed="left")],
        "oob_score": ["boolean"],
        "ensemble_selection": [None, Interval(Integral, 1, None, closed="left")],
        "warm_start": ["boolean"],
        "init": [StrOptions({"random", "mothernet"})],
        "n_mothernets": [Interval(Integral, 1, None, closed="left")],
        "mothernet_noise": [Interval(Real, 0, None, closed="left")],
        "n_jobs": [None, Integral],
        "random_state": ["random_state"],
        "device": [str],
        "engine": [StrOptions({"auto", *_dispatch.ENGINES})],
        "verbose": ["verbose"],
    }

    _loss = None  # "squared_error" or "log_loss", set by the task class
    _multi_output = True  # whether y may be 2-D

    def __init__(
        self,
        n_estimators=10,
        *,
        hidden_layer_sizes=(100,),
        activation="relu",
        solver="adam",
        alpha=1e-4,
        weight_decay=0.0,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=2e-3,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        tol=1e-4,
        n_iter_no_change=10,
        plateau_decays=0,
        prune=None,
        prune_keep=0.5,
        early_stopping="auto",
        validation_fraction=0.1,
        momentum=0.9,
        nesterovs_momentum=True,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        bootstrap=False,
        max_samples=1.0,
        max_features=1.0,
        bootstrap_features=False,
        input_scaling="robust",
        numeric_encoding="piecewise_linear",
        n_bins=8,
        oob_score=False,
        ensemble_selection=None,
        member_params=None,
        warm_start=False,
        init="random",
        n_mothernets=1,
        mothernet_noise=0.01,
        n_jobs=None,
        random_state=None,
        device="auto",
        engine="auto",
        verbose=0,
    ):
        self.n_estimators = n_estimators
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.plateau_decays = plateau_decays
        self.prune = prune
        self.prune_keep = prune_keep
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.bootstrap = bootstrap
        self.max_samples = max_samples
        self.max_features = max_features
        self.bootstrap_features = bootstrap_features
        self.input_scaling = input_scaling
        self.numeric_encoding = numeric_encoding
        self.n_bins = n_bins
        self.oob_score = oob_score
        self.ensemble_selection = ensemble_selection
        self.member_params = member_params
        self.warm_start = warm_start
        self.init = init
        self.n_mothernets = n_mothernets
        self.mothernet_noise = mothernet_noise
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.device = device
        self.engine = engine
        self.verbose = verbose

    # ------------------------------------------------------------ task hooks
    @abstractmethod
    def _encode_targets(self, y, sample_weight, reset):
        """Check ``y``, set (``reset``) or check target attributes, return ``Y (N, O)`` float64."""

    @abstractmethod
    def _transform_outputs(self, out):
        """Members' raw outputs ``(E, n, O)`` -> what is averaged (float64 tensor)."""

    @abstractmethod
    def _member_scores(self, out, Y, weight):
        """Per-member validation score ``(E,)`` (higher is better) from raw outputs."""

    @abstractmethod
    def _set_oob(self, mean, has_oob, y):
        """Set ``oob_score_`` and the task's out-of-bag attribute from ``mean (N, O)``."""

    @abstractmethod
    def _selection_values(self, out, Y):
        """What members contribute to a row's average for selection: ``(E, n, D)`` float64.

        ``out (E, n, O)`` are transformed outputs, ``Y (n, O)`` the encoded targets.
        """

    @abstractmethod
    def _selection_loss(self, mean, Y):
        """Loss ``(n,)`` of each row's averaged values ``mean (n, D)`` against ``Y (n, O)``."""

    def _stratify_labels(self, y):
        return None

    def _training_targets(self, Y):
        """The targets ``(N, O)`` the members fit, from the encoded ``Y`` (here: ``Y``)."""
        return Y

    # ------------------------------------------------------------- set-up
    def _count(self, value, total, name):
        """``max_samples``/``max_features`` as a count out of ``total``."""
        if isinstance(value, Integral) and not isinstance(value, bool):
            if value > total:
                raise ValueError(
                    f"{name}={value} is larger than the {total} available; pass a fraction "
                    "in (0, 1] or a smaller count."
                )
            return int(value)
        return max(1, int(value * total))

    def _hyper(self, n_rows, warn=False):
        """The mathematics of a step (:class:`~skensemble._engine.Hyper`) for ``n_rows``."""
        batch = min(AUTO_BATCH, n_rows) if self.batch_size == "auto" else int(self.batch_size)
        if warn and batch > n_rows:
            _warn.warn(f"Got batch_size={batch} larger than the {n_rows} rows each member "
                       "trains on; it is clipped to that.")
        return _engine.Hyper(
            activation=self.activation, loss=self._loss, solver=self.solver,
            alpha=float(self.alpha), weight_decay=float(self.weight_decay),
            batch_size=max(1, min(batch, n_rows)),
            momentum=float(self.momentum), nesterovs_momentum=bool(self.nesterovs_momentum),
            beta_1=float(self.beta_1), beta_2=float(self.beta_2), epsilon=float(self.epsilon),
        )

    def _config(self, max_iter, stop=True, t_start=0):
        """How the epoch loop runs (:class:`~skensemble._training.Config`)."""
        return _training.Config(
            max_iter=int(max_iter), learning_rate=self.learning_rate,
            learning_rate_init=float(self.learning_rate_init), power_t=float(self.power_t),
            shuffle=bool(self.shuffle), tol=float(self.tol),
            n_iter_no_change=int(self.n_iter_no_change), stop=stop, t_start=int(t_start),
            engine=self.engine, verbose=self.verbose,
            plateau_decays=int(self.plateau_decays), prune=self.prune == "halving",
            prune_keep=float(self.prune_keep),
        )

    def _validate_fit_data(self, X, y, sample_weight, reset):
        X, y = validate_data(
            self, X, y, dtype=_FLOAT, multi_output=self._multi_output,
            y_numeric=self._loss == "squared_error", reset=reset,
        )
        sw = None
        if sample_weight is not None:
            sw = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
            if not np.any(sw > 0):
                raise ValueError("sample_weight has no positive entry; nothing to fit.")
            sw = sw / sw.mean()  # mean 1: the learning rate keeps its meaning
        return X, y, sw

    # early_stopping="auto" stops members on held-out rows when each would hold out at
    # least this many (n_samples >= 200 at validation_fraction=0.1): fewer make the
    # validation loss too noisy to choose epochs by, and cost scarce training rows.
    AUTO_MIN_VALIDATION_ROWS = 20

    def _early_stopping(self, n_samples):
        """Whether members stop on validation rows (``early_stopping`` resolved)."""
        if self.early_stopping != "auto":
            return bool(self.early_stopping)
        return bool(np.ceil(self.validation_fraction * n_samples)
                    >= self.AUTO_MIN_VALIDATION_ROWS)

    def _plan(self, n_samples, n_features):
        """How members sample rows and features (:class:`~skensemble._sampling.Plan`)."""
        holdout = None
        # Members stop on rows they hold out when there are no out-of-bag rows (no
        # bootstrap), and also with oob_score=True: stopping on the out-of-bag rows would
        # pick each member's weights by the very rows oob_score_ then scores.
        if self._early_stopping(n_samples) and (not self.bootstrap or self.oob_score):
            holdout = float(self.validation_fraction)
            n_held = int(np.ceil(holdout * n_samples))
            if n_held < 2 or n_samples - n_held < 1:
                raise ValueError(
                    f"The validation set is too small: early_stopping with "
                    f"validation_fraction={self.validation_fraction} holds out {n_held} of "
                    f"{n_samples} rows per member and needs at least 2, with rows left to "
                    "train on. Increase validation_fraction, use more data, or set "
                    "early_stopping=False."
                )
            n_pool = n_samples - n_held
        else:
            n_pool = n_samples
        return _sampling.Plan(
            n_samples=n_samples, n_features=n_features,
            n_draw=self._count(self.max_samples, n_pool, "max_samples"),
            n_feat=self._count(self.max_features, n_features, "max_features"),
            bootstrap=bool(self.bootstrap), bootstrap_features=bool(self.bootstrap_features),
            holdout=holdout,
        )

    def _fit_inputs(self, X, sw):
        """Fit the input transform (standardisation, robust clipping, encoding) on ``X``."""
        counts = _hyperspace.bin_counts(self.member_params, self.numeric_encoding, self.n_bins)
        self._bin_counts = counts  # what members may read (a feature may get no bins)
        self._input = _scaling.fit_input_transform(
            X, sw, robust=self.input_scaling == "robust",
            n_bins=(None if not counts else counts[0] if len(counts) == 1 else counts))

    def _columns(self, features, members=None):
        """Input columns ``(E', width)`` the members (``members``; None: all) read, or None.

        ``features``: those members' feature subsets (or None). Members that drew their
        own ``numeric_encoding``/``n_bins`` read their own bins (``_input_keys``).
        """
        keys = getattr(self, "_input_keys", None)
        if keys is not None and members is not None:
            keys = keys[members]
        return self._input.columns(features, keys)

    def _standardise(self, X):
        """``X`` as the members read it (:class:`~skensemble._scaling.InputTransform`)."""
        with np.errstate(over="ignore", invalid="ignore"):
            Xs = self._input.apply(X)
        if not np.isfinite(Xs).all():
            raise ValueError(
                "X has values too large for the network's float32 arithmetic after "
                "standardisation with the training data's mean and scale."
            )
        return Xs

    # --------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=True)
    @_all_or_nothing
    def fit(self, X, y, sample_weight=None):
        """Train all members at once.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data. Sparse matrices are not supported.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights. With ``bootstrap=True`` each member draws its rows with
            probability proportional to the weights (scikit-learn's bagging semantics);
            otherwise they weight each row's training and validation loss. Either way,
            rows of weight zero contribute nothing to any gradient or stopping decision
            (without bootstrap they still occupy batch slots, which sets the batch's
            divisor).

        Returns
        -------
        self : object
            The fitted estimator.
        """
        if self.oob_score and not self.bootstrap:
            raise ValueError("Out of bag estimation only available if bootstrap=True.")
        warm = self.warm_start and hasattr(self, "_groups")
        X, y, sw = self._validate_fit_data(X, y, sample_weight, reset=True)
        plan = self._plan(*X.shape)
        if self.prune is not None and not self._early_stopping(plan.n_samples):
            raise ValueError(
                f"prune={self.prune!r} stops members by their validation loss, but this fit "
                "does not validate (early_stopping resolved to False). Set "
                "early_stopping=True (or 'auto' with enough rows), or prune=None.")
        rng = check_random_state(self.random_state)
        seeds = _sampling.draw_seeds(rng, self.n_estimators)
        order_seed = int(rng.randint(_sampling.MAX_SEED))
        params = self._draw_member_params(seeds, warm)  # None, or one dict per member
        n_draws = self._draw_counts(params, plan)  # each member's rows, or None
        if n_draws is not None:
            plan = replace(plan, n_draw=int(n_draws.max()))
        self._check_selection(plan, n_draws)
        archs = _hetero.member_architectures(self.hidden_layer_sizes, self.n_estimators)
        if params is not None and "hidden_layer_sizes" in params[0]:
            archs = [p["hidden_layer_sizes"] for p in params]
        n_old = self._check_warm_start(archs, X, plan) if warm else 0
        if not warm:
            self._fit_inputs(X, sw)
        keys = self._member_input_keys(params, n_old)
        Y = self._encode_targets(y, sw, reset=not warm)  # (N, O) float64
        Xs = self._standardise(X)  # (N, F) float32, the one copy the engines read
        if warm:
            seeds[:n_old] = self._seeds  # old members keep theirs; new ones get fresh ones
        stratify = self._stratify_labels(y)
        # Warm start with more members trains only the new ones (bagging's meaning);
        # with the same number it continues training all of them (the MLP's meaning).
        resume = warm and self.n_estimators == n_old
        train = np.arange(n_old if warm and not resume else 0, self.n_estimators)
        rows, held, feats = _sampling.member_samples(
            seeds[train], plan, sw if plan.bootstrap else None, stratify,
            None if n_draws is None else n_draws[train])
        feats = None if plan.all_features else feats
        if resume:  # same weights, new optimizer (a changed solver or rate takes effect)
            groups = [g.restarted() for g in self._groups]
        else:
            groups = self._new_groups(Xs, Y, sw, stratify, [archs[e] for e in train],
                                      seeds[train], train, plan,
                                      _hyperspace.kinds(params, train),
                                      None if keys is None else keys[train])
        _apply_member_params(groups, params)
        groups, history = self._train_groups(
            groups, Xs, Y, sw, plan, train, rows, held,
            self._input.columns(feats, None if keys is None else keys[train]),
            self._config(self.max_iter), order_seed)
        if warm and not resume:
            history = history.beside(self._history())
            groups = _training.merge_groups(self._groups, groups, self.activation,
                                            pad=self._pad_groups())
            feats = None if feats is None else np.concatenate([self._features, feats])
        elif resume:
            history = history.after(self._history())
        self._seeds, self._plan_, self._groups, self._features = seeds, plan, groups, feats
        self._input_keys = keys
        self._sample_weight, self._stratify, self._partial_calls = sw, stratify, 0
        self.hidden_layer_sizes_ = archs
        self._set_member_params(params)
        self.early_stopping_ = self._early_stopping(plan.n_samples)
        self._set_history(history, plan.n_draw)
        if self.oob_score:
            self._compute_oob(Xs, y)
        self._select_members(Xs, Y, sw)  # over all members, old ones too after a warm start
        if history.unconverged:
            what = "validation" if self.early_stopping_ else "training"
            _warn.warn(
                f"{history.unconverged} of {len(train)} members reached max_iter="
                f"{self.max_iter} before their {what} loss stopped improving by tol="
                f"{self.tol}; raise max_iter or tol to silence this.",
                ConvergenceWarning,
            )
        return self

    def _draw_member_params(self, seeds, warm):
        """Each member's own hyperparameters (``member_params``): a list of dicts, or None.

        After a warm start the fitted members keep the values they had.
        """
        old = getattr(self, "member_params_", None) if warm else None
        return _hyperspace.draw(self.member_params, seeds, old,
                                classifier=self._loss == "log_loss")

    def _draw_counts(self, params, plan):
        """Each member's own number of rows (``member_params['max_samples']``), or None."""
        counts = _hyperspace.values(params, "max_samples")
        if counts is None:
            return None
        return np.array([self._count(v, plan.n_pool, "member_params['max_samples']")
                         for v in counts], dtype=np.int64)

    def _member_input_keys(self, params, n_old=0):
        """Each member's input key (``member_params``' ``numeric_encoding``/``n_bins``).

        None where no member drew them. After a warm start the ``n_old`` fitted members
        keep theirs; a new member's bin count must be one the first fit encoded.
        """
        keys = _hyperspace.input_keys(params, self.numeric_encoding, self.n_bins)
        old = getattr(self, "_input_keys", None) if n_old else None
        if not n_old or keys is None and old is None:
            return keys
        if old is None:
            raise ValueError(
                "warm_start=True keeps the fitted members' inputs: member_params cannot "
                "add 'numeric_encoding' or 'n_bins' after the first fit. Refit with "
                "warm_start=False.")
        if keys is None:  # the space no longer draws them: new members read the estimator's
            keys = np.full(self.n_estimators,
                           _hyperspace.key_of(self.numeric_encoding, self.n_bins), np.int64)
        keys[:n_old] = old[:n_old]
        encoded = set(getattr(self, "_bin_counts", []))
        missing = sorted(set(keys[n_old:].tolist()) - encoded - {0})
        if missing:
            raise ValueError(
                f"warm_start=True: new members would read n_bins={missing}, but the first "
                f"fit encoded only {sorted(encoded)}. Keep member_params['n_bins'] and the "
                "estimator's n_bins as they were for the first fit, or refit with "
                "warm_start=False.")
        return keys

    def _set_member_params(self, params):
        """``member_params_``: each member's drawn values (absent without member_params)."""
        if params is None:
            self.__dict__.pop("member_params_", None)
        else:
            self.member_params_ = [dict(p) for p in params]

    def _check_warm_start(self, archs, X, plan):
        """Number of fitted members a warm start keeps; raises on what it cannot change."""
        n_old = len(self.hidden_layer_sizes_)
        if self.n_estimators < n_old:
            raise ValueError(
                f"n_estimators={self.n_estimators} must be larger or equal to the "
                f"{n_old} members already fitted when warm_start=True."
            )
        if archs[:n_old] != self.hidden_layer_sizes_:
            raise ValueError(
                "warm_start=True keeps the fitted members: hidden_layer_sizes must give "
                f"them the same architectures ({self.hidden_layer_sizes_[:3]}...)."
            )
        if X.shape[1] != self._input.mean.size:
            raise ValueError("warm_start=True needs the same features as the first fit.")
        if (self._features is None) != plan.all_features:
            raise ValueError("warm_start=True cannot change max_features or bootstrap_features.")
        return n_old

    def _new_groups(self, Xs, Y, sw, stratify, archs, seeds, positions, plan, kinds=None,
                    keys=None):
        """Initial groups of new members, shared by fit, warm start and partial_fit.

        Random initialisation from each member's seed, or (``init="mothernet"``) hatched
        from MotherNets trained on ``Xs``; members of equal depth share one group.
        ``kinds``: each member's own ``(activation, label_smoothing, weight_decay)``
        (``member_params``), or None. ``keys``: each member's input key, or None.
        """
        n_out = Y.shape[1]
        k = None if plan.all_features else plan.n_feat
        n_in = (self._input.n_inputs(k) if keys is None
                else [self._input.n_inputs(k, key) for key in keys.tolist()])
        if self.init == "mothernet" and keys is not None:
            raise ValueError(
                "init='mothernet' grows every member from a MotherNet that reads the "
                "estimator's inputs, so members cannot draw their own: remove "
                "'numeric_encoding' and 'n_bins' from member_params, or use init='random'.")
        acts = None if kinds is None or kinds[0][0] is None else [k[0] for k in kinds]
        if self.init == "mothernet" and acts is not None:
            raise ValueError(
                "init='mothernet' grows every member from a MotherNet of the estimator's "
                "activation, so members cannot draw their own: remove 'activation' from "
                "member_params, or use init='random'.")
        if self.init == "mothernet":
            if not plan.all_features:
                raise ValueError(
                    "init='mothernet' grows every member from a network that sees all "
                    "features; use max_features=1.0 and bootstrap_features=False with it."
                )
            rows, hatching = _mothernets.hatch(
                Xs, Y.astype(np.float32), sw, archs, seeds, n_mothernets=self.n_mothernets,
                noise=float(self.mothernet_noise),
                validation_fraction=float(self.validation_fraction), stratify=stratify,
                activation=self.activation, hyper=self._hyper(Xs.shape[0]),
                config=self._config(self.max_iter),
                device=_dispatch.resolve_device(self.device), member_score=self._member_scores,
            )
            self.mothernet_hidden_layer_sizes_ = hatching.hidden_layer_sizes
            self.mothernet_labels_ = hatching.labels
            self.mothernet_n_iter_ = hatching.n_iter
            self.mothernet_fit_time_ = hatching.fit_time
        else:
            rows = _training.random_rows(archs, [_sampling.init_seed(s) for s in seeds],
                                         n_in, n_out, acts or self.activation)
        return _training.make_groups(rows, archs, positions, n_in, n_out, self.activation,
                                     pad=self._pad_groups(), kinds=kinds)

    def _pad_groups(self):
        """Whether members of one depth but different widths share one padded group.

        On CUDA yes: one stacked computation keeps the device busy. On the CPU no: the
        engines there compute padding units like any other, so each architecture trains
        as its own group.
        """
        return _dispatch.resolve_device(self.device).type == "cuda"

    def _train_groups(self, groups, Xs, Y, sw, plan, positions, rows, held, feats, config,
                      seed):
        """Train every group once; returns the trained groups and one history.

        ``positions (E,)`` (sorted) are the members being trained; ``rows``, ``held``
        and ``feats`` are theirs, in that order.
        """
        n_chunks = _parallel.n_chunks(self.n_jobs, len(positions))
        hyper = self._hyper(plan.n_draw, warn=True)
        val_mask = None
        if config.stop and self._early_stopping(plan.n_samples):
            if plan.holdout is not None:  # each member validates on the rows it held out
                val_mask = _sampling.held_mask(held, plan.n_samples)
            else:  # ... or on its own out-of-bag rows
                val_mask = ~_sampling.in_bag_mask(rows, plan.n_samples)
        Y32 = Y.astype(np.float32)
        Y_fit = self._training_targets(Y).astype(np.float32)  # what the members fit
        Y_val = None if np.array_equal(Y_fit, Y32) else Y32  # validate on the true targets
        shared = _parallel.Shared(X=Xs, Y=Y_fit, loss_weight=None if plan.bootstrap else sw,
                                  val_weight=sw, Y_val=Y_val)
        members = _parallel.Members(positions=positions, rows=rows, features=feats,
                                    val_mask=val_mask)
        # Workers get the scores of an unfitted copy: pickling self would send its state.
        score = self._member_scores if n_chunks == 1 else clone(self)._member_scores
        run = _parallel.train(groups, shared, members, hyper, config, self.device, seed,
                              score, n_chunks)
        self.engine_, self.device_, self._parallel_report = run.engine, run.device, run.report
        if self.verbose and run.report.n_chunks > 1:
            r = run.report
            sent = "" if r.seconds_sending is None else f", {r.seconds_sending:.2f} s sending data"
            print(f"{r.n_chunks} chunks of members on {r.backend}: {r.seconds:.2f} s{sent}")
        return run.groups, run.history

    def _history(self):
        """The fitted curves as a :class:`~skensemble._training.History`."""
        return _training.History(
            loss=self.loss_curve_, n_iter=self.n_iter_per_member_,
            val_loss=getattr(self, "validation_loss_curve_", None),
            val_score=getattr(self, "validation_scores_", None),
            best=getattr(self, "best_validation_loss_", None),
            stop_reason=getattr(self, "stop_reason_", None),
        )

    def _set_history(self, history, n_draw):
        self.loss_curve_ = history.loss
        self.n_iter_per_member_ = history.n_iter
        self.n_iter_ = int(self.n_iter_per_member_.max())
        self.t_ = int(self.n_iter_ * n_draw)
        self.fit_time_ = history.seconds
        for name, value in (("validation_loss_curve_", history.val_loss),
                            ("validation_scores_", history.val_score),
                            ("best_validation_loss_", history.best),
                            ("stop_reason_", history.stop_reason)):
            if value is None:
                self.__dict__.pop(name, None)  # no stale curves from an earlier fit
            else:
                setattr(self, name, value)

    # ------------------------------------------------------- partial_fit
    def _partial_fit(self, X, y, sample_weight, classes=None):
        """One more epoch for every member on ``(X, y)``; initialises on the first call."""
        if self.ensemble_selection is not None:
            raise ValueError(
                f"ensemble_selection={self.ensemble_selection} weighs members on validation "
                "rows that only fit sets aside; partial_fit has none. Use fit, or set "
                "ensemble_selection=None to train with partial_fit (all members then weigh "
                "the same, but those prune stopped)."
            )
        first = not hasattr(self, "_groups")
        X, y, sw = self._validate_fit_data(X, y, sample_weight, reset=first)
        if first:
            self._fit_inputs(X, sw)
            if classes is not None:
                self.classes_ = np.unique(classes)
        Y = self._encode_targets(y, sw, reset=first and classes is None)
        Xs = self._standardise(X)
        E = self.n_estimators if first else len(self._seeds)
        if not first and X.shape[1] != self._input.mean.size:
            raise ValueError(f"X has {X.shape[1]} features, but the ensemble was fitted with "
                             f"{self._input.mean.size}.")
        n_feat = self._count(self.max_features, X.shape[1], "max_features")
        if not first:
            n_feat = X.shape[1] if self._features is None else self._features.shape[1]
        plan = _sampling.Plan(X.shape[0], X.shape[1],
                              self._count(self.max_samples, X.shape[0], "max_samples"),
                              n_feat, bool(self.bootstrap), bool(self.bootstrap_features))
        if first:
            self._seeds = _sampling.draw_seeds(check_random_state(self.random_state), E)
            params = self._draw_member_params(self._seeds, False)
            archs = _hetero.member_architectures(self.hidden_layer_sizes, E)
            if params is not None and "hidden_layer_sizes" in params[0]:
                archs = [p["hidden_layer_sizes"] for p in params]
            feats = _sampling.member_samples(self._seeds, plan)[2]  # features: fixed now
            self._features = None if plan.all_features else feats
            self._input_keys = self._member_input_keys(params)
            self._groups = self._new_groups(Xs, Y, sw, None, archs, self._seeds, np.arange(E),
                                            plan, _hyperspace.kinds(params), self._input_keys)
            _apply_member_params(self._groups, params)
            self._set_member_params(params)
            self.hidden_layer_sizes_ = archs
            self._partial_calls, self._plan_ = 0, plan
            self.early_stopping_ = False  # partial_fit runs exactly one epoch per call
            self._sample_weight, self._stratify = None, None
            self.loss_curve_ = np.empty((0, E))
            self.n_iter_per_member_ = np.zeros(E, dtype=np.int64)
            self.t_ = 0
        self._partial_calls += 1
        seeds = _sampling.call_seeds(self._seeds, self._partial_calls)  # this call's rows
        n_draws = self._draw_counts(getattr(self, "member_params_", None), plan)
        if n_draws is not None:
            plan = replace(plan, n_draw=int(n_draws.max()))
        rows, _, _ = _sampling.member_samples(seeds, plan, sw if plan.bootstrap else None,
                                              None, n_draws)
        self._groups, history = self._train_groups(
            self._groups, Xs, Y, sw, plan, np.arange(E), rows, None,
            self._columns(self._features),
            self._config(1, stop=False, t_start=self.t_), int(seeds[0]))
        self.fit_time_ = history.seconds
        self.loss_curve_ = np.concatenate([self.loss_curve_, history.loss])
        self.n_iter_per_member_ = self.n_iter_per_member_ + 1
        self.n_iter_ = int(self.n_iter_per_member_.max())
        self.t_ = int(self.t_ + plan.n_draw)
        self._set_uniform_weights()  # the members changed: no selection holds any more
        return self

    # ------------------------------------------------------------- predict
    def _predict_device(self):
        """The device to predict on: ``device``, or the CPU where CUDA is not available.

        A model fitted on CUDA keeps its weights on the CPU, so it predicts anywhere.
        """
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            _warn.warn(f"device={self.device!r} but CUDA is not available here; predicting "
                       "on the CPU. Set device='cpu' (or 'auto') to silence this.")
            return torch.device("cpu")
        return _dispatch.resolve_device(self.device)

    def _member_outputs(self, X, reduce, transform=True, weighted=False):
        """Validate ``X``, run the members in row chunks, concatenate ``reduce``d chunks.

        ``reduce`` receives the members' transformed outputs ``(E, n, O)`` (float64), or
        their raw outputs with ``transform=False``. With ``weighted``, only the members
        of positive ``ensemble_weights_`` run (zero-weight members are not computed),
        and ``reduce(out, weights)`` also receives their weights ``(E',)`` (a float64
        tensor on ``out``'s device), or None when every member runs with equal weight.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=_FLOAT, reset=False)
        Xs = self._standardise(X)
        fn = self._transform_outputs if transform else (lambda out: out.double())
        if weighted:
            groups, columns, weights = self._selected_members()
        else:
            groups, columns, weights = self._groups, self._columns(self._features), None
        device = self._predict_device()
        w = None if weights is None else torch.from_numpy(weights).to(device)

        def call(out, rows):
            return reduce(fn(out), w) if weighted else reduce(fn(out))

        work = X.shape[0] * sum(g.flat.size for g in groups)
        with _dispatch.thread_limit(_dispatch.default_threads(work), "batched"):
            return _predict.run_chunked(groups, columns,
                                        self.activation, Xs, device, call)

    def __getstate__(self):
        state = super().__getstate__()
        if hasattr(self, "_groups"):
            state["_skensemble_format"] = _version.FORMAT
            state["_skensemble_version"] = _version.__version__
        return state

    def __setstate__(self, state):
        if "_groups" in state:
            fmt = state.get("_skensemble_format")
            if fmt != _version.FORMAT:
                raise ValueError(
                    f"This {type(self).__name__} was saved by skensemble "
                    f"{state.get('_skensemble_version', '< 0.1')} (model format {fmt}); this is "
                    f"skensemble {_version.__version__} (format {_version.FORMAT}), which "
                    "cannot read it. Load it with the version that saved it, or refit."
                )
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        return tags

    @staticmethod
    def _check_finite(values):
        """Never hand back NaN/inf silently."""
        if not np.all(np.isfinite(values)):
            raise ValueError(
                "The ensemble produced non-finite outputs for this X: its values are far "
                "outside the range seen in training or the members' weights overflowed."
            )
