"""Property-based tests of the estimators' input contract.

The contract (from the issue): over awkward inputs -- shapes, dtypes, values, targets --
and every public method, each call either

* succeeds with FINITE outputs of the documented shape and dtype (float64 predictions
  and probabilities, probability rows summing to 1, labels from ``classes_``), or
* raises ``ValueError``/``TypeError`` (``NotFittedError`` is a ``ValueError``) with a
  message that names the problem.

No other exception type may escape (RuntimeError, IndexError, ZeroDivisionError, torch
or numba errors, ...). Three more checks sharpen "succeeds":

* when ``fit`` accepted data, every method on the same data must succeed too (a clean
  error from ``predict`` on the training rows means ``fit`` should have refused them);
* regression predictions on the training rows stay within 1000 target standard
  deviations of the target mean (catches silent garbage such as predictions of 1e15
  for targets of size 1);
* ``to_torch()``'s module agrees with ``predict``/``predict_proba``.

How the file is built
---------------------
``Case`` is one input (category, name, task, X, y, batch_size, optional predict-time
``X_new``/``y_new``); ``exercise(case)`` fits a tiny ensemble and calls every public
method, recording per method ``ok``, ``clean`` (ValueError/TypeError) or a violation.
Failure messages name the method and print the input (small arrays in full), so a
failing example reads as "method M broke on input I".

* ``test_case``: deterministic cases, named ``<category>-<name>-<task>-bs<batch>``, so
  every input kind of the issue is certainly covered.
* ``test_random``: hypothesis draws per (category, task).
* ``test_*_scale_invariance``: internal standardisation makes fits invariant to the
  units of X and y (README: "unscaled data trains as well as scaled data").

Every breach of the contract fails the run (the nine package bugs this suite found are
fixed; their history is in git).

Summary table for a README::

    python tests/test_properties.py --table [--draws N] [--verbose]

runs the deterministic cases and N hypothesis draws per (category, task) outside pytest
and prints "category | cases | succeeded | clean errors | other failures", plus the
same per method.

Environment: ``SKENSEMBLE_HYPOTHESIS_PROFILE=skensemble-dev`` draws 100 random (not
derandomized) examples per test instead of the CI profile's 30 derandomized ones.
"""

import copy
import math
import os
import sys
import traceback
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from skensemble import NeuralBaggingClassifier, NeuralBaggingRegressor

# ----------------------------------------------------------------------------- settings
TINY = dict(n_estimators=2, hidden_layer_sizes=(4,), max_iter=3, random_state=0)
E = TINY["n_estimators"]
BATCH_SIZES = (1, 3, "auto")
CATEGORIES = ("shapes", "dtypes", "values", "targets", "methods")
TASKS = ("reg", "clf")
F32_MAX = float(np.finfo(np.float32).max)

settings.register_profile(
    "skensemble-ci", max_examples=30, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "skensemble-dev", max_examples=100, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings(
    parent=settings.get_profile(os.environ.get("SKENSEMBLE_HYPOTHESIS_PROFILE", "skensemble-ci"))
)

METHODS = {
    "reg": ("predict", "predict_std", "predict_members", "score", "partial_fit", "to_torch",
            "partial_fit_first"),
    "clf": ("predict", "predict_proba", "predict_log_proba", "predict_proba_members", "score",
            "partial_fit", "to_torch", "partial_fit_first"),
}
ALL_METHODS = ("fit", *dict.fromkeys(METHODS["reg"] + METHODS["clf"]))

# Bagging options that change which rows and features each member sees (drawn now and
# then, so that the contract is also checked off the default path).
FEATURE_SUBSETS = ({"max_features": 0.5}, {"max_features": 1, "bootstrap_features": True})
OPTION_SETS = ({}, {"bootstrap": True}, {"bootstrap": True, "oob_score": True},
               {"max_samples": 0.5}, *FEATURE_SUBSETS, {"early_stopping": True},
               {"early_stopping": True, "bootstrap": True})


def make(task, batch_size="auto", params=None):
    cls = NeuralBaggingRegressor if task == "reg" else NeuralBaggingClassifier
    return cls(**TINY, batch_size=batch_size, **(params or {}))


# -------------------------------------------------------------------------- the case
def describe(v, limit=80):
    """Short but reproducible text for an input (small arrays in full)."""
    if isinstance(v, pd.DataFrame):
        body = v.to_dict("list") if v.size <= limit else "..."
        return f"DataFrame{v.shape} dtypes={[str(d) for d in v.dtypes]} {body}"
    if isinstance(v, pd.Series):
        body = v.tolist() if v.size <= limit else "..."
        return f"Series({len(v)}, dtype={v.dtype}) {body}"
    if isinstance(v, np.ndarray):
        flags = []
        if not v.flags.writeable:
            flags.append("read-only")
        if v.ndim > 1 and v.flags.f_contiguous and not v.flags.c_contiguous:
            flags.append("F-order")
        if not (v.flags.c_contiguous or v.flags.f_contiguous):
            flags.append(f"strided{v.strides}")
        if v.size <= limit:
            body = np.array2string(v, separator=", ", threshold=limit, floatmode="unique",
                                   max_line_width=10**6)
        else:
            try:
                a = v.astype(np.float64)
                body = f"values in [{a.min():.3g}, {a.max():.3g}]"
            except (TypeError, ValueError):
                body = "..."
        return f"ndarray[{v.dtype}]{v.shape}{''.join(' ' + f for f in flags)} {body}"
    if isinstance(v, list):
        return f"list(len={len(v)}) {v!r:.{limit * 12}}"
    if hasattr(v, "toarray"):
        return f"{type(v).__name__}{v.shape}"
    return repr(v)[:200]


@dataclass
class Case:
    category: str
    name: str
    task: str
    X: object
    y: object
    batch_size: object = "auto"
    X_new: object = None  # predict-time input; None: the training X
    y_new: object = None  # labels for score(X_new, y_new); None: y
    same_data: bool = False  # X_new re-encodes X (so fit's acceptance binds X_new too)
    fit_first: bool = True  # False: call every method on an unfitted estimator
    classes: object = None  # `classes` for the classifier's first partial_fit
    methods: tuple = None  # None: every public method of the task
    params: dict = None  # extra estimator parameters (OPTION_SETS)

    @property
    def id(self):
        return f"{self.category}-{self.name}-{self.task}-bs{self.batch_size}"

    def __repr__(self):
        parts = [f"{self.category}/{self.name}", f"task={self.task}",
                 f"batch_size={self.batch_size!r}", f"X={describe(self.X)}",
                 f"y={describe(self.y)}"]
        if self.X_new is not None:
            parts.append(f"X_new={describe(self.X_new)}")
        if self.y_new is not None:
            parts.append(f"y_new={describe(self.y_new)}")
        if self.params:
            parts.append(f"params={self.params!r}")
        if not self.fit_first:
            parts.append("unfitted")
        if self.classes is not None:
            parts.append(f"classes={self.classes!r}")
        return "Case(" + ", ".join(parts) + ")"


class Violation(Exception):
    """A breach of the contract."""


@dataclass
class Step:
    method: str
    status: str  # "ok", "clean", "violation"
    detail: str = ""


@dataclass
class Result:
    case: Case
    steps: list = field(default_factory=list)

    @property
    def violations(self):
        return [s for s in self.steps if s.status == "violation"]

    @property
    def status(self):
        kinds = {s.status for s in self.steps}
        if "violation" in kinds:
            return "other"
        return "clean" if "clean" in kinds else "ok"

    def explain(self):
        lines = [f"{s.method}: {s.detail}" for s in self.violations]
        trace = ", ".join(f"{s.method}={s.status}" for s in self.steps)
        return ("\n".join(lines) + f"\ninput: {self.case!r}\nsteps: {trace}")


# ------------------------------------------------------------------- input helpers
def _n_rows(X):
    return X.shape[0] if hasattr(X, "shape") else len(X)


def _as_float64(v):
    """``v`` as a float64 ndarray, or None when it does not convert."""
    try:
        if hasattr(v, "to_numpy"):
            v = v.to_numpy(dtype=np.float64)
        elif hasattr(v, "toarray"):
            return None
        with np.errstate(all="ignore"):
            return np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        return None


def _max_abs(v):
    a = _as_float64(v)
    if a is None or a.size == 0:
        return 0.0
    a = a[np.isfinite(a)]
    return float(np.abs(a).max(initial=0.0))


def _has_far_constant_column(v, far=1e12):
    """A (near-)constant column with |mean| >= far (the constant-column-residue bug)."""
    a = _as_float64(v)
    if a is None or a.size == 0 or not np.isfinite(a).all():
        return False
    a = a.reshape(a.shape[0], -1)
    with np.errstate(all="ignore"):
        mean = a.mean(0)
        spread = a.max(0) - a.min(0)
    return bool(np.any((np.abs(mean) >= far) & (spread <= 1e-9 * np.abs(mean))))


def _has_tiny_spread_column(v):
    """A varying column with std below the package's absolute 1e-12 floor."""
    a = _as_float64(v)
    if a is None or a.size == 0 or not np.isfinite(a).all():
        return False
    a = a.reshape(a.shape[0], -1)
    with np.errstate(all="ignore"):
        std = a.std(0)
    return bool(np.any((std > 0) & (std <= 1e-12 * np.maximum(1.0, np.abs(a.mean(0))))))


_LEAKY_MESSAGES = (  # internal errors that say nothing about the user's input
    "truth value of an array", "could not be broadcast", "out of bounds",
    "must be the same", "expected scalar type", "numba", "math domain error",
    "division by zero", "unhashable", "torch.cat", "non-empty list of tensors",
)


def _bad_message(message):
    text = message.strip()
    if len(text) < 12:
        return "too short"
    low = text.lower()
    for phrase in _LEAKY_MESSAGES:
        if phrase in low:
            return f"internal error text {phrase!r}"
    if "training diverged" in low:  # defaults never diverge on internally scaled data
        return "blames the optimizer (defaults, internally scaled data)"
    return None


def _where(exc):
    """Innermost traceback frame, preferring skensemble's own code."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if "skensemble" in f.filename and "test_properties" not in f.filename]
    f = (own or frames or [None])[-1]
    return "" if f is None else f" (at {os.path.basename(f.filename)}:{f.lineno} in {f.name})"


# -------------------------------------------------------------------- output checks
def _check_array(out, what, shape, dtype=np.float64):
    if not isinstance(out, np.ndarray):
        raise Violation(f"{what} is a {type(out).__name__}, not an ndarray")
    if dtype is not None and out.dtype != dtype:
        raise Violation(f"{what} has dtype {out.dtype}, not {np.dtype(dtype)}")
    if out.shape != shape:
        raise Violation(f"{what} has shape {out.shape}, expected {shape}")
    if out.dtype.kind == "f" and not np.isfinite(out).all():
        bad = out[~np.isfinite(out)]
        raise Violation(f"{what} has {bad.size} non-finite value(s), e.g. {bad.ravel()[:3]}")


def _close(a, b, rel):
    """Column-wise relative closeness (robust to columns of very different scale)."""
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    tol = rel * (np.abs(b) + np.abs(b).max(axis=0, keepdims=True)) + 1e-300
    return bool(np.all(np.abs(a - b) <= tol))


def _reg_shape(case, n):
    y = np.asarray(case.y, dtype=object) if not hasattr(case.y, "ndim") else case.y
    return (n,) if y.ndim == 1 else (n, np.shape(y)[1])


def _eval_X(case):
    return case.X if case.X_new is None else case.X_new


def _eval_y(case):
    return case.y if case.X_new is None or case.y_new is None else case.y_new


def _check_plausible(case, pred):
    """Training-row predictions within 1000 target std (or 1000) of the target mean."""
    if case.X_new is not None and not case.same_data:
        return
    y = _as_float64(case.y)
    if y is None:
        return
    y = y.reshape(len(y), -1)
    with np.errstate(all="ignore"):
        mean, std = y.mean(0), y.std(0)
    if not (np.isfinite(mean).all() and np.isfinite(std).all()):
        return
    dev = np.abs(pred.reshape(len(pred), -1) - mean)
    limit = 1e3 * np.maximum(std, 1.0)
    if np.any(dev > limit):
        raise Violation(
            f"implausible predictions on the training rows: up to {dev.max():.3g} away from "
            f"the target mean {mean.tolist()} (target std {std.tolist()})"
        )


def check_fit(est, case):
    out = est.fit(case.X, case.y)
    if out is not est:
        raise Violation("fit did not return self")
    if case.task == "clf" and len(est.classes_) < 2:
        raise Violation(f"fit accepted fewer than 2 classes: {est.classes_!r}")


def check_predict_reg(est, case, X=None):
    X = _eval_X(case) if X is None else X
    pred = est.predict(X)
    _check_array(pred, "predict(X)", _reg_shape(case, _n_rows(X)))
    if X is _eval_X(case):
        _check_plausible(case, pred)
    return pred


def check_predict_std(est, case):
    X = _eval_X(case)
    out = est.predict(X, return_std=True)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise Violation(f"predict(X, return_std=True) returned {type(out).__name__}, not a pair")
    shape = _reg_shape(case, _n_rows(X))
    _check_array(out[0], "predict(X, return_std=True)[0]", shape)
    _check_array(out[1], "predict(X, return_std=True)[1]", shape)
    if np.any(out[1] < 0):
        raise Violation("negative standard deviation")
    if not _close(out[0], est.predict(X), 1e-9):
        raise Violation("the mean from return_std=True differs from predict(X)")


def check_predict_members(est, case):
    X = _eval_X(case)
    out = est.predict_members(X)
    _check_array(out, "predict_members(X)", (E, *_reg_shape(case, _n_rows(X))))
    if not _close(out.mean(0), est.predict(X), 1e-9):
        raise Violation("the mean of predict_members(X) differs from predict(X)")


def check_predict_proba(est, case, X=None):
    X = _eval_X(case) if X is None else X
    proba = est.predict_proba(X)
    _check_array(proba, "predict_proba(X)", (_n_rows(X), len(est.classes_)))
    if np.any(proba < 0) or np.any(proba > 1):
        raise Violation("probabilities outside [0, 1]")
    if not np.allclose(proba.sum(1), 1.0, rtol=0, atol=1e-9):
        raise Violation(f"probability rows do not sum to 1: {proba.sum(1)[:5]}")
    return proba


def check_predict_log_proba(est, case):
    X = _eval_X(case)
    logp = est.predict_log_proba(X)
    proba = est.predict_proba(X)
    if isinstance(logp, np.ndarray) and logp.shape == proba.shape and np.any(
        np.isneginf(logp) & (proba == 0)
    ):
        raise Violation(
            f"predict_log_proba(X) is -inf where predict_proba(X) underflowed to 0 "
            f"({int(np.isneginf(logp).sum())} entries)")
    _check_array(logp, "predict_log_proba(X)", proba.shape)
    if np.any(logp > 1e-12):
        raise Violation("log-probabilities above 0")
    if not np.allclose(np.exp(logp), proba, rtol=1e-9, atol=1e-12):
        raise Violation("exp(predict_log_proba(X)) differs from predict_proba(X)")


def check_predict_proba_members(est, case):
    X = _eval_X(case)
    out = est.predict_proba_members(X)
    _check_array(out, "predict_proba_members(X)", (E, _n_rows(X), len(est.classes_)))
    if np.any(out < 0) or np.any(out > 1):
        raise Violation("member probabilities outside [0, 1]")
    if not np.allclose(out.sum(-1), 1.0, rtol=0, atol=1e-6):
        raise Violation("member probability rows do not sum to 1")
    if not np.allclose(out.mean(0), est.predict_proba(X), rtol=0, atol=1e-6):
        raise Violation("the mean of predict_proba_members(X) differs from predict_proba(X)")


def check_predict_clf(est, case):
    X = _eval_X(case)
    pred = est.predict(X)
    _check_array(pred, "predict(X)", (_n_rows(X),), dtype=None)
    if not np.all(np.isin(pred, est.classes_)):
        raise Violation(f"predict(X) returned labels not in classes_: {pred[:5]!r}")
    expected = est.classes_[np.argmax(est.predict_proba(X), axis=1)]
    if not np.array_equal(pred, expected):
        raise Violation("predict(X) is not classes_[argmax(predict_proba(X))]")


def check_score(est, case):
    X, y = _eval_X(case), _eval_y(case)
    s = est.score(X, y)
    if not isinstance(s, (float, np.floating)):
        raise Violation(f"score returned {type(s).__name__}, not a float")
    if not math.isfinite(s):
        raise Violation(f"score(X, y) = {s}")
    if case.task == "clf" and not 0.0 <= s <= 1.0:
        raise Violation(f"accuracy {s} outside [0, 1]")
    if case.task == "reg" and s > 1 + 1e-9:
        raise Violation(f"R^2 {s} above 1")


def _check_after_partial_fit(est, case):
    if case.task == "reg":
        check_predict_reg(est, case)
    else:
        check_predict_proba(est, case)


def check_partial_fit(est, case):
    est = copy.deepcopy(est)  # keep the fitted model for the other methods
    if est.partial_fit(case.X, case.y) is not est:
        raise Violation("partial_fit did not return self")
    _check_after_partial_fit(est, case)


def check_partial_fit_first(case):
    est = make(case.task, case.batch_size, case.params)
    if case.task == "clf":
        classes = case.classes
        if classes is None:
            try:
                classes = np.unique(np.asarray(case.y))
            except (TypeError, ValueError):
                classes = None
        out = est.partial_fit(case.X, case.y, classes=classes)
    else:
        out = est.partial_fit(case.X, case.y)
    if out is not est:
        raise Violation("partial_fit did not return self")
    _check_after_partial_fit(est, case)


def _conditioning(case, A):
    """Rough float32 condition of standardising ``A`` with the training data's statistics."""
    T = _as_float64(case.X)
    if T is None or T.ndim != 2 or T.shape[1] != A.shape[1]:
        return np.inf
    with np.errstate(all="ignore"):
        mean, std = T.mean(0), T.std(0)
        scale = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
        cond = (np.abs(A - mean).max(0) + np.abs(mean)) / scale
    return float(np.max(cond)) if np.isfinite(cond).all() else np.inf


def check_to_torch(est, case):
    try:
        module = est.to_torch()
    except ValueError as e:  # documented: a tensor cannot carry categorical columns
        fitted = est.__dict__.get("_fitted")
        if fitted is not None and fitted.schema.categorical.size and (
                "categorical columns" in str(e)):
            return
        raise
    if not isinstance(module, torch.nn.Module):
        raise Violation(f"to_torch() returned {type(module).__name__}, not a torch.nn.Module")
    A = _as_float64(_eval_X(case))
    if A is None or A.ndim != 2 or A.size == 0 or not np.isfinite(A).all() or (
        np.abs(A).max() >= F32_MAX
    ):
        return  # not a valid float32 input for the module: nothing more to compare
    A32 = np.ascontiguousarray(A.astype(np.float32))
    # What the estimator says about the same (float32-rounded) rows; if it refuses them,
    # the module (which has no checks) is not held to anything.
    try:
        if case.task == "reg":
            expected = est.predict(A32.astype(np.float64))
        else:
            expected = est.predict_proba(A32.astype(np.float64))
    except (ValueError, TypeError):
        return
    with torch.no_grad():
        out = module(torch.from_numpy(A32))
    # documented: float64 means (targets may exceed float32), float32 probabilities
    want = torch.float64 if case.task == "reg" else torch.float32
    if not isinstance(out, torch.Tensor) or out.dtype != want:
        raise Violation(f"to_torch() module returned {type(out).__name__} "
                        f"{getattr(out, 'dtype', '')}, not a {want} tensor")
    out = out.numpy()
    if out.shape != expected.shape:
        raise Violation(f"to_torch() module output shape {out.shape}, predict gives "
                        f"{expected.shape}")
    if not np.isfinite(out).all():
        raise Violation("to_torch() module output is non-finite where predict is finite")
    if _conditioning(case, A) <= 1e3:
        ok = (_close(out, expected, 1e-3) if case.task == "reg"
              else np.allclose(out, expected, rtol=0, atol=1e-3))
        if not ok:
            raise Violation(
                f"to_torch() module disagrees with the estimator: max |diff| "
                f"{np.abs(out - expected).max():.3g}")


CHECKS = {
    ("reg", "predict"): check_predict_reg,
    ("reg", "predict_std"): check_predict_std,
    ("reg", "predict_members"): check_predict_members,
    ("clf", "predict"): check_predict_clf,
    ("clf", "predict_proba"): check_predict_proba,
    ("clf", "predict_log_proba"): check_predict_log_proba,
    ("clf", "predict_proba_members"): check_predict_proba_members,
}
for _t in TASKS:
    CHECKS[_t, "score"] = check_score
    CHECKS[_t, "partial_fit"] = check_partial_fit
    CHECKS[_t, "to_torch"] = check_to_torch


# ------------------------------------------------------------------------ exercise
def _run_step(result, case, method, fn, must_succeed):
    status, detail = "ok", ""
    try:
        fn()
    except Violation as v:
        status, detail = "violation", str(v)
    except (ValueError, TypeError) as e:
        msg = " ".join(str(e).split())
        problem = _bad_message(msg)
        if problem:
            status = "violation"
            detail = (f"{type(e).__name__} whose message does not name the problem "
                      f"({problem}): {msg[:300]}{_where(e)}")
        elif must_succeed and not (method == "score" and "fewer than 2 samples" in msg):
            # (R^2 of a single row is undefined: score says so instead of returning nan)
            status = "violation"
            detail = (f"fit accepted these data, but {method} on them raised "
                      f"{type(e).__name__}: {msg[:300]}{_where(e)}")
        else:
            status, detail = "clean", f"{type(e).__name__}: {msg[:200]}"
    except Exception as e:  # noqa: BLE001 - the property under test
        status = "violation"
        detail = f"{type(e).__module__}.{type(e).__name__}: {str(e)[:300]}{_where(e)}"
    result.steps.append(Step(method, status, detail))
    return status


def exercise(case):
    """Fit ``case`` and call every public method; one ``Step`` per call."""
    result = Result(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = make(case.task, case.batch_size, case.params)
        fitted = False
        if case.fit_first:
            fitted = _run_step(result, case, "fit", lambda: check_fit(est, case), False) == "ok"
        binds = fitted and (case.X_new is None or case.same_data)
        for method in case.methods or METHODS[case.task]:
            if method == "partial_fit_first":
                _run_step(result, case, method, lambda: check_partial_fit_first(case), False)
                continue
            if case.fit_first and not fitted:
                continue  # fit refused the input; there is no model to call
            check = CHECKS[case.task, method]
            _run_step(result, case, method, lambda c=check: c(est, case), binds)
    return result


def assert_contract(result):
    if result.violations:
        pytest.fail(
            f"{len(result.violations)} contract violation(s) for {result.case.id}:\n"
            + result.explain(), pytrace=False)


@pytest.fixture(scope="module", autouse=True)
def _warm_numba_kernel():
    """batch_size=1 runs a numba kernel; compile it (or load its cache) once, up front."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        X = np.arange(8.0).reshape(4, 2)
        make("reg", 1).fit(X, X[:, 0])
        make("clf", 1).fit(X, [0, 1, 0, 1])


# ------------------------------------------------------------- deterministic cases
_R = np.random.RandomState(0)
X12 = _R.normal(size=(12, 3))
XBIG = _R.normal(size=(24, 8))


def default_y(task, n, seed=1):
    r = np.random.RandomState(seed)
    if task == "reg":
        return r.normal(size=n)
    return np.arange(n) % 2


def _readonly(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


def _cases():
    cases = []
    counter = Counter()

    def add(category, name, task, X, y=None, batch_size=None, **kw):
        if y is None:
            y = default_y(task, _n_rows(X))
        if kw.get("X_new") is not None and kw.get("y_new") is None:
            kw["y_new"] = default_y(task, _n_rows(kw["X_new"]))
        if batch_size is None:  # spread the three batch sizes over the cases
            counter[category] += 1
            batch_size = BATCH_SIZES[counter[category] % 3]
        cases.append(Case(category, name, task, X, y, batch_size, **kw))

    def both(category, name, X, **kw):
        for task in TASKS:
            add(category, name, task, X, **kw)

    # --- shapes
    both("shapes", "one_row", X12[:1])  # clf: one row is one class -> clean error
    both("shapes", "two_rows", X12[:2])
    both("shapes", "one_feature", X12[:, :1])
    both("shapes", "one_row_one_feature", X12[:1, :1])
    both("shapes", "many_features", XBIG[:12].repeat(8, axis=1))  # 12 x 64
    both("shapes", "more_features_than_rows", XBIG[:3, :8].repeat(3, axis=1))  # 3 x 24
    for bs in BATCH_SIZES:
        both("shapes", "more_features_than_rows_bs", XBIG[:4], batch_size=bs)
    both("shapes", "predict_one_row", X12, X_new=X12[:1])
    both("shapes", "predict_many_rows", X12, X_new=np.resize(X12, (3000, 3)))
    both("shapes", "empty", X12[:0], y=np.zeros(0))
    both("shapes", "zero_features", X12[:, :0])
    both("shapes", "X_1d", X12[:, 0])
    both("shapes", "X_3d", X12[:, :, None])
    add("shapes", "y_column_vector", "reg", X12, y=default_y("reg", 12)[:, None])
    for i, params in enumerate(OPTION_SETS[1:], 1):  # small data under every bagging option
        for task in TASKS:
            # partial_fit after feature subsets is its own case (partial-fit-drops-features)
            methods = tuple(m for m in METHODS[task]
                            if m != "partial_fit" or params not in FEATURE_SUBSETS)
            add("shapes", f"two_rows_options{i}", task, X12[:2], params=params,
                methods=methods)
            add("shapes", f"more_features_than_rows_options{i}", task, XBIG[:4],
                params=params, methods=methods)
            add("shapes", f"twelve_rows_options{i}", task, X12, params=params,
                batch_size="auto", methods=methods)  # batch 12: the batched engine
        add("shapes", f"one_row_options{i}", "reg", X12[:1], params=params,
            methods=tuple(m for m in METHODS["reg"] if m not in ("score", "partial_fit")))
    for i, params in enumerate(FEATURE_SUBSETS, 1):
        both("shapes", f"partial_fit_after_feature_subsets{i}", X12, params=params,
             batch_size="auto", methods=("partial_fit",))
    add("shapes", "y_length_mismatch", "reg", X12, y=default_y("reg", 5))
    add("shapes", "y_length_mismatch", "clf", X12, y=default_y("clf", 5))

    # --- dtypes
    ints = np.round(X12 * 3)
    for dt in ("float16", "float32", "float64", "int8", "int32", "int64", "uint8"):
        src = np.abs(ints) if dt == "uint8" else ints
        both("dtypes", dt, src.astype(dt))
    both("dtypes", "bool", X12 > 0)
    for bs in (1, "auto"):
        both("dtypes", "read_only", _readonly(X12), batch_size=bs)
        both("dtypes", "fortran_order", np.asfortranarray(X12), batch_size=bs)
        both("dtypes", "strided_slice", XBIG[::2, ::3], batch_size=bs)
        both("dtypes", "negative_strides", X12[::-1, ::-1], batch_size=bs)
    both("dtypes", "object_numbers", X12.astype(object))
    both("dtypes", "list_of_lists", X12.tolist())
    both("dtypes", "pandas_Int64", pd.DataFrame(
        {"a": pd.array(ints[:, 0].astype(int), dtype="Int64"),
         "b": pd.array(ints[:, 1].astype(int), dtype="Int64")}))
    both("dtypes", "pandas_Float64", pd.DataFrame(X12, columns=list("abc")).astype("Float64"))
    both("dtypes", "pandas_boolean", pd.DataFrame({"a": pd.array(X12[:, 0] > 0, dtype="boolean"),
                                                   "b": X12[:, 1]}))
    both("dtypes", "pandas_mixed_nullable", pd.DataFrame(
        {"i": pd.array(ints[:, 0].astype(int), dtype="Int64"),
         "f": pd.array(X12[:, 1], dtype="Float64"), "g": X12[:, 2].astype(np.float32)}))
    both("dtypes", "pandas_categorical_numeric", pd.DataFrame(
        {"c": pd.Categorical(ints[:, 0]), "x": X12[:, 1]}))
    both("dtypes", "pandas_categorical_strings", pd.DataFrame(
        {"c": pd.Categorical(np.where(X12[:, 0] > 0, "hi", "lo")), "x": X12[:, 1]}))
    na = pd.DataFrame({"a": pd.array(ints[:, 0].astype(int), dtype="Int64"), "b": X12[:, 1]})
    na.iloc[3, 0] = pd.NA
    both("dtypes", "pandas_Int64_with_NA", na)
    both("dtypes", "complex", X12.astype(complex))
    both("dtypes", "strings", np.where(X12 > 0, "a", "b"))
    import scipy.sparse as sp

    both("dtypes", "sparse_csr", sp.csr_matrix(X12))
    both("dtypes", "predict_float16_after_float64", X12, X_new=X12.astype(np.float16),
         same_data=False)
    both("dtypes", "predict_int_after_float", X12, X_new=ints.astype(np.int32))
    both("dtypes", "predict_fortran_read_only", X12, X_new=_readonly(np.asfortranarray(X12)),
         same_data=True)
    both("dtypes", "predict_dataframe_after_ndarray", X12, X_new=pd.DataFrame(X12),
         same_data=True)

    # --- values
    both("values", "huge_1e30", X12 * 1e30)
    both("values", "tiny_1e-30", X12 * 1e-30)
    both("values", "column_scales_1e30_1_1e-30", X12 * [1e30, 1.0, 1e-30])
    both("values", "negative_huge", -np.abs(X12) * 1e30)
    both("values", "constant_column", np.c_[X12[:, :2], np.full(12, 7.0)])
    both("values", "all_constant", np.full((12, 3), 7.0))
    both("values", "all_zero", np.zeros((12, 3)))
    both("values", "duplicated_rows_all", np.repeat(X12[:1], 12, axis=0))
    both("values", "duplicated_rows_pairs", np.repeat(X12[:6], 2, axis=0))
    for bs in (1, "auto"):
        both("values", "duplicated_rows_bs", np.repeat(X12[:4], 3, axis=0), batch_size=bs)
    both("values", "offset_1e6_spread_1e-3", 1e6 + X12 * 1e-3)
    both("values", "beyond_float32_1e300", X12 * 1e300)
    add("values", "constant_1e30_three_rows", "clf", np.full((3, 3), 1e30))
    for bs in BATCH_SIZES:  # regression on these diverges (or predicts nonsense)
        add("values", "constant_1e30_three_rows", "reg", np.full((3, 3), 1e30),
            batch_size=bs)
        add("values", "offset_1e30_relative_spread_1e-14", "reg", 1e30 + X12 * 1e16,
            batch_size=bs)
    both("values", "nan", np.where(X12 > 1, np.nan, X12))
    both("values", "inf", np.where(X12 > 1, np.inf, X12))
    both("values", "predict_far_1e5", X12, X_new=X12 * 1e5)
    both("values", "predict_far_1e30", X12, X_new=X12 * 1e30)
    both("values", "predict_beyond_float32_1e40", X12, X_new=X12 * 1e40)
    both("values", "predict_nan", X12, X_new=np.where(X12 > 1, np.nan, X12))

    # --- targets: regression
    yr = default_y("reg", 12)
    for name, y in [
        ("constant", np.full(12, 3.5)),
        ("constant_zero", np.zeros(12)),
        ("huge_1e30", yr * 1e30),
        ("tiny_1e-30", yr * 1e-30),
        ("tiny_1e-156", yr * 1e-156),
        ("integers", np.round(yr * 10).astype(int)),
        ("bool", yr > 0),
        ("list", yr.tolist()),
        ("numeric_strings", np.array([f"{v:.3f}" for v in yr])),
        ("pandas_Float64", pd.Series(yr, dtype="Float64")),
        ("pandas_Int64", pd.Series(np.round(yr * 10).astype(int), dtype="Int64")),
        ("multi_output_5", np.c_[yr, -yr, yr**2, np.sin(yr), np.ones(12)]),
        ("multi_output_extreme_finite_1e30",
         np.c_[yr * 1e30, -yr * 1e30, yr * 1e-30, np.full(12, 1e30)]),
        ("multi_output_dataframe", pd.DataFrame({"a": yr, "b": yr * 1e20})),
        ("beyond_float32_1e39", yr * 1e39),
        ("extreme_1e155", yr * 1e155),
        ("multi_output_extreme_1e200", np.c_[yr * 1e200, yr]),
        ("float64_max", np.r_[np.finfo(np.float64).max, -np.finfo(np.float64).max, yr[2:]]),
        ("nan", np.r_[np.nan, yr[1:]]),
        ("inf", np.r_[np.inf, yr[1:]]),
        ("non_numeric_strings", np.array(["a", "b"] * 6, dtype=object)),
        ("3d", yr.reshape(12, 1, 1)),
    ]:
        add("targets", name, "reg", X12, y=y)
    # --- targets: classification
    X40 = _R.normal(size=(40, 3))
    for name, X, y, kw in [
        ("single_class", X12, np.zeros(12, int), {}),
        ("two_classes", X12, np.arange(12) % 2, {}),
        ("imbalanced_11_to_1", X12, np.r_[np.zeros(11, int), 1], {}),
        ("strings_object", X12, np.array(["yes", "no", "maybe"] * 4, dtype=object), {}),
        ("strings_unicode", X12, np.array(["yes", "no", "maybe"] * 4), {}),
        ("bool", X12, np.arange(12) % 2 == 0, {}),
        ("float_labels", X12, (np.arange(12) % 3).astype(float), {}),
        ("negative_and_huge_ints", X12, np.array([-7, 2**62, 3] * 4), {}),
        ("many_classes_20", X40, np.arange(40) % 20, {}),
        ("many_classes_20_one_row_each", X40[:20], np.arange(20), {}),
        ("many_classes_20_strings", X40, np.array([f"c{i}" for i in range(20)] * 2), {}),
        ("pandas_categorical", X12, pd.Series(pd.Categorical(["a", "b", "c"] * 4)), {}),
        ("pandas_Int64", X12, pd.Series(np.arange(12) % 3, dtype="Int64"), {}),
        ("list_of_strings", X12, ["x", "y"] * 6, {}),
        ("partial_fit_classes_superset", X12, np.arange(12) % 2, {"classes": [0, 1, 2]}),
        ("partial_fit_label_outside_classes", X12, np.arange(12) % 3, {"classes": [0, 1]}),
        ("mixed_type_labels", X12, np.array([1, "a"] * 6, dtype=object), {}),
        ("continuous", X12, X12[:, 0], {}),
        ("nan_label", X12, np.r_[np.nan, np.arange(11) % 2], {}),
        ("two_dimensional", X12, np.c_[np.arange(12) % 2, np.arange(12) % 2], {}),
    ]:
        add("targets", name, "clf", X, y=y, **kw)

    # --- methods: each call on unusual predict-time input or estimator state
    both("methods", "all_on_training_rows", X12)
    for task in TASKS:
        add("methods", "unfitted", task, X12, fit_first=False,
            methods=tuple(m for m in METHODS[task] if m != "partial_fit_first"))
        methods = tuple(m for m in METHODS[task] if m not in ("partial_fit_first",))
        add("methods", "wrong_n_features", task, X12, X_new=X12[:, :2],
            y_new=default_y(task, 12), methods=methods)
        add("methods", "empty_X_new", task, X12, X_new=X12[:0], y_new=default_y(task, 0),
            methods=methods)
        add("methods", "X_new_list", task, X12, X_new=X12[:3].tolist(),
            y_new=default_y(task, 3))
        add("methods", "X_new_strings", task, X12, X_new=np.array([["a", "b", "c"]]),
            y_new=default_y(task, 1))
        add("methods", "X_new_1d", task, X12, X_new=X12[0], y_new=default_y(task, 3))
        add("methods", "X_new_inf", task, X12, X_new=np.array([[np.inf, 0, 0]]),
            y_new=default_y(task, 1))
        add("methods", "renamed_dataframe", task, pd.DataFrame(X12, columns=list("abc")),
            X_new=pd.DataFrame(X12, columns=list("abd")), y_new=default_y(task, 12))
    add("methods", "score_one_row", "reg", X12, X_new=X12[:1], y_new=np.array([0.5]))
    add("methods", "score_one_row", "clf", X12, X_new=X12[:1], y_new=np.array([1]))
    add("methods", "score_unseen_labels", "clf", X12, X_new=X12, y_new=np.arange(12) % 2 + 5)
    add("methods", "score_label_type_mismatch", "clf", X12, X_new=X12,
        y_new=np.array(["a"] * 12))
    add("methods", "multi_output_all", "reg", X12, y=np.c_[X12[:, 0], X12[:, 1] * 1e30])
    add("methods", "predict_log_proba_far", "clf", X12, X_new=X12 * 1e5,
        methods=("predict_log_proba",))
    return cases


CASES = _cases()


def _params():
    seen = Counter()
    out = []
    for case in CASES:
        seen[case.id] += 1
        cid = case.id if seen[case.id] == 1 else f"{case.id}-{seen[case.id]}"
        out.append(pytest.param(case, id=cid))
    return out


@pytest.mark.parametrize("case", _params())
def test_case(case):
    assert_contract(exercise(case))


def test_every_input_kind_is_covered():
    """Each kind the issue names has at least one deterministic case."""
    names = {(c.category, c.name) for c in CASES}
    required = {
        "shapes": ["one_row", "one_feature", "many_features", "more_features_than_rows"],
        "dtypes": ["float16", "float32", "float64", "int32", "int64", "bool", "pandas_Int64",
                   "pandas_Float64", "pandas_categorical_numeric", "read_only",
                   "fortran_order", "strided_slice"],
        "values": ["huge_1e30", "tiny_1e-30", "constant_column", "duplicated_rows_all"],
        "targets": ["constant", "single_class", "many_classes_20", "strings_object",
                    "multi_output_extreme_finite_1e30"],
        "methods": ["all_on_training_rows", "unfitted"],
    }
    missing = [(c, n) for c, ns in required.items() for n in ns if (c, n) not in names]
    assert not missing
    for task in TASKS:
        for method in METHODS[task]:
            assert any(method in (c.methods or METHODS[c.task]) for c in CASES if c.task == task)
    assert {c.batch_size for c in CASES} == set(BATCH_SIZES)


# ---------------------------------------------------------------- hypothesis cases
def _elements(lo=-5.0, hi=5.0):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, width=64)


MAGNITUDES = (0.0, 1e-30, 1e-10, 1.0, 1e10, 1e30, 1e150, 1e300)


@st.composite
def _targets(draw, task, n, simple=False):
    """y for ``n`` rows: regression (1-D or multi-output) or labels of several kinds."""
    if task == "reg":
        n_out = draw(st.sampled_from([None, 1, 2, 3]))
        cols = []
        for _ in range(n_out or 1):
            base = draw(hnp.arrays(np.float64, n, elements=_elements(-1, 1)))
            mag = 1.0 if simple else draw(st.sampled_from(MAGNITUDES))
            if not simple and draw(st.booleans()):
                base = np.full(n, base[0])  # constant column
            cols.append(base * mag)
        y = cols[0] if n_out is None else np.column_stack(cols)
        if simple:
            return y
        kind = draw(st.sampled_from(["ndarray", "float32", "list", "pandas"]))
        if kind == "float32" and np.abs(y).max(initial=0) < F32_MAX:
            return y.astype(np.float32)
        if kind == "list":
            return y.tolist()
        if kind == "pandas":
            return pd.Series(y, dtype="Float64") if y.ndim == 1 else pd.DataFrame(y)
        return y
    k = draw(st.integers(1, 4 if simple else 20))
    codes = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    if not simple and n >= k and draw(st.booleans()):
        codes[:k] = np.arange(k)  # every class present
    kind = "int" if simple else draw(st.sampled_from(
        ["int", "negative_int", "huge_int", "str_object", "str_unicode", "bool", "float",
         "categorical", "Int64"]))
    if kind == "bool" and k > 2:
        kind = "int"
    return {
        "int": lambda: codes,
        "negative_int": lambda: codes - 10,
        "huge_int": lambda: codes * 2**60,
        "str_object": lambda: np.array([f"class {c}" for c in codes], dtype=object),
        "str_unicode": lambda: np.array([f"c{c}" for c in codes]),
        "bool": lambda: codes.astype(bool),
        "float": lambda: codes * 0.5,
        "categorical": lambda: pd.Series(pd.Categorical([f"c{c}" for c in codes])),
        "Int64": lambda: pd.Series(codes, dtype="Int64"),
    }[kind]()


DTYPE_KINDS = ("float16", "float32", "float64", "int8", "int32", "int64", "uint8", "bool",
               "pandas_Int64", "pandas_Float64", "pandas_boolean", "pandas_categorical",
               "object", "list", "read_only", "fortran", "strided", "negative_strides")


_LOSSY_KINDS = {"bool", "uint8", "pandas_boolean"}


def _encode(base, kind):
    """The integer matrix ``base`` in container/dtype ``kind`` (exact for every kind)."""
    if kind in ("float16", "float32", "float64", "int8", "int32", "int64"):
        return base.astype(kind)
    if kind == "uint8":
        return np.abs(base).astype(np.uint8)
    if kind == "bool":
        return base > 0
    if kind == "pandas_Int64":
        return pd.DataFrame(base).astype("Int64")
    if kind == "pandas_Float64":
        return pd.DataFrame(base.astype(float)).astype("Float64")
    if kind == "pandas_boolean":
        return pd.DataFrame(base > 0).astype("boolean")
    if kind == "pandas_categorical":
        df = pd.DataFrame(base.astype(float))
        df[0] = pd.Categorical(df[0])
        return df
    if kind == "object":
        return base.astype(object)
    if kind == "list":
        return base.tolist()
    if kind == "read_only":
        return _readonly(base.astype(float))
    if kind == "fortran":
        return np.asfortranarray(base.astype(float))
    if kind == "strided":
        wide = np.repeat(np.repeat(base.astype(float), 2, axis=0), 2, axis=1)
        return wide[::2, ::2]
    if kind == "negative_strides":
        return np.ascontiguousarray(base[::-1, ::-1].astype(float))[::-1, ::-1]
    raise AssertionError(kind)


@st.composite
def random_case(draw, category, task):
    """One hypothesis-drawn Case of ``category`` for ``task``."""
    bs = draw(st.sampled_from(BATCH_SIZES))
    if category == "shapes":  # up to 12 rows: batch "auto" > 8 runs the batched engine
        n, f = draw(st.integers(1, 12)), draw(st.integers(1, 12))
        X = draw(hnp.arrays(np.float64, (n, f), elements=_elements()))
        y = draw(_targets(task, n, simple=True))
        X_new = None
        if draw(st.booleans()):
            X_new = draw(hnp.arrays(np.float64, (draw(st.integers(1, 5)), f),
                                    elements=_elements()))
        y_new = None if X_new is None else draw(_targets(task, len(X_new), simple=True))
        if y_new is not None and task == "reg" and np.ndim(y) != np.ndim(y_new):
            y_new = None
        params = draw(st.one_of(st.just({}), st.sampled_from(OPTION_SETS)))
        return Case(category, "random", task, X, y, bs, X_new=X_new, y_new=y_new,
                    params=params)
    if category == "dtypes":
        n, f = draw(st.integers(2, 10)), draw(st.integers(1, 5))
        base = draw(hnp.arrays(np.int64, (n, f), elements=st.integers(-5, 5)))
        kind = draw(st.sampled_from(DTYPE_KINDS))
        X = _encode(base, kind)
        X_new, same = None, False
        if draw(st.booleans()):  # the same rows in another encoding at predict time
            kind_new = draw(st.sampled_from(DTYPE_KINDS))
            X_new = _encode(base, kind_new)
            same = not {kind, kind_new} & _LOSSY_KINDS  # lossy encodings: other rows
        y = draw(_targets(task, n, simple=True))
        return Case(category, kind, task, X, y, bs, X_new=X_new, same_data=same)
    if category == "values":
        n, f = draw(st.integers(1, 10)), draw(st.integers(1, 4))
        cols = []
        for _ in range(f):
            col = draw(hnp.arrays(np.float64, n, elements=_elements(-1, 1)))
            kind = draw(st.sampled_from(["spread", "constant", "offset"]))
            mag = draw(st.sampled_from(MAGNITUDES))
            if kind == "constant":
                col = np.full(n, col[0] if mag else 0.0) * (mag or 1.0) + (0.0 if mag else 7.0)
            elif kind == "offset":
                col = mag + col * draw(st.sampled_from([1e-3, 1.0])) * max(1.0, mag * 1e-6)
            else:
                col = col * mag
            cols.append(col)
        X = np.column_stack(cols)
        if n > 1 and draw(st.booleans()):  # duplicated rows
            X = X[np.array(draw(st.lists(st.integers(0, n - 1), min_size=n, max_size=n)))]
        y = draw(_targets(task, n, simple=True))
        return Case(category, "random", task, X, y, bs)
    if category == "targets":
        n = draw(st.integers(1, 40)) if task == "clf" else draw(st.integers(1, 10))
        X = draw(hnp.arrays(np.float64, (n, 3), elements=_elements()))
        y = draw(_targets(task, n))
        return Case(category, "random", task, X, y, bs)
    if category == "methods":
        n = draw(st.integers(4, 10))
        X = draw(hnp.arrays(np.float64, (n, 3), elements=_elements()))
        y = draw(_targets(task, n, simple=True))
        m = draw(st.integers(1, 6))
        kind = draw(st.sampled_from(["scaled", "wrong_features", "reencoded", "nan", "unfitted"]))
        if kind == "unfitted":
            return Case(category, kind, task, X, y, bs, fit_first=False)
        if kind == "wrong_features":
            X_new = draw(hnp.arrays(np.float64, (m, draw(st.sampled_from([1, 2, 4]))),
                                    elements=_elements()))
        else:
            X_new = draw(hnp.arrays(np.float64, (m, 3), elements=_elements()))
            if kind == "scaled":
                X_new = X_new * draw(st.sampled_from([1e-30, 1.0, 1e3, 1e10, 1e30, 1e40]))
            elif kind == "reencoded":
                X_new = _encode(np.round(X_new).astype(np.int64),
                                draw(st.sampled_from(DTYPE_KINDS)))
            else:
                X_new[0, draw(st.integers(0, 2))] = np.nan
        y_new = draw(_targets(task, m, simple=True))
        if task == "reg" and np.ndim(y) != np.ndim(y_new):
            y_new = y_new[:, 0] if np.ndim(y_new) == 2 else y_new[:, None]
        return Case(category, kind, task, X, y, bs, X_new=X_new, y_new=y_new)
    raise AssertionError(category)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("category", CATEGORIES)
@PROFILE
@given(data=st.data())
def test_random(category, task, data):
    case = data.draw(random_case(category, task), label="case")
    assert_contract(exercise(case))


# -------------------------------------------------- invariance to the units of X, y
def _reg_fit_predict(X, y, Xp):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make("reg").fit(X, y).predict(Xp)


Y12 = X12 @ np.array([1.0, -2.0, 0.5]) + 0.1 * default_y("reg", 12)
SCALES = (1e-30, 1e-13, 1e-5, 1e5, 1e30, 1e100, 1e160)


@pytest.mark.parametrize("scale", SCALES)
def test_x_scale_invariance(scale):
    """fit(X * s).predict(X * s) == fit(X).predict(X): inputs are standardised."""
    base = _reg_fit_predict(X12, Y12, X12)
    got = _reg_fit_predict(X12 * scale, Y12, X12 * scale)
    np.testing.assert_allclose(got, base, rtol=1e-4, atol=1e-4 * np.std(Y12))


@pytest.mark.parametrize("scale", SCALES)
def test_y_scale_invariance(scale):
    """fit(X, y * s).predict(X) / s == fit(X, y).predict(X): targets are standardised."""
    base = _reg_fit_predict(X12, Y12, X12)
    got = _reg_fit_predict(X12, Y12 * scale, X12) / scale
    np.testing.assert_allclose(got, base, rtol=1e-4, atol=1e-4 * np.std(Y12))


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_x_scale_invariance_classifier(scale):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = Y12 > 0
        base = make("clf").fit(X12, y).predict_proba(X12)
        got = make("clf").fit(X12 * scale, y).predict_proba(X12 * scale)
    np.testing.assert_allclose(got, base, atol=1e-5)


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_partial_fit_uses_only_member_features(batch_size):
    """With max_features, partial_fit must not read the columns no member sees."""
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(12, 6)), rng.normal(size=12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = make("reg", batch_size, {"max_features": 2}).fit(X, y)
        unused = np.setdiff1d(np.arange(6), np.concatenate(est.estimators_features_))
        X_other = X.copy()
        X_other[:, unused] = rng.normal(size=(12, unused.size)) * 5
        a = copy.deepcopy(est).partial_fit(X, y)
        b = copy.deepcopy(est).partial_fit(X_other, y)
    assert unused.size
    for wa, wb in zip(a.coefs_, b.coefs_, strict=True):
        np.testing.assert_array_equal(wa, wb)


# ------------------------------------------------------------------- summary table
def _random_results(category, task, n):
    results = []

    @settings(max_examples=n, derandomize=True, database=None, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def collect(data):
        results.append(exercise(data.draw(random_case(category, task))))

    collect()
    return results


def summary(draws=20, verbose=False):
    """Markdown tables of outcomes per category and per method."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        X = np.arange(8.0).reshape(4, 2)
        make("reg", 1).fit(X, X[:, 0])
    results = [exercise(c) for c in CASES]
    for category in CATEGORIES:
        for task in TASKS:
            results += _random_results(category, task, draws)
    by_cat = defaultdict(Counter)
    by_method = defaultdict(Counter)
    failures = []
    for r in results:
        by_cat[r.case.category][r.status] += 1
        for s in r.steps:
            by_method[s.method][s.status] += 1
            if s.status == "violation":
                failures.append((r, s))
    lines = [f"Deterministic cases plus {draws} hypothesis draws per (category, task); "
             f"estimators {TINY}, batch_size in {BATCH_SIZES}.", "",
             "| category | cases | succeeded | clean errors | other failures |",
             "|---|---:|---:|---:|---:|"]
    total = Counter()
    for category in CATEGORIES:
        c = by_cat[category]
        total.update(c)
        lines.append(f"| {category} | {sum(c.values())} | {c['ok']} | {c['clean']} | "
                     f"{c['other']} |")
    lines.append(f"| **all** | {sum(total.values())} | {total['ok']} | {total['clean']} | "
                 f"{total['other']} |")
    lines += ["", "| method | calls | succeeded | clean errors | other failures |",
              "|---|---:|---:|---:|---:|"]
    for method in ALL_METHODS:
        c = by_method[method]
        other = c["violation"]
        lines.append(f"| {method} | {sum(c.values())} | {c['ok']} | {c['clean']} | {other} |")
    lines.append("")
    lines.append("A case succeeded when fit and every method succeeded with valid output; it "
                 "is a clean error when some call raised ValueError/TypeError naming the "
                 "problem (and none broke the contract).")
    if failures:
        lines.append(f"Other failures: {len(failures)} calls.")
        if verbose:
            for r, s in failures:
                lines.append(f"- {s.method}: {s.detail}\n  input: {r.case!r}")
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="print the summary tables")
    parser.add_argument("--draws", type=int, default=20,
                        help="hypothesis draws per (category, task)")
    parser.add_argument("--verbose", action="store_true", help="list unexplained failures")
    args = parser.parse_args()
    if not args.table:
        sys.exit(pytest.main([__file__, "-q"]))
    torch.set_num_threads(1)
    print(summary(args.draws, args.verbose))
