"""BaseNeuralBagging: parameters, validation, fit orchestration, numpy <-> torch bridge.

The task classes (:mod:`._regressor`, :mod:`._classifier`) only say how targets become
a float matrix ``Y (N, O)``, which loss trains the members, and how member outputs are
aggregated. Everything else (scaling, sampling, the epoch loop with per-member stopping,
device and engine choice, chunked prediction) lives here, once.
"""

import time
import warnings
from abc import ABCMeta, abstractmethod
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import _dispatch, _engine, _sampling

_FLOAT = (np.float64, np.float32)
# A member-major kernel hands each thread whole members for a whole epoch: worth a
# thread as soon as one member's epoch is sizeable (counted as this many rows x P).
M_ROWS_PER_THREAD = 1000


def _check_hidden_layer_sizes(hidden_layer_sizes):
    """Tuple of positive ints from an int or a sequence of ints."""
    if isinstance(hidden_layer_sizes, Integral) and not isinstance(hidden_layer_sizes, bool):
        sizes = (int(hidden_layer_sizes),)
    else:
        try:
            sizes = tuple(hidden_layer_sizes)
        except TypeError:
            sizes = None
        if sizes is None or not all(
            isinstance(s, Integral) and not isinstance(s, bool) for s in sizes
        ):
            raise ValueError(
                "hidden_layer_sizes must be an int or a sequence of ints (one width per "
                f"hidden layer), got {hidden_layer_sizes!r}."
            )
    if any(s < 1 for s in sizes):
        raise ValueError(f"hidden_layer_sizes must be positive widths, got {sizes}.")
    return tuple(int(s) for s in sizes)


def _weighted_standardisation(A, weight):
    """Column means and scales of ``A (N, D)`` under row weights (None: equal weights).

    Constant columns keep scale 1: they carry no information, and dividing by ~0 would
    turn rounding noise into signal.
    """
    mean = np.average(A, axis=0, weights=weight)
    std = np.sqrt(np.average((A - mean) ** 2, axis=0, weights=weight))
    return mean, np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)


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
        self.random_state = random_state
        self.device = device
        self.engine = engine
        self.verbose = verbose

    # ------------------------------------------------------------ task hooks
    @abstractmethod
    def _encode_targets(self, y, sample_weight):
        """Validate ``y`` (already row-checked), set target attributes, return ``Y (N, O)`` float64."""

    @abstractmethod
    def _member_scores(self, out, Y, weight):
        """Per-member validation score ``(E,)`` (higher is better) from raw outputs."""

    # ----------------------------------------------------------------- fit
    def _n_draw(self, n_samples):
        """Rows per member: ``max_samples`` as a count or a fraction of ``n_samples``."""
        if isinstance(self.max_samples, Integral) and not isinstance(self.max_samples, bool):
            if self.max_samples > n_samples:
                raise ValueError(
                    f"max_samples={self.max_samples} is larger than the number of training "
                    f"rows ({n_samples}); pass a fraction in (0, 1] or a smaller count."
                )
            return int(self.max_samples)
        return max(1, int(round(self.max_samples * n_samples)))

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
            Per-row weights of the training loss (and of the validation loss when
            ``early_stopping=True``). Rows with weight zero do not influence the fit.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        hidden = _check_hidden_layer_sizes(self.hidden_layer_sizes)
        device = _dispatch.resolve_device(self.device)
        X, y = validate_data(
            self, X, y, dtype=_FLOAT, multi_output=self._multi_output, y_numeric=self._loss == "squared_error"
        )
        n_samples = X.shape[0]
        sw = None
        if sample_weight is not None:
            sw = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
            if not np.any(sw > 0):
                raise ValueError("sample_weight has no positive entry; nothing to fit.")
            sw = sw / sw.mean()  # mean 1: the learning rate keeps its meaning
        Y = self._encode_targets(y, sw)  # (N, O) float64

        # Internal standardisation so unscaled data trains as well as scaled data; weighted,
        # so rows of weight zero have no influence at all.
        self._x_mean, self._x_scale = _weighted_standardisation(X, sw)

        rng = check_random_state(self.random_state)
        self._seeds = _sampling.draw_seeds(rng, self.n_estimators)
        shuffle_seed = int(rng.randint(_sampling.MAX_SEED))
        split_seed = int(rng.randint(_sampling.MAX_SEED))

        # Which rows train and which validate.
        train_idx = np.arange(n_samples)
        val_idx = None
        if self.early_stopping and not self.bootstrap:
            stratify = self._stratify_labels(y)
            train_idx, val_idx = train_test_split(
                train_idx,
                test_size=self.validation_fraction,
                random_state=split_seed,
                stratify=stratify,
            )
            if train_idx.size == 0 or val_idx.size == 0:
                raise ValueError(
                    f"early_stopping with validation_fraction={self.validation_fraction} "
                    f"leaves no training or no validation rows out of {n_samples}; use more "
                    "data, another validation_fraction, or bootstrap=True (out-of-bag rows)."
                )
        n_draw = self._n_draw(train_idx.size)
        rows = train_idx[_sampling.member_rows(self._seeds, train_idx.size, n_draw, self.bootstrap)]

        hyper = self._hyper(n_draw)
        layout = _engine.Layout((X.shape[1], *hidden, Y.shape[1]))
        engine = _dispatch.select_engine(self.engine, hyper, layout, device)
        # Member-major kernels parallelise over members; batched torch over the step's work.
        per_step = self.n_estimators * layout.n_params * (
            hyper.batch_size if engine in ("batched", "reference") else M_ROWS_PER_THREAD
        )
        n_threads = _dispatch.default_threads(per_step)

        Xs = ((X - self._x_mean) / self._x_scale).astype(np.float32)
        data = {
            "X": torch.from_numpy(Xs).to(device),
            "Y": torch.from_numpy(Y.astype(np.float32)).to(device),
            "sw": None if sw is None else torch.from_numpy(sw.astype(np.float32)).to(device),
        }
        val = None
        if self.early_stopping:
            if self.bootstrap:  # each member validates on its own out-of-bag rows
                vrows = np.arange(n_samples)
                vmask = np.ones((self.n_estimators, n_samples), dtype=bool)
                vmask[np.arange(self.n_estimators)[:, None], rows] = False
            else:
                vrows = val_idx
                vmask = np.ones((self.n_estimators, val_idx.size), dtype=bool)
            vw = vmask.astype(np.float32) * (1.0 if sw is None else sw[vrows].astype(np.float32))
            val = {
                "X": data["X"][torch.from_numpy(vrows).to(device)],
                "Y": data["Y"][torch.from_numpy(vrows).to(device)],
                "w": torch.from_numpy(vw).to(device),  # (E, Nv) zero where not validating
            }

        flat = _engine.init_parameters(
            layout, [_sampling.init_seed(s) for s in self._seeds], self.activation, device
        )
        state, steps = _engine.init_state(flat, hyper)
        start = time.perf_counter()
        with _dispatch.thread_limit(n_threads, engine):
            history = self._train(
                flat, state, steps, data, val, torch.from_numpy(rows), shuffle_seed,
                hyper, layout, engine,
            )
        self.fit_time_ = time.perf_counter() - start

        self._layout_sizes = layout.sizes
        self._flat = flat.detach().to("cpu").numpy().copy()  # (E, P) on the CPU: pickles anywhere
        self.engine_ = engine
        self.device_ = str(device)
        self.loss_curve_ = history["loss"]
        self.n_iter_per_member_ = history["n_iter"]
        self.n_iter_ = int(self.n_iter_per_member_.max())
        self.t_ = int(self.n_iter_ * n_draw)
        if self.early_stopping:
            self.validation_loss_curve_ = history["val_loss"]
            self.validation_scores_ = history["val_score"]
            self.best_validation_loss_ = history["best"]
        if history["unconverged"] and not self.early_stopping:
            warnings.warn(
                f"{history['unconverged']} of {self.n_estimators} members reached max_iter="
                f"{self.max_iter} before their training loss stopped improving by tol="
                f"{self.tol}; raise max_iter or tol to silence this.",
                ConvergenceWarning,
            )
        return self

    def _stratify_labels(self, y):
        return None

    def _train(self, flat, state, steps, data, val, rows, shuffle_seed, hyper, layout, engine):
        """The epoch loop: all members in one call per epoch, each stopping on its own.

        Members that stopped are left out of later epochs (their parameters and optimizer
        state are untouched); members sharing a learning rate are trained by one call.
        """
        E = flat.shape[0]
        device = flat.device
        epoch_fn = _dispatch.epoch_function(engine)
        gen = torch.Generator().manual_seed(shuffle_seed)
        adaptive = self.solver == "sgd" and self.learning_rate == "adaptive"
        lr = np.full(E, float(self.learning_rate_init))
        active = np.ones(E, dtype=bool)
        n_iter = np.zeros(E, dtype=np.int64)
        best = np.full(E, np.inf)
        no_improve = np.zeros(E, dtype=np.int64)
        best_flat = flat.clone() if val is not None else None
        losses, val_losses, val_scores = [], [], []
        t_seen = 0
        M = rows.shape[1]
        for epoch in range(self.max_iter):
            order = _sampling.epoch_order(rows, gen, self.shuffle).to(device)  # (E, M)
            if self.solver == "sgd" and self.learning_rate == "invscaling":
                lr[:] = self.learning_rate_init / (t_seen + 1) ** self.power_t
            epoch_loss = torch.full((E,), float("nan"), device=device)
            for rate in np.unique(lr[active]):
                members = np.flatnonzero(active & (lr == rate))
                epoch_loss[torch.from_numpy(members).to(device)] = self._epoch_subset(
                    epoch_fn, members, flat, state, steps, data, order, float(rate), hyper, layout
                )
            t_seen += M
            n_iter[active] += 1
            if val is not None:
                vloss, vscore = self._validate(flat, val, hyper, layout)
            loss_np = epoch_loss.cpu().numpy().astype(np.float64)  # one sync per epoch
            bad = active & ~np.isfinite(loss_np)
            if bad.any():
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
            if self.verbose:
                print(
                    f"Epoch {epoch + 1}: mean loss {np.nanmean(loss_np):.6f}, "
                    f"members training {int(active.sum())}/{E}"
                    + (f", mean validation loss {np.nanmean(val_losses[-1]):.6f}" if val else "")
                )
            if not active.any():
                break
        if val is not None:
            flat.copy_(best_flat)  # every member ends with its best-validation weights
        history = {
            "loss": np.asarray(losses),
            "n_iter": n_iter,
            "unconverged": int(active.sum()),
        }
        if val is not None:
            history.update(
                val_loss=np.asarray(val_losses), val_score=np.asarray(val_scores), best=best
            )
        return history

    @staticmethod
    def _epoch_subset(epoch_fn, members, flat, state, steps, data, order, lr, hyper, layout):
        """Run one epoch for ``members`` only; returns their losses ``(len(members),)``."""
        if members.size == flat.shape[0]:
            return epoch_fn(
                flat, state, steps, data["X"], data["Y"], data["sw"], order, lr, hyper, layout
            )
        idx = torch.from_numpy(members).to(flat.device)
        sub_flat, sub_state, sub_steps = flat[idx], state[:, idx].contiguous(), steps[idx]
        out = epoch_fn(
            sub_flat, sub_state, sub_steps, data["X"], data["Y"], data["sw"],
            order[idx].contiguous(), lr, hyper, layout,
        )
        flat[idx], state[:, idx], steps[idx] = sub_flat, sub_state, sub_steps
        return out

    @torch.no_grad()
    def _validate(self, flat, val, hyper, layout):
        """Per-member weighted validation loss ``(E,)`` and score ``(E,)`` (device tensors)."""
        out = torch.cat(
            _engine.predict_chunked(flat, layout, val["X"], hyper.activation, lambda o: o),
            dim=1,
        )  # (E, Nv, O)
        Y = val["Y"].unsqueeze(0).expand_as(out)
        rows = _engine.per_row_loss(out, Y, hyper.loss)  # (E, Nv)
        w = val["w"]
        denom = w.sum(1)
        loss = (rows * w).sum(1) / denom  # nan where a member has no validation rows
        return loss, self._member_scores(out, val["Y"], w)

    # ------------------------------------------------------------- predict
    def _member_outputs(self, X, reduce):
        """Validate ``X``, run all members in row chunks, concatenate ``reduce``d chunks."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=_FLOAT, reset=False)
        device = _dispatch.resolve_device(self.device)
        Xs = (X - self._x_mean) / self._x_scale
        if np.abs(Xs).max(initial=0.0) > np.finfo(np.float32).max:
            raise ValueError(
                "X has values too large for the network's float32 arithmetic after "
                "standardisation with the training data's mean and scale."
            )
        layout = _engine.Layout(self._layout_sizes)
        flat = torch.from_numpy(self._flat).to(device)
        Xt = torch.from_numpy(Xs.astype(np.float32)).to(device)
        work = X.shape[0] * flat.shape[0] * layout.n_params
        with _dispatch.thread_limit(_dispatch.default_threads(work), "batched"):
            parts = _engine.predict_chunked(flat, layout, Xt, self.activation, reduce)
        return torch.cat(parts, dim=0).cpu().numpy()

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

    @property
    def coefs_(self):
        """Per layer, weights of every member: ``(n_estimators, fan_in, fan_out)``."""
        check_is_fitted(self, "_flat")
        layout = _engine.Layout(self._layout_sizes)
        return [W.numpy() for W, _ in layout.views(torch.from_numpy(self._flat))]

    @property
    def intercepts_(self):
        """Per layer, biases of every member: ``(n_estimators, fan_out)``."""
        check_is_fitted(self, "_flat")
        layout = _engine.Layout(self._layout_sizes)
        return [b.numpy()[:, 0, :] for _, b in layout.views(torch.from_numpy(self._flat))]
