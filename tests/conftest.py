"""Shared fixtures: tiny data sets, and one torch thread (thread overhead dominates here)."""

import os

import numpy as np
import pytest
import torch

from skensemble import NeuralBaggingClassifier, NeuralBaggingRegressor

torch.set_num_threads(1)
if not torch.cuda.is_available():
    # Without a GPU, Triton kernels run in Triton's interpreter (must be set before
    # triton is first imported).
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def regression_data():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(120, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.3 * np.sin(3 * X[:, 0]) + 0.05 * rng.normal(size=120)
    return X, y


@pytest.fixture
def classification_data():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(150, 4))
    y = np.where(X[:, 0] + 0.5 * X[:, 1] > 0, "yes", "no").astype(object)
    y[X[:, 2] > 1.0] = "maybe"
    return X, y


@pytest.fixture(params=["regressor", "classifier"])
def task(request, regression_data, classification_data):
    """(estimator class, its data): shared test bodies run for both estimators."""
    if request.param == "regressor":
        return NeuralBaggingRegressor, regression_data
    return NeuralBaggingClassifier, classification_data


@pytest.fixture(scope="session")
def dask_client():
    """One Dask ``LocalCluster`` for the session: two single-threaded worker processes.

    Shared by tests/test_dask.py and tests/test_parallel.py, so that the workers start and
    import torch and skensemble once. allowed-failures=0: a task whose worker died is not
    retried on another (the default, 3, would let test_parallel's dying test kill every
    worker four times). No dashboards, nothing but errors in the logs.
    """
    import logging

    dask = pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, silence_logs=logging.ERROR,
        )
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        # Shutdown races with the workers' heartbeats, which then log errors that say
        # nothing about the tests. (A logger pickles by name: this reaches each worker's.)
        logger = logging.getLogger("distributed")
        level = logger.level
        client.run(logger.setLevel, logging.CRITICAL)
        logger.setLevel(logging.CRITICAL)
        client.close()
        cluster.close()
        logger.setLevel(level)
