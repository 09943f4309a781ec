"""BaseNeuralBagging: parameters, validation, and the calls into the one fit pipeline.

Owns: the estimator's parameters and their constraints, input validation, ``fit`` and
``partial_fit`` (both one call of :func:`skensemble._pipeline.fit`, which returns the new
fitted state, :class:`~skensemble._fitted.FittedEnsemble`, held as ``_fitted``), the
forward pass of ``predict`` over that state, and pickling. The scikit-learn-named fitted
attributes read from ``_fitted`` (:class:`~skensemble._attributes.FittedAttributes`). The
task classes (:mod:`._regressor`, :mod:`._classifier`) name their task
(:mod:`._tasks`: targets, loss, aggregation) and aggregate predictions.

Must not hold fit or training mechanics: planning and executing a fit live in
:mod:`._pipeline`, the epoch loop in :mod:`._training`, scaling in :mod:`._scaling`,
the forward pass of a fitted ensemble in :mod:`._predict`, device/engine/thread choices
in :mod:`._dispatch`.
"""

import functools
from abc import ABCMeta, abstractmethod
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_feature_names_in,
    _check_sample_weight,
    _check_y,
    _num_samples,
    check_consistent_length,
    check_is_fitted,
    validate_data,
)

from . import (
    _dask,
    _dispatch,
    _engines,
    _hyperspace,
    _optim,
    _pipeline,
    _predict,
    _tabular,
    _version,
)
from ._attributes import FittedAttributes

_FLOAT = (np.float64, np.float32)


def _numeric(validate, *args, **kwargs):
    """``validate(*args, **kwargs)`` for numeric matrices; strings get a hint to name them."""
    try:
        return validate(*args, **kwargs)
    except ValueError as exc:
        if "could not convert string to float" not in str(exc):
            raise
        raise ValueError(
            f"{exc}. X holds strings: pass a pandas or polars DataFrame whose categorical "
            "columns have a category or string dtype, or name them in "
            "categorical_features (column indices, names or a boolean mask).") from exc

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


class BaseNeuralBagging(FittedAttributes, BaseEstimator, metaclass=ABCMeta):
    """Shared machinery of :class:`NeuralBaggingRegressor` and :class:`NeuralBaggingClassifier`.

    Not for direct use: it has no loss of its own.
    """

    _parameter_constraints = {
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(_hyperspace.ACTIVATIONS))],
        "solver": [StrOptions(set(_optim.SOLVERS))],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions(set(_optim.SCHEDULES) | {"auto"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
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
        "categorical_features": [None, StrOptions({"from_dtype"}), "array-like"],
        "max_categories": [Interval(Integral, 1, None, closed="left")],
        "min_frequency": [Interval(Real, 0, None, closed="left")],
        "oob_score": ["boolean"],
        "ensemble_selection": [None, Interval(Integral, 1, None, closed="left")],
        "warm_start": ["boolean"],
        "init": [StrOptions({"random", "mothernet"})],
        "n_mothernets": [Interval(Integral, 1, None, closed="left")],
        "mothernet_noise": [Interval(Real, 0, None, closed="left")],
        "n_jobs": [None, Integral],
        "random_state": ["random_state"],
        "device": [str],
        "engine": [StrOptions({"auto", *_engines.NAMES})],
        "verbose": ["verbose"],
    }


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
        learning_rate="auto",
        learning_rate_init=2e-3,
        power_t=0.5,
        max_iter="auto",
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
        n_bins=24,
        categorical_features="from_dtype",
        max_categories=64,
        min_frequency=5,
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
        self.categorical_features = categorical_features
        self.max_categories = max_categories
        self.min_frequency = min_frequency
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

    # ------------------------------------------------------------ task
    @abstractmethod
    def _task(self):
        """The task (:mod:`._tasks`): targets, loss, aggregation, scores."""

    # ------------------------------------------------------------- fit
    def _row_weights(self, y, classes, previous):
        """Weights ``(N,)`` the task multiplies into ``sample_weight`` (None: none).

        The classifier's ``class_weight``; ``classes`` and ``previous`` (the fitted state
        a ``partial_fit`` continues) say which labels it knows.
        """
        return None

    def _validate_fit_data(self, X, y, sample_weight, reset, schema=None, classes=None,
                           previous=None):
        """Validated ``(X, y, sample_weight)``; ``X`` a float matrix, or a table as it came.

        A table (a DataFrame with categorical columns, or any input with
        ``categorical_features`` naming columns; ``schema``: the fitted one of a warm
        start or a later ``partial_fit``) is read column by column (:mod:`._tabular`).
        ``sample_weight`` is multiplied by :meth:`_row_weights` (``class_weight``) before
        it is scaled to mean 1, so that both give what their product passed as
        ``sample_weight`` gives.
        """
        task = self._task()
        columns = (schema.categorical.size > 0 if schema is not None
                   else _tabular.reads_columns(X, self.categorical_features))
        if _dask.is_dask(X, y, sample_weight):  # read partition by partition (:mod:`._dask`)
            X, y, sample_weight = _dask.fit_data(self, X, y, sample_weight, reset, schema,
                                                 task)
        elif columns:
            if not _tabular.is_dataframe(X):
                X = np.asarray(X)
                X = X.astype(object) if X.dtype.kind in "USO" else X
                if X.ndim != 2:
                    raise ValueError(f"Expected a 2-D X, got {X.ndim} dimension(s).")
            validate_data(self, X, skip_check_array=True, reset=reset)  # names, counts
            y = _check_y(y, multi_output=task.multi_output,
                         y_numeric=task.loss != "log_loss")
            if _num_samples(X) < 1:
                raise ValueError(f"Found array with 0 sample(s) (shape={X.shape}) while a "
                                 "minimum of 1 is required.")
            check_consistent_length(X, y)
        else:
            X, y = _numeric(validate_data, self, X, y, dtype=_FLOAT,
                            ensure_all_finite="allow-nan", multi_output=task.multi_output,
                            y_numeric=task.loss != "log_loss", reset=reset)
        sw = None
        extra = self._row_weights(y, classes, previous)  # (N,) or None
        if sample_weight is not None or extra is not None:
            sw = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
            if extra is not None:
                sw = sw * extra
            if not np.any(sw > 0):
                raise ValueError("sample_weight has no positive entry"
                                 f"{'' if extra is None else ' (times class_weight)'}; "
                                 "nothing to fit.")
            sw = sw / sw.mean()  # mean 1: the learning rate keeps its meaning
        return X, y, sw

    # --------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=True)
    @_all_or_nothing
    def fit(self, X, y, sample_weight=None):
        """Train all members at once.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data. Sparse matrices are not supported. A numeric Dask array or
            DataFrame is read partition by partition, ``y`` (and a Dask
            ``sample_weight``) then with the same partitions (:ref:`dask_input`).
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
        previous = self.__dict__.get("_fitted")
        mode = "fresh"
        if self.warm_start and previous is not None:
            mode = "resume" if self.n_estimators == len(previous.archs) else "more"
        return self._fit(X, y, sample_weight, mode, previous, reset=True)

    def _fit(self, X, y, sample_weight, mode, previous, reset, classes=None):
        """Validate, then run the one fit pipeline in ``mode``; keep the new fitted state."""
        keep = previous is not None and mode != "fresh"  # the fitted columns' reading
        X, y, sw = self._validate_fit_data(X, y, sample_weight, reset=reset,
                                           schema=previous.schema if keep else None,
                                           classes=classes,
                                           previous=previous if mode == "partial" else None)
        settings = _pipeline.Settings(self.get_params(deep=False))
        self._fitted = _pipeline.fit(settings, self._task(), X, y, sw, previous, mode,
                                     classes=classes,
                                     names=getattr(self, "feature_names_in_", None))
        return self

    @_all_or_nothing
    def _partial_fit(self, X, y, sample_weight, classes=None):
        """One more epoch for every member on ``(X, y)``; initialises on the first call."""
        previous = self.__dict__.get("_fitted")
        return self._fit(X, y, sample_weight, "partial", previous, reset=previous is None,
                         classes=classes)

    # ------------------------------------------------------------- predict
    def _member_outputs(self, X, reduce, transform=True, weighted=False):
        """Validate ``X``, run the members in row chunks, concatenate ``reduce``d chunks.

        ``reduce`` receives the members' transformed outputs ``(E, n, O)`` (float64), or
        their raw outputs with ``transform=False``. With ``weighted``, only the members
        of positive ``ensemble_weights_`` run (zero-weight members are not computed),
        and ``reduce(out, weights)`` also receives their weights ``(E',)`` (a float64
        tensor on ``out``'s device), or None when every member runs with equal weight.
        """
        check_is_fitted(self)
        fitted = self._fitted
        if fitted.schema.categorical.size:  # a table: read column by column, in chunks
            if not _tabular.is_dataframe(X):
                X = np.asarray(X)
            validate_data(self, X, skip_check_array=True, reset=False)
        else:
            X = _numeric(validate_data, self, X, dtype=_FLOAT, ensure_all_finite="allow-nan",
                         reset=False)
        task = self._task()
        fn = task.transform_outputs if transform else (lambda out: out.double())
        if weighted:
            groups, columns, weights = fitted.selected()
        else:
            groups, columns, weights = fitted.groups, fitted.columns(fitted.features), None
        device = _dispatch.predict_device(self.device)
        w = None if weights is None else torch.from_numpy(weights).to(device)

        def call(out, rows):
            return reduce(fn(out), w) if weighted else reduce(fn(out))

        work = X.shape[0] * sum(g.flat.size for g in groups)
        with _dispatch.thread_limit(_dispatch.default_threads(work), "batched"):
            # each chunk of rows is scaled on its own: memory bounded by the chunk
            return _predict.run_chunked(groups, columns, fitted.encoding, fitted.activation, X,
                                        device, call, scale=fitted.standardise)

    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: object's is the instance's __dict__
        if "_fitted" in state:
            state["_skensemble_format"] = _version.FORMAT
            state["_skensemble_version"] = _version.__version__
        return state

    def __setstate__(self, state):
        if "_fitted" in state or "_groups" in state:
            fmt = state.get("_skensemble_format")
            if fmt != _version.FORMAT:
                raise ValueError(
                    f"This {type(self).__name__} was saved by skensemble "
                    f"{state.get('_skensemble_version', '< 0.1')} (model format {fmt}); this is "
                    f"skensemble {_version.__version__} (format {_version.FORMAT}), which "
                    "cannot read it. Load it with the version that saved it, or refit."
                )
        super().__setstate__(state)

    def get_feature_names_out(self, input_features=None):
        """Names of the inputs the members' first layers read.

        The numeric columns, a ``<column>_missing`` indicator for each numeric column that
        had missing values in training, then one name per code of each categorical
        column: ``<column>_<level>`` for the levels kept, ``<column>_infrequent`` (rare or
        unseen levels) and ``<column>_missing``. A member's first-layer rows follow these
        inputs (with ``numeric_encoding="piecewise_linear"``, each numeric input's bins
        follow it; see :meth:`get_member_params`).

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Must equal ``feature_names_in_`` where it is defined (scikit-learn's rule).

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        _check_feature_names_in(self, input_features)
        return self._fitted.schema.feature_names()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # imputed, with an indicator where fit saw them
        tags.input_tags.categorical = True  # DataFrames' category/string columns
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
