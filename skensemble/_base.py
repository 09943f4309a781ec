"""BaseNeuralBagging: parameters, validation, fit orchestration, numpy <-> torch bridge.

The task classes (:mod:`._regressor`, :mod:`._classifier`) only say how targets become
a float matrix ``Y (N, O)``, which loss trains the members, and how member outputs are
aggregated. Everything else (scaling, sampling, the epoch loop with per-member stopping,
device and engine choice, chunked prediction) lives here, once.
"""

import functools
import time
import warnings
from abc import ABCMeta, abstractmethod
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import _dispatch, _engine, _hetero, _sampling, _version
from ._progress import progress

_FLOAT = (np.float64, np.float32)


_CHUNK = 65536  # rows per pass over big arrays: temporaries stay small


def _weighted_standardisation(A, weight):
    """Column means, scales and units of ``A (N, D)`` under row weights (None: equal).

    Standardised values are ``(A / unit - mean / unit) / (scale / unit)``. Working in
    units of each column's largest magnitude keeps every intermediate finite for values
    up to float64's limits, and keeps tiny columns (1e-30) from underflowing. Two passes
    in row chunks, so no temporary of ``A``'s size is made.

    A column whose spread is below 1e-12 of its magnitude is constant up to rounding:
    it gets its magnitude as scale, so what remains after centring is ~1e-12 or less
    instead of rounding noise blown up to signal.

    Returns
    -------
    mean, scale, unit : ndarray (D,)
    constant : ndarray (D,) bool
    """
    n = A.shape[0]
    w = np.ones(n) if weight is None else np.asarray(weight, dtype=np.float64)
    total = w.sum()
    unit = np.zeros(A.shape[1])
    for s in range(0, n, _CHUNK):
        unit = np.maximum(unit, np.abs(A[s : s + _CHUNK]).max(axis=0))
    unit = np.where(unit > 0, unit, 1.0)
    mean_u = np.zeros(A.shape[1])
    for s in range(0, n, _CHUNK):
        mean_u += w[s : s + _CHUNK] @ (A[s : s + _CHUNK] / unit)
    mean_u /= total
    var_u = np.zeros(A.shape[1])
    for s in range(0, n, _CHUNK):
        d = A[s : s + _CHUNK] / unit - mean_u
        var_u += w[s : s + _CHUNK] @ (d * d)
    std_u = np.sqrt(var_u / total)
    constant = std_u <= 1e-12
    scale_u = np.where(constant, 1.0, std_u)
    return mean_u * unit, scale_u * unit, unit, constant


def _standardised_float32(X, mean, scale, unit):
    """Standardised ``X`` as a new float32 array, computed in row chunks (see above).

    This is the one copy of the training data a fit makes (half its size for float64
    input); the engines read it in place.
    """
    out = np.empty(X.shape, dtype=np.float32)
    mean_u, scale_u = mean / unit, scale / unit
    for s in range(0, X.shape[0], _CHUNK):
        out[s : s + _CHUNK] = (X[s : s + _CHUNK] / unit - mean_u) / scale_u
    return out


class BaseNeuralBagging(BaseEstimator, metaclass=ABCMeta):
    """Shared machinery of :class:`NeuralBaggingRegressor` and :class:`NeuralBaggingClassifier`.

    Not for direct use: it has no loss of its own.
    """

    _parameter_constraints = {
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(_engine.ACTIVATIONS))],
        "solver": [StrOptions(set(_engine.SOLVERS))],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
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
        "oob_score": ["boolean"],
        "warm_start": ["boolean"],
        "init": [StrOptions({"random", "mothernet"})],
        "n_mothernets": [Interval(Integral, 1, None, closed="left")],
        "mothernet_noise": [Interval(Real, 0, None, closed="left")],
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
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=1e-3,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        tol=1e-4,
        n_iter_no_change=10,
        early_stopping=False,
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
        oob_score=False,
        warm_start=False,
        init="random",
        n_mothernets=1,
        mothernet_noise=0.01,
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
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
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
        self.oob_score = oob_score
        self.warm_start = warm_start
        self.init = init
        self.n_mothernets = n_mothernets
        self.mothernet_noise = mothernet_noise
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

    def _stratify_labels(self, y):
        return None

    # ------------------------------------------------------- fit: set-up
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

    def _hyper(self, n_rows):
        batch = min(200, n_rows) if self.batch_size == "auto" else int(self.batch_size)
        return _engine.Hyper(
            activation=self.activation,
            loss=self._loss,
            solver=self.solver,
            alpha=float(self.alpha),
            batch_size=max(1, min(batch, n_rows)),
            momentum=float(self.momentum),
            nesterovs_momentum=bool(self.nesterovs_momentum),
            beta_1=float(self.beta_1),
            beta_2=float(self.beta_2),
            epsilon=float(self.epsilon),
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

    def _plan(self, n_samples, n_features, partial=False):
        holdout = None
        if self.early_stopping and not self.bootstrap and not partial:
            holdout = float(self.validation_fraction)
            n_held = int(np.ceil(holdout * n_samples))
            if n_held < 1 or n_samples - n_held < 1:
                raise ValueError(
                    f"early_stopping with validation_fraction={self.validation_fraction} "
                    f"leaves no training or no validation rows out of {n_samples}; use "
                    "more data, another validation_fraction, or bootstrap=True."
                )
            n_samples_pool = n_samples - n_held
        else:
            n_samples_pool = n_samples
        return _sampling.Plan(
            n_samples=n_samples,
            n_features=n_features,
            n_draw=self._count(self.max_samples, n_samples_pool, "max_samples"),
            n_feat=self._count(self.max_features, n_features, "max_features"),
            bootstrap=bool(self.bootstrap),
            bootstrap_features=bool(self.bootstrap_features),
            holdout=holdout,
        )

    def _uses_all_features(self, plan):
        return plan.n_feat == plan.n_features and not plan.bootstrap_features

    # --------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=True)
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
            rows of weight zero have no influence on the fit.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        warm = self.warm_start and hasattr(self, "_groups")
        if self.oob_score and not self.bootstrap:
            raise ValueError("Out of bag estimation only available if bootstrap=True.")
        archs = _hetero.member_architectures(self.hidden_layer_sizes, self.n_estimators)
        X, y, sw = self._validate_fit_data(X, y, sample_weight, reset=True)
        n_old = len(self.hidden_layer_sizes_) if warm else 0
        if warm:
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
            if X.shape[1] != self._plan_.n_features:
                raise ValueError("warm_start=True needs the same features as the first fit.")
        else:
            self._x_mean, self._x_scale, self._x_unit, _ = _weighted_standardisation(X, sw)
        Y = self._encode_targets(y, sw, reset=not warm)  # (N, O) float64

        rng = check_random_state(self.random_state)
        seeds = _sampling.draw_seeds(rng, self.n_estimators)
        if warm:
            seeds[:n_old] = self._seeds  # old members keep theirs; new ones get fresh ones
        shuffle_seed = int(rng.randint(_sampling.MAX_SEED))
        plan = self._plan(*X.shape)
        stratify = self._stratify_labels(y)
        all_features = self._uses_all_features(plan)
        if warm and (self._features is None) != all_features:
            raise ValueError("warm_start=True cannot change max_features or bootstrap_features.")
        # Warm start with more members trains only the new ones (bagging's meaning);
        # with the same number it continues training all of them (the MLP's meaning).
        resume = warm and self.n_estimators == n_old
        train = np.arange(n_old if warm and not resume else 0, self.n_estimators)
        rows, held, feats = _sampling.member_samples(
            seeds[train], plan, sw if plan.bootstrap else None, stratify
        )
        if resume and self._features is not None:
            feats = self._features  # members keep the features their first layer reads
        hyper = self._hyper(plan.n_draw)
        n_out = Y.shape[1]
        if resume:
            # Keep the weights; like scikit-learn's MLP, a new fit starts a new optimizer
            # (so a changed learning_rate_init or solver takes effect).
            jobs = [(g["members"], g["sizes"], {"flat": g["flat"]}) for g in self._groups]
        else:
            init_rows = self._initial_rows(X, y, sw, [archs[e] for e in train], seeds[train],
                                           plan, n_out)
            jobs = []
            for local, widths in _hetero.group_by_depth([archs[e] for e in train]):
                sizes = (plan.n_feat, *widths, n_out)
                flat = np.concatenate([
                    _hetero.pad_rows(init_rows[i][None], (plan.n_feat, *archs[train[i]], n_out),
                                     sizes, self.activation)
                    for i in local
                ])
                jobs.append((train[local], sizes, {"flat": flat}))

        groups, histories, engines = [], [], []
        for k, (members, sizes, init) in enumerate(jobs):
            loc = np.searchsorted(train, members)
            group, history, engine, device = self._train_group(
                X, Y, sw, plan, rows[loc], None if held is None else [held[i] for i in loc],
                None if all_features else feats[loc], hyper, _engine.Layout(sizes),
                shuffle_seed + k, self.max_iter, init,
            )
            group["members"] = members
            groups.append(group)
            histories.append((loc, history))
            engines.append(engine)
        history = _combine_histories(histories, len(train))

        self._seeds = seeds
        self._plan_ = plan
        self._partial_calls = 0
        self._sample_weight = sw
        self._stratify = stratify
        self.hidden_layer_sizes_ = archs
        self.engine_ = engines[0] if len(set(engines)) == 1 else tuple(engines)
        self.device_ = str(device)
        new_features = None if all_features else feats
        if warm and not resume and new_features is not None:
            new_features = np.concatenate([self._features, new_features])
        self._features = new_features
        if resume:
            history = _continue_history(self, history)
            self._groups = groups
        elif warm:
            history = _merge_history(self, history, n_old)
            self._groups = _merge_groups(self._groups, groups, self.activation)
        else:
            self._groups = groups
        self._set_history(history, plan.n_draw)
        if self.oob_score:
            self._compute_oob(X, y)
        if history["unconverged"] and not self.early_stopping:
            warnings.warn(
                f"{history['unconverged']} of {len(train)} members reached max_iter="
                f"{self.max_iter} before their training loss stopped improving by tol="
                f"{self.tol}; raise max_iter or tol to silence this.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _initial_rows(self, X, y, sw, archs, seeds, plan, n_out):
        """Each member's initial parameters at its own architecture: list of (P_e,) arrays."""
        if self.init == "mothernet":
            return self._hatch_from_mothernets(X, y, sw, archs, seeds, plan, n_out)
        return [
            _engine.init_parameters(
                _engine.Layout((plan.n_feat, *arch, n_out)), [_sampling.init_seed(seed)],
                self.activation,
            )[0].numpy()
            for arch, seed in zip(archs, seeds)  # set-up: one small draw per member
        ]

    def _set_history(self, history, n_draw):
        self.loss_curve_ = history["loss"]
        self.n_iter_per_member_ = history["n_iter"]
        self.n_iter_ = int(self.n_iter_per_member_.max())
        self.t_ = int(self.n_iter_ * n_draw)
        self.fit_time_ = history["seconds"]
        if "val_loss" in history:
            self.validation_loss_curve_ = history["val_loss"]
            self.validation_scores_ = history["val_score"]
            self.best_validation_loss_ = history["best"]

    def _hatch_from_mothernets(self, X, y, sw, archs, seeds, plan, n_out):
        """MotherNets: train one small network per architecture cluster, grow every member.

        The members are clustered by architecture (:func:`_growth.cluster_architectures`);
        each cluster's MotherNet (:func:`_growth.mother_architecture`) is trained on all
        training rows, with early stopping on a held-out fraction, as one heterogeneous
        ensemble of ``n_mothernets`` networks; every member then starts from its
        MotherNet grown to its own architecture by function-preserving widening and
        deepening, plus ``mothernet_noise``.
        """
        from . import _growth

        if plan.n_feat != plan.n_features or plan.bootstrap_features:
            raise ValueError(
                "init='mothernet' grows every member from a network that sees all features; "
                "use max_features=1.0 and bootstrap_features=False with it."
            )
        if self.n_mothernets > len(archs):
            raise ValueError(
                f"n_mothernets={self.n_mothernets} is larger than the number of members to "
                f"train ({len(archs)})."
            )
        labels = _growth.cluster_architectures(archs, self.n_mothernets, plan.n_features, n_out)
        mothers = [
            _growth.mother_architecture([a for a, lab in zip(archs, labels) if lab == k])
            for k in range(self.n_mothernets)
        ]
        if any(len(m) == 0 for m in mothers):
            raise ValueError("init='mothernet' needs members with at least one hidden layer.")
        mother_est = type(self)(**{
            **self.get_params(),
            "n_estimators": self.n_mothernets, "hidden_layer_sizes": mothers,
            "init": "random", "bootstrap": False, "max_samples": 1.0, "max_features": 1.0,
            "bootstrap_features": False, "oob_score": False, "warm_start": False,
            # early stopping on a held-out fraction, when there are rows enough to hold out
            "early_stopping": X.shape[0] * self.validation_fraction >= 2,
            "random_state": int(seeds[0]) ^ 0x5EED, "verbose": 0,
        })
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            mother_est.fit(X, y, sample_weight=sw)
        self.mothernet_hidden_layer_sizes_ = mothers
        self.mothernet_labels_ = labels
        self.mothernet_n_iter_ = mother_est.n_iter_per_member_
        self.mothernet_fit_time_ = mother_est.fit_time_
        F = plan.n_features
        rows = []
        for arch, lab, seed in zip(archs, labels, seeds):  # set-up: one hatch per member
            mother_sizes = (F, *mothers[lab], n_out)
            mother_flat = torch.from_numpy(mother_est._member_row(int(lab))[0])
            gen = torch.Generator().manual_seed(_sampling.init_seed(seed))
            rows.append(_growth.hatch(mother_flat, mother_sizes, (F, *arch, n_out),
                                      self.activation, self.mothernet_noise, gen).numpy())
        return rows

    # Batches per streamed chunk, forced (tests exercise streaming on the CPU this way).
    _stream_chunk_steps_override = None

    def _stream_chunk_steps(self, Xs, Y, device, hyper, n_members):
        """Batches per chunk when the training data must stream from host memory, else None.

        On CUDA the data stays on the device when it takes at most half its free memory;
        otherwise it streams in chunks sized to a quarter of the free memory.
        """
        if self._stream_chunk_steps_override is not None:
            return int(self._stream_chunk_steps_override)
        if device.type != "cuda":
            return None
        free, _ = torch.cuda.mem_get_info(device)
        data_bytes = Xs.nbytes + 4 * Y.size * 2
        if data_bytes <= free // 2:
            return None
        row_bytes = 4 * (Xs.shape[1] + Y.shape[1] + 1)
        return max(1, int(free // 4 // (n_members * hyper.batch_size * row_bytes)))

    def _train_group(self, X, Y, sw, plan, rows, held, feats, hyper, layout, shuffle_seed,
                     max_iter, init, stop=True):
        """Train one group of members sharing a (padded) layout.

        ``init`` holds numpy arrays: ``flat (G, P)`` and, to continue a fit, ``opt_state``,
        ``steps`` and ``lr``. Returns the group's state as numpy arrays, its history, the
        engine and the device.
        """
        device = _dispatch.resolve_device(self.device)
        all_features = feats is None
        engine = _dispatch.select_engine(self.engine, hyper, layout, device, not all_features)
        G = rows.shape[0]
        Xs = _standardised_float32(X, self._x_mean, self._x_scale, self._x_unit)
        loss_weight = None if (sw is None or plan.bootstrap) else sw
        stream = self._stream_chunk_steps(Xs, Y, device, hyper, G)
        home = torch.device("cpu") if stream else device  # where the training data lives
        data = {
            "X": torch.from_numpy(Xs).to(home),
            "Y": torch.from_numpy(Y.astype(np.float32)).to(home),
            "sw": None if loss_weight is None else torch.from_numpy(
                loss_weight.astype(np.float32)).to(home),
            "features": None if all_features else torch.from_numpy(feats).to(device),
            "stream": stream,
        }
        val = None
        if self.early_stopping and stop:
            if plan.bootstrap:  # each member validates on its own out-of-bag rows
                vmask = ~_sampling.in_bag_mask(rows, plan.n_samples)
            else:  # ... or on the rows it held out
                vmask = np.zeros((G, plan.n_samples), dtype=bool)
                for e, h in enumerate(held):
                    vmask[e, h] = True
            vrows = np.flatnonzero(vmask.any(0))  # forward only rows someone validates on
            if vrows.size:  # (none at all: every member stops on its training loss)
                vw = vmask[:, vrows].astype(np.float32)
                if sw is not None:
                    vw = vw * sw[vrows].astype(np.float32)
                vidx = torch.from_numpy(vrows).to(device)
                vidx = vidx.to(home)
                val = {"X": data["X"][vidx], "Y": data["Y"][vidx].to(device),
                       "w": torch.from_numpy(vw).to(device)}  # (E, Nv) 0 where not validating
        flat = torch.from_numpy(np.ascontiguousarray(init["flat"], dtype=np.float32)).to(device)
        if "opt_state" in init:
            state = torch.from_numpy(init["opt_state"].copy()).to(device)
            steps = torch.from_numpy(init["steps"].copy()).to(device)
            lr = init["lr"].copy()
            if state.shape[0] != hyper.n_state:
                raise ValueError("warm_start=True cannot change the solver of fitted members.")
        else:
            state, steps = _engine.init_state(flat, hyper)
            lr = np.full(G, float(self.learning_rate_init))
        if engine in ("numba", "triton"):
            # Member-major: threads meet once per epoch, so busy cores cost little;
            # one thread per member, up to the cores this fit may use.
            n_threads = min(_dispatch.default_threads(), G)
        else:  # torch steps synchronise per operation: only big steps get threads
            n_threads = _dispatch.default_threads(G * layout.n_params * hyper.batch_size)
        start = time.perf_counter()
        try:
            with _dispatch.thread_limit(n_threads, engine):
                history = self._train(
                    flat, state, steps, lr, data, val, torch.from_numpy(rows), shuffle_seed,
                    hyper, layout, engine, max_iter, stop=stop,
                )
        except torch.cuda.OutOfMemoryError as exc:
            raise MemoryError(
                f"{device} ran out of memory training {G} members of {layout.n_params} "
                f"parameters with batch_size={hyper.batch_size}. Lower n_estimators or "
                "batch_size, free memory held by other processes, or use device='cpu'."
            ) from exc
        history["seconds"] = time.perf_counter() - start
        group = {"sizes": layout.sizes, "flat": flat.cpu().numpy().copy(),
                 "opt_state": state.cpu().numpy().copy(), "steps": steps.cpu().numpy().copy(),
                 "lr": lr}
        return group, history, engine, device

    def _train(self, flat, state, steps, lr, data, val, rows, shuffle_seed, hyper, layout,
               engine, max_iter, stop):
        """The epoch loop: all members in one call per epoch, each stopping on its own.

        Members that stopped are left out of later epochs (their parameters and optimizer
        state are untouched); members sharing a learning rate are trained by one call.
        ``lr (E,)`` is updated in place (adaptive schedule).
        """
        E = flat.shape[0]
        device = flat.device
        epoch_fn = _dispatch.epoch_function(engine)
        order_device = device
        if data["stream"]:
            epoch_fn = functools.partial(_engine.epoch_streamed, epoch_fn,
                                         chunk_steps=data["stream"])
            order_device = torch.device("cpu")  # the host gathers each chunk's rows
        gen = torch.Generator().manual_seed(shuffle_seed)
        adaptive = self.solver == "sgd" and self.learning_rate == "adaptive"
        active = np.ones(E, dtype=bool)
        n_iter = np.zeros(E, dtype=np.int64)
        best = np.full(E, np.inf)
        no_improve = np.zeros(E, dtype=np.int64)
        best_flat = flat.clone() if val is not None else None
        losses, val_losses, val_scores = [], [], []
        M = rows.shape[1]
        t_seen = int(getattr(self, "t_", 0)) if not stop else 0
        bar = progress(max_iter, self.verbose)
        interrupted = False
        for epoch in range(max_iter):
            try:
                order = _sampling.epoch_order(rows, gen, self.shuffle).to(order_device)
                if self.solver == "sgd" and self.learning_rate == "invscaling":
                    lr[:] = self.learning_rate_init / (t_seen + 1) ** self.power_t
                epoch_loss = torch.full((E,), float("nan"), device=device)
                for rate in np.unique(lr[active]):
                    members = np.flatnonzero(active & (lr == rate))
                    epoch_loss[torch.from_numpy(members).to(device)] = self._epoch_subset(
                        epoch_fn, members, flat, state, steps, data, order, float(rate), hyper,
                        layout,
                    )
                t_seen += M
                n_iter[active] += 1
                if val is not None:
                    vloss, vscore = self._validate(flat, val, hyper, layout, data["features"])
                loss_np = epoch_loss.cpu().numpy().astype(np.float64)  # one sync per epoch
                bad = active & ~np.isfinite(loss_np)
                if bad.any():
                    bar.close()
                    raise ValueError(
                        f"Training diverged: the loss of member(s) {np.flatnonzero(bad).tolist()} "
                        f"became non-finite in epoch {epoch + 1} with solver={self.solver!r} and "
                        f"learning_rate_init={self.learning_rate_init}. Lower learning_rate_init "
                        "(e.g. by 10x), or use solver='adam'."
                    )
                losses.append(loss_np)
                if val is not None:
                    vloss_np = vloss.cpu().numpy().astype(np.float64)
                    vloss_np[~active] = np.nan
                    val_losses.append(vloss_np)
                    val_scores.append(np.where(active, vscore.cpu().numpy(), np.nan))
                    # Members without validation rows (tiny data) fall back to their training loss.
                    crit = np.where(np.isfinite(vloss_np), vloss_np, loss_np)
                else:
                    crit = loss_np
                if stop:
                    worse = active & (crit > best - self.tol)
                    no_improve[worse] += 1
                    no_improve[active & ~worse] = 0
                    improved = active & (crit < best)
                    best[improved] = crit[improved]
                    if val is not None and improved.any():
                        keep = torch.from_numpy(np.flatnonzero(improved)).to(device)
                        best_flat[keep] = flat[keep]
                    patience_out = active & (no_improve >= self.n_iter_no_change)
                    if adaptive:
                        shrink = patience_out & (lr / 5.0 >= 1e-6)
                        lr[shrink] /= 5.0
                        no_improve[shrink] = 0
                        patience_out &= ~shrink
                    active &= ~patience_out
                bar.update(float(np.nanmean(loss_np)), int(active.sum()), E,
                           None if val is None else float(np.nanmean(val_losses[-1])))
                if not active.any():
                    break
            except KeyboardInterrupt:
                # Like scikit-learn's MLP: stop, keep what was learnt, leave a usable model.
                warnings.warn(
                    f"Training interrupted by the user in epoch {epoch + 1}; keeping the "
                    "weights so far (each member's best with early_stopping). Call fit again "
                    "with warm_start=True to continue.",
                    UserWarning,
                    stacklevel=2,
                )
                interrupted = True
                break
        bar.close()
        if val is not None:
            flat.copy_(best_flat)  # every member ends with its best-validation weights
        if interrupted:
            active[:] = False  # do not also warn about convergence
        history = {"loss": np.asarray(losses), "n_iter": n_iter, "unconverged": int(active.sum())}
        if val is not None:
            history.update(
                val_loss=np.asarray(val_losses), val_score=np.asarray(val_scores), best=best
            )
        return history

    @staticmethod
    def _epoch_subset(epoch_fn, members, flat, state, steps, data, order, lr, hyper, layout):
        """Run one epoch for ``members`` only; returns their losses ``(len(members),)``."""
        X, Y, sw, feats = data["X"], data["Y"], data["sw"], data["features"]
        if members.size == flat.shape[0]:
            extra = {} if feats is None else {"features": feats}
            return epoch_fn(flat, state, steps, X, Y, sw, order, lr, hyper, layout, **extra)
        idx = torch.from_numpy(members).to(flat.device)
        sub_flat, sub_state, sub_steps = flat[idx], state[:, idx].contiguous(), steps[idx]
        extra = {} if feats is None else {"features": feats[idx].contiguous()}
        out = epoch_fn(
            sub_flat, sub_state, sub_steps, X, Y, sw, order[idx].contiguous(), lr, hyper, layout,
            **extra,
        )
        flat[idx], state[:, idx], steps[idx] = sub_flat, sub_state, sub_steps
        return out

    @torch.no_grad()
    def _validate(self, flat, val, hyper, layout, features):
        """Per-member weighted validation loss ``(E,)`` and score ``(E,)`` (device tensors)."""
        out = torch.cat(
            _engine.predict_chunked(flat, layout, val["X"], hyper.activation, lambda o: o,
                                    features=features),
            dim=1,
        )  # (E, Nv, O)
        Y = val["Y"].unsqueeze(0).expand_as(out)
        rows = _engine.per_row_loss(out, Y, hyper.loss)  # (E, Nv)
        w = val["w"]
        loss = (rows * w).sum(1) / w.sum(1)  # nan where a member has no validation rows
        return loss, self._member_scores(out, val["Y"], w)

    # ------------------------------------------------------- partial_fit
    def _partial_fit(self, X, y, sample_weight, classes=None):
        """One more epoch for every member on ``(X, y)``; initialises on the first call."""
        if not hasattr(self, "_groups"):
            X, y, sw = self._validate_fit_data(X, y, sample_weight, reset=True)
            self._x_mean, self._x_scale, self._x_unit, _ = _weighted_standardisation(X, sw)
            if classes is not None:
                self.classes_ = np.unique(classes)
            Y = self._encode_targets(y, sw, reset=classes is None)
            rng = check_random_state(self.random_state)
            self._seeds = _sampling.draw_seeds(rng, self.n_estimators)
            archs = _hetero.member_architectures(self.hidden_layer_sizes, self.n_estimators)
            self.hidden_layer_sizes_ = archs
            F, n_out = X.shape[1], Y.shape[1]
            init_rows = self._initial_rows(X, y, sw, archs, self._seeds,
                                           _sampling.Plan(len(X), F, len(X), F, False, False),
                                           n_out)
            n_state = self._hyper(X.shape[0]).n_state
            self._groups = []
            for members, widths in _hetero.group_by_depth(archs):
                sizes = (F, *widths, n_out)
                flat = np.concatenate([
                    _hetero.pad_rows(init_rows[e][None], (F, *archs[e], n_out), sizes,
                                     self.activation)
                    for e in members
                ])
                self._groups.append({
                    "members": members, "sizes": sizes, "flat": flat,
                    "opt_state": np.zeros((n_state, *flat.shape), dtype=np.float32),
                    "steps": np.zeros(len(members), dtype=np.int64),
                    "lr": np.full(len(members), float(self.learning_rate_init)),
                })
            self._partial_calls = 0
            self._sample_weight, self._stratify, self._features = None, None, None
            self._plan_ = None
            self.loss_curve_ = np.empty((0, self.n_estimators))
            self.n_iter_per_member_ = np.zeros(self.n_estimators, dtype=np.int64)
            self.t_ = 0
        else:
            X, y, sw = self._validate_fit_data(X, y, sample_weight, reset=False)
            Y = self._encode_targets(y, sw, reset=False)
        # This call's rows; each member keeps the features it was fitted with.
        plan = _sampling.Plan(X.shape[0], X.shape[1], self._count(
            self.max_samples, X.shape[0], "max_samples"), X.shape[1], bool(self.bootstrap),
            False)
        self._partial_calls += 1
        call_seeds = [hash((int(s), self._partial_calls)) % _sampling.MAX_SEED
                      for s in self._seeds]
        rows, _, _ = _sampling.member_samples(call_seeds, plan, sw if plan.bootstrap else None)
        hyper = self._hyper(plan.n_draw)
        losses = np.full(self.n_estimators, np.nan)
        engines, seconds = [], 0.0
        for k, g in enumerate(self._groups):
            m = g["members"]
            group, history, engine, device = self._train_group(
                X, Y, sw, plan, rows[m], None,
                None if self._features is None else self._features[m],
                hyper, _engine.Layout(g["sizes"]), call_seeds[0] + k, 1, g, stop=False,
            )
            g.update(group)
            losses[m] = history["loss"][0]
            engines.append(engine)
            seconds += history["seconds"]
        self.engine_ = engines[0] if len(set(engines)) == 1 else tuple(engines)
        self.device_ = str(device)
        self.fit_time_ = seconds
        self.loss_curve_ = np.concatenate([self.loss_curve_, losses[None]])
        self.n_iter_per_member_ = self.n_iter_per_member_ + 1
        self.n_iter_ = int(self.n_iter_per_member_.max())
        self.t_ = int(self.t_ + plan.n_draw)
        return self

    # ----------------------------------------------------------- bagging
    def _member_draws(self):
        """Recompute every member's rows and features from the stored seeds."""
        check_is_fitted(self, "_groups")
        if getattr(self, "_partial_calls", 0):
            raise AttributeError(
                "estimators_samples_ is not defined for ensembles trained by partial_fit.")
        return _sampling.member_samples(
            self._seeds, self._plan_,
            self._sample_weight if self._plan_.bootstrap else None, self._stratify,
        )

    @property
    def estimators_samples_(self):
        """Rows each member trained on (with repeats under bootstrap): list of int arrays."""
        return list(self._member_draws()[0])

    @property
    def estimators_features_(self):
        """Features each member sees, in the order its first layer reads them."""
        check_is_fitted(self, "_groups")
        if self._features is None:
            return [np.arange(self.n_features_in_) for _ in range(len(self._seeds))]
        return list(self._features)

    @torch.no_grad()
    def _compute_oob(self, X, y):
        """Average, for each row, the members that did not train on it."""
        rows = self._member_draws()[0]
        out_of_bag = ~_sampling.in_bag_mask(rows, X.shape[0])  # (E, N)
        device = _dispatch.resolve_device(self.device)
        groups = self._device_groups(device)
        Xs = _standardised_float32(X, self._x_mean, self._x_scale, self._x_unit)
        Xt = torch.from_numpy(Xs).to(device)
        total = np.zeros((X.shape[0], self._groups[0]["sizes"][-1]))
        chunk = self._chunk_rows(device)
        for s in range(0, X.shape[0], chunk):
            out = self._forward_all(groups, Xt[s : s + chunk])  # (E, n, O) float64
            m = torch.from_numpy(out_of_bag[:, s : s + chunk]).to(out)  # (E, n)
            total[s : s + chunk] = (out * m.unsqueeze(-1)).sum(0).cpu().numpy()
        count = out_of_bag.sum(0)  # (N,)
        has = count > 0
        if not has.all():
            warnings.warn(
                "Some inputs do not have OOB scores. This probably means too few "
                "estimators were used to compute any reliable oob estimates.",
                stacklevel=2,
            )
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / count[:, None]
        mean[~has] = np.nan
        self._set_oob(mean, has, y)

    # ------------------------------------------------------------- predict
    def _member_outputs(self, X, reduce, transform=True):
        """Validate ``X``, run all members in row chunks, concatenate ``reduce``d chunks.

        ``reduce`` receives the members' transformed outputs ``(E, n, O)`` (float64), or
        their raw outputs with ``transform=False``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=_FLOAT, reset=False)
        device = _dispatch.resolve_device(self.device)
        with np.errstate(over="ignore", invalid="ignore"):
            Xs = _standardised_float32(X, self._x_mean, self._x_scale, self._x_unit)
        if not np.isfinite(Xs).all():
            raise ValueError(
                "X has values too large for the network's float32 arithmetic after "
                "standardisation with the training data's mean and scale."
            )
        groups = self._device_groups(device)
        Xt = torch.from_numpy(Xs).to(device)
        work = X.shape[0] * sum(g["flat"].size for g in self._groups)
        chunk = self._chunk_rows(device)
        with _dispatch.thread_limit(_dispatch.default_threads(work), "batched"), torch.no_grad():
            parts = [reduce(self._forward_all(groups, Xt[s : s + chunk], transform))
                     for s in range(0, X.shape[0], chunk)]
        return torch.cat(parts, dim=0).cpu().numpy()

    def _chunk_rows(self, device=None):
        """Rows per prediction chunk: all members' activations of a chunk stay ~64 MB.

        On CUDA the budget also stays under a quarter of the device's free memory, so
        predictions fit next to whatever else holds the GPU.
        """
        floats = 16 * 2**20  # 64 MB of float32
        if device is not None and device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            floats = min(floats, free // 4 // 8)  # float64 outputs, a few live copies
        widest = max(max(g["sizes"]) for g in self._groups)
        return max(1, int(floats) // max(1, len(self._seeds) * widest))

    @property
    def _in_member_order(self):
        """Whether the only group holds members 0..E-1 in order (no reordering needed)."""
        m = self._groups[0]["members"]
        return bool(np.array_equal(m, np.arange(m.size)))

    def _device_groups(self, device):
        """The fitted groups on ``device``: ``(members, flat, layout, features)`` each."""
        out = []
        for g in self._groups:
            feats = None
            if self._features is not None:
                feats = torch.from_numpy(self._features[g["members"]]).to(device)
            out.append((torch.from_numpy(g["members"]).to(device),
                        torch.from_numpy(g["flat"]).to(device), _engine.Layout(g["sizes"]), feats))
        return out

    def _forward_all(self, groups, Xt, transform=True):
        """Transformed (or raw float64) outputs of every member on ``Xt (n, F)``: ``(E, n, O)``."""
        fn = self._transform_outputs if transform else (lambda out: out.double())
        parts = [(m, fn(_engine.forward(flat, layout, Xt, self.activation, f)))
                 for m, flat, layout, f in groups]
        if len(self._groups) == 1 and self._in_member_order:
            return parts[0][1]
        E, O = len(self._seeds), parts[0][1].shape[-1]
        out = torch.empty((E, Xt.shape[0], O), dtype=parts[0][1].dtype, device=Xt.device)
        for m, o in parts:
            out[m] = o
        return out

    def _member_row(self, member):
        """Flat parameters ``(P_e,)`` of one member at its own architecture."""
        for g in self._groups:
            pos = np.flatnonzero(g["members"] == member)
            if pos.size:
                sizes = (g["sizes"][0], *self.hidden_layer_sizes_[member], g["sizes"][-1])
                return _hetero.unpad_row(g["flat"][pos[0]], g["sizes"], sizes), sizes
        raise IndexError(f"member={member} is out of range for {len(self._seeds)} members.")

    def get_member_params(self, member):
        """Weights and biases of one member, at its own architecture.

        Parameters
        ----------
        member : int
            Index of the member, in ``range(n_estimators)``.

        Returns
        -------
        coefs : list of ndarray
            ``coefs[i]`` has shape ``(fan_in, fan_out)`` (internally standardised units).
        intercepts : list of ndarray
            ``intercepts[i]`` has shape ``(fan_out,)``.
        """
        check_is_fitted(self, "_groups")
        row, sizes = self._member_row(member)
        layers = _engine.Layout(sizes).views(torch.from_numpy(row[None]))
        return [W[0].numpy() for W, _ in layers], [b[0, 0].numpy() for _, b in layers]

    def to_torch(self):
        """The fitted ensemble as a plain ``torch.nn.Module``.

        The module applies the estimator's input scaling, every member and the
        aggregation: ``module(torch.as_tensor(X, dtype=torch.float32))`` returns the mean
        prediction (regressor) or the class probabilities in the order of ``classes_``
        (classifier). It needs PyTorch only, and exports with ``torch.onnx.export``.

        Returns
        -------
        torch.nn.Module
            In eval mode, on the CPU; move it with ``.to(device)``.
        """
        check_is_fitted(self)
        from ._export import to_torch

        return to_torch(self)

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

    def _stacked_layers(self):
        check_is_fitted(self, "_groups")
        if len(self._groups) != 1 or len(set(self.hidden_layer_sizes_)) != 1:
            raise AttributeError(
                "coefs_ and intercepts_ stack members of one architecture; this ensemble has "
                "several: use get_member_params(member)."
            )
        g = self._groups[0]
        flat = np.ascontiguousarray(g["flat"][np.argsort(g["members"])])
        return _engine.Layout(g["sizes"]).views(torch.from_numpy(flat))

    @property
    def coefs_(self):
        """Per layer, weights of every member: ``(n_estimators, fan_in, fan_out)``."""
        return [W.numpy() for W, _ in self._stacked_layers()]

    @property
    def intercepts_(self):
        """Per layer, biases of every member: ``(n_estimators, fan_out)``."""
        return [b.numpy()[:, 0, :] for _, b in self._stacked_layers()]


def _combine_histories(histories, n_members):
    """One history for members trained in groups: ``[(positions, history), ...]``."""
    T = max(h["loss"].shape[0] for _, h in histories)
    out = {"loss": np.full((T, n_members), np.nan),
           "n_iter": np.zeros(n_members, dtype=np.int64),
           "unconverged": sum(h["unconverged"] for _, h in histories),
           "seconds": sum(h["seconds"] for _, h in histories)}
    if "val_loss" in histories[0][1]:
        out.update(val_loss=np.full((T, n_members), np.nan),
                   val_score=np.full((T, n_members), np.nan), best=np.full(n_members, np.nan))
    for loc, h in histories:
        out["loss"][: h["loss"].shape[0], loc] = h["loss"]
        out["n_iter"][loc] = h["n_iter"]
        if "val_loss" in h:
            out["val_loss"][: h["val_loss"].shape[0], loc] = h["val_loss"]
            out["val_score"][: h["val_score"].shape[0], loc] = h["val_score"]
            out["best"][loc] = h["best"]
    return out


def _merge_groups(old, new, activation):
    """Groups of a warm start: new members join the old group of their depth (re-padded)."""
    groups = [dict(g) for g in old]
    for g in new:
        same = [o for o in groups if len(o["sizes"]) == len(g["sizes"])]
        if not same:
            groups.append(g)
            continue
        o = same[0]
        sizes = tuple(max(a, b) for a, b in zip(o["sizes"], g["sizes"]))

        def widen(grp):
            flat = _hetero.pad_rows(grp["flat"], grp["sizes"], sizes, activation)
            state = np.stack([_hetero.pad_rows(s, grp["sizes"], sizes, activation, False)
                              for s in grp["opt_state"]])
            return flat, state

        (f_old, s_old), (f_new, s_new) = widen(o), widen(g)
        o.update(sizes=sizes, members=np.concatenate([o["members"], g["members"]]),
                 flat=np.concatenate([f_old, f_new]), opt_state=np.concatenate([s_old, s_new], 1),
                 steps=np.concatenate([o["steps"], g["steps"]]),
                 lr=np.concatenate([o["lr"], g["lr"]]))
    return groups


def _merge_history(est, new, n_old):
    """Per-epoch curves of a warm start: old members keep their curves, NaN-padded."""
    def pad(old, fresh):
        T = max(old.shape[0], fresh.shape[0])
        out = np.full((T, old.shape[1] + fresh.shape[1]), np.nan)
        out[: old.shape[0], : old.shape[1]] = old
        out[: fresh.shape[0], old.shape[1]:] = fresh
        return out

    merged = dict(new)
    merged["loss"] = pad(est.loss_curve_, new["loss"])
    merged["n_iter"] = np.concatenate([est.n_iter_per_member_, new["n_iter"]])
    if "val_loss" in new and hasattr(est, "validation_loss_curve_"):
        merged["val_loss"] = pad(est.validation_loss_curve_, new["val_loss"])
        merged["val_score"] = pad(est.validation_scores_, new["val_score"])
        merged["best"] = np.concatenate([est.best_validation_loss_, new["best"]])
    return merged


def _continue_history(est, new):
    """Per-epoch curves of a resumed fit: the new epochs follow the old ones."""
    merged = dict(new)
    merged["loss"] = np.concatenate([est.loss_curve_, new["loss"]])
    merged["n_iter"] = est.n_iter_per_member_ + new["n_iter"]
    if "val_loss" in new and hasattr(est, "validation_loss_curve_"):
        merged["val_loss"] = np.concatenate([est.validation_loss_curve_, new["val_loss"]])
        merged["val_score"] = np.concatenate([est.validation_scores_, new["val_score"]])
    return merged
