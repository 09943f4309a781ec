"""benchmarks/bench_scale.py's data-free parts: rows, sizes, encoding, memory, tables, resume.

The benchmark's fits need LightGBM, CatBoost, XGBoost, data packages and minutes; these
check the parts whose mistakes would make its results wrong without failing it.
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_scale.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_scale_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_test_rows_are_fixed_and_prefixes_nest(bench):
    train, test = bench.split_rows(1000)
    assert len(test) == 200 and len(train) == 800
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(1000))
    assert np.array_equal(test, np.sort(test))
    again_train, again_test = bench.split_rows(1000)
    assert np.array_equal(train, again_train) and np.array_equal(test, again_test)
    assert not np.array_equal(train, np.sort(train))  # a permutation, not the file's order
    # every size trains on a prefix of the same order; the test rows do not depend on it
    small, large = set(train[:100]), set(train[:400])
    assert small <= large and not small & set(test)


def test_sizes_resolve_to_training_rows(bench):
    assert bench.resolve_sizes("10000,50000,full", 30_000) == [("10000", 10_000),
                                                             ("full", 30_000)]
    assert bench.resolve_sizes("full,1000,1_000", 5000) == [("1000", 1000), ("full", 5000)]
    with pytest.raises(ValueError):
        bench.resolve_sizes("0", 10)


def test_encoding_is_fitted_on_the_training_rows(bench):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("sklearn")
    X_train = pd.DataFrame({"x": [1.0, np.nan, 3.0, 5.0],
                            "low": ["a", "b", "a", "b"],
                            "high": ["p", "q", "r", "s"]})
    X_test = pd.DataFrame({"x": [np.nan], "low": ["c"], "high": ["zz"]})
    A, B, layout = bench.encode(X_train, X_test, max_onehot=2)
    assert layout == {"numeric": ["x"], "onehot": ["low"], "ordinal": ["high"],
                      "n_features": 4}
    assert A.dtype == B.dtype == np.float32 and A.shape == (4, 4)
    assert A[1, 0] == 3.0  # NaN -> the training median of 1, 3, 5
    assert np.array_equal(A[:, 1:3], [[1, 0], [0, 1], [1, 0], [0, 1]])  # one-hot low
    assert np.array_equal(A[:, 3], [0, 1, 2, 3])  # ordinal codes of the sorted levels
    assert np.array_equal(B, [[3.0, 0, 0, -1]])  # unseen: all-zero one-hot, code -1


def test_peak_memory_sees_a_temporary_allocation(bench):
    try:
        open("/proc/self/clear_refs", "w").close()
    except OSError:
        pytest.skip("no writable /proc/self/clear_refs")

    def allocate():
        a = np.ones(64 * 2**20 // 8)  # 64 MiB, freed before returning
        return float(a[-1])

    out, mem = bench.measure_peak(allocate)
    assert out == 1.0 and mem["peak_exact"]
    assert 60 <= mem["fit_peak_mib"] <= 100
    _, mem = bench.measure_peak(lambda: None)  # the earlier peak does not count
    assert mem["fit_peak_mib"] < 10


def _rec(dataset, n, method, status="ok", **metrics):
    return {"dataset": dataset, "size": str(n), "n_train": n, "method": method,
            "status": status, "fit_s": 0.5 * n / 1000, "predict_s": 0.01,
            "fit_peak_mib": 12.0, **metrics}


def _results():
    return {
        "datasets": {"reg": {"task": "regression", "n_test": 500},
                     "bin": {"task": "binary", "n_test": 300}},
        "methods": {}, "runs": [],
        "results": [
            _rec("reg", 1000, "hgb", rmse=0.5, r2=0.75),
            _rec("reg", 1000, "lightgbm", rmse=0.4, r2=0.84),
            _rec("reg", 5000, "hgb", rmse=0.3, r2=0.91),
            _rec("reg", 5000, "catboost", status="error", error="boom"),
            _rec("bin", 1000, "skensemble_default", log_loss=0.55, accuracy=0.7, roc_auc=0.77),
            _rec("bin", 1000, "xgboost", log_loss=0.65, accuracy=0.66, roc_auc=0.71),
        ],
    }


def test_table_has_a_row_per_size_and_method(bench):
    text = bench.format_table(_results())
    lines = text.splitlines()
    assert "| train rows | method | rmse | r2 | fit s | predict s | fit peak MiB |" in lines
    assert ("| train rows | method | log_loss | accuracy | roc_auc | fit s | predict s "
            "| fit peak MiB |") in lines
    assert "| 1,000 | lightgbm | **0.4000** | 0.8400 | 0.50 | 0.010 | 12 |" in lines
    assert "| 1,000 | hgb | 0.5000 | 0.7500 | 0.50 | 0.010 | 12 |" in lines
    assert "| 5,000 | hgb | 0.3000 | 0.9100 | 2.50 | 0.010 | 12 |" in lines  # alone: no bold
    assert "| 1,000 | skensemble_default | **0.5500** | 0.7000 | 0.7700 |" in text
    assert "catboost" not in text  # failed fits are left out
    assert bench.format_table(_results(), methods=["xgboost"]).count("| 1,000 |") == 1
    assert bench.format_table({"results": []}) == "(no results)\n"


def test_resume_skips_only_fits_that_succeeded(bench):
    res = _results()
    done = bench.done_keys(res)
    assert ("reg", 1000, "hgb") in done and ("reg", 5000, "catboost") not in done
    bench.store(res, _rec("reg", 5000, "catboost", rmse=0.29, r2=0.92))
    assert [r["status"] for r in res["results"] if r["method"] == "catboost"] == ["ok"]
    assert ("reg", 5000, "catboost") in bench.done_keys(res)
    assert len(res["results"]) == 6


def test_table_only_reads_the_file_and_fits_nothing(bench, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "scale.json"
    bench.write_results(out, _results())
    assert bench.read_results(out) == _results()
    bench.main(["--table-only", "--out", str(out), "--datasets", "reg"])
    printed = capsys.readouterr().out
    assert "**reg** (regression; 500 test rows)" in printed and "bin" not in printed
    assert (tmp_path / "scale.png").stat().st_size > 0


def test_native_frame_keeps_the_columns_and_makes_text_categorical(bench):
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame({"carrier": ["UA", "AA", None, "UA"], "delay": [1.0, np.nan, 3.0, 4.0],
                      "n": [1, 2, 3, 4]}, index=[7, 3, 9, 1])
    out = bench.native_frame(X)
    assert list(out.columns) == ["carrier", "delay", "n"]
    assert list(out.index) == [0, 1, 2, 3]
    assert isinstance(out["carrier"].dtype, pd.CategoricalDtype)
    assert out["carrier"].isna().sum() == 1  # missing values stay missing for the library
    assert out["delay"].dtype == np.float64 and np.isnan(out["delay"][1])
    # the caller's frame is untouched
    assert not isinstance(X["carrier"].dtype, pd.CategoricalDtype)


def test_native_clip_ablation_changes_the_tails_only_in_its_own_process(bench):
    from skensemble import NeuralBaggingRegressor, _scaling

    before = _scaling.ASINH_ROWS
    est = bench.make_estimator("skensemble_native", "regression", 0, 1)
    assert isinstance(est, NeuralBaggingRegressor) and _scaling.ASINH_ROWS == before
    try:
        bench.make_estimator("skensemble_native_clip", "regression", 0, 1)
        assert _scaling.ASINH_ROWS > 10**15  # no training set reaches it: clipping at any size
    finally:
        _scaling.ASINH_ROWS = before
