"""benchmarks/bench_quality.py's bookkeeping: the work a search spends, and its options.

The benchmark's fits are not run here (they need data packages and minutes); these check
the parts whose mistakes would make its results wrong without failing it: the epochs
counted over every fit a search makes, and the parsing of ``--configs-json``.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import RandomizedSearchCV

from skensemble import NeuralBaggingRegressor

pytest.importorskip("pandas")
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
