"""Searches and cross-validation on a Dask cluster give exactly the sequential results.

Each fit is deterministic for an int ``random_state`` on the CPU, so fanning the fits of
``GridSearchCV``, ``RandomizedSearchCV`` and ``cross_val_score`` out to worker processes
through joblib's ``dask`` backend must not change a single score. The task stream proves
that the fits ran on the workers, not in this process.
"""

import re

import joblib
import numpy as np
import pytest
from numpy.testing import assert_array_equal
from scipy.stats import loguniform
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, cross_val_score

from skensemble import NeuralBaggingClassifier, NeuralBaggingRegressor

distributed = pytest.importorskip("distributed")

# learning_rate="constant": on these small sets "auto" anneals, and the grid's two rates
# then scored the same on the classifier's accuracy
SMALL = dict(n_estimators=3, hidden_layer_sizes=(8,), max_iter=20, random_state=0,
             learning_rate="constant", n_bins=8)
CASES = pytest.mark.parametrize(
    "Estimator, data",
    [
        (NeuralBaggingRegressor, "regression_data"),
        (NeuralBaggingClassifier, "classification_data"),
    ],
    ids=["regressor", "classifier"],
)
# joblib's dask backend names each task after the batch it runs:
# "batch_of__fit_and_score_<n>_calls-<uuid>".
BATCH_KEY = re.compile(r"batch_of__fit_and_score_(\d+)_calls-")


@pytest.fixture
def client(dask_client):
    # The session's cluster (tests/conftest.py): workers import torch and skensemble on
    # their first task, not here.
    return dask_client


def _run_on_cluster(client, work):
    """``work()`` under joblib's dask backend; returns its result and the fits the workers ran."""
    with distributed.get_task_stream(client=client) as stream:
        with joblib.parallel_backend("dask"):
            result = work()
    workers = set(client.scheduler_info(n_workers=-1)["workers"])
    fits = 0
    for task in stream.data:
        match = BATCH_KEY.match(str(task["key"]))
        if match:
            assert task["status"] == "OK"
            assert task["worker"] in workers
            fits += int(match.group(1))
    return result, fits


@CASES
def test_grid_search_matches_sequential(client, request, Estimator, data):
    X, y = request.getfixturevalue(data)

    def search():
        grid = {"learning_rate_init": [1e-3, 1e-2], "alpha": [1e-4]}
        return GridSearchCV(Estimator(**SMALL), grid, cv=2).fit(X, y)

    sequential = search()
    parallel, fits = _run_on_cluster(client, search)

    assert fits == 2 * 2  # every candidate x split ran on a worker
    for key in ("mean_test_score", "split0_test_score", "split1_test_score"):
        assert_array_equal(parallel.cv_results_[key], sequential.cv_results_[key])
    # the grid is chosen so that the candidates score differently
    assert len(set(sequential.cv_results_["mean_test_score"])) == 2
    assert parallel.best_params_ == sequential.best_params_
    assert parallel.best_score_ == sequential.best_score_


@CASES
def test_randomized_search_matches_sequential(client, request, Estimator, data):
    X, y = request.getfixturevalue(data)

    def search():
        distributions = {"learning_rate_init": loguniform(1e-3, 3e-2), "alpha": [1e-4, 1e-2]}
        return RandomizedSearchCV(
            Estimator(**SMALL), distributions, n_iter=3, cv=2, random_state=0
        ).fit(X, y)

    sequential = search()
    parallel, fits = _run_on_cluster(client, search)

    assert fits == 3 * 2
    assert parallel.cv_results_["params"] == sequential.cv_results_["params"]
    assert_array_equal(
        parallel.cv_results_["mean_test_score"], sequential.cv_results_["mean_test_score"]
    )
    assert parallel.best_params_ == sequential.best_params_
    assert parallel.best_score_ == sequential.best_score_


@CASES
def test_cross_val_score_matches_sequential(client, request, Estimator, data):
    X, y = request.getfixturevalue(data)
    estimator = Estimator(**SMALL, learning_rate_init=1e-2)

    sequential = cross_val_score(estimator, X, y, cv=3)
    parallel, fits = _run_on_cluster(client, lambda: cross_val_score(estimator, X, y, cv=3))

    assert fits == 3
    assert_array_equal(parallel, sequential)
    assert np.all(np.isfinite(sequential))
