"""Grid search over NeuralBaggingClassifier on a Dask cluster, beside the same search in-process.

Run it with::

    python examples/distributed_search.py

It needs ``dask[distributed]`` (``pip install "dask[distributed]"``). The script runs a
``GridSearchCV`` (8 candidates x 3 folds) over ``NeuralBaggingClassifier`` on
scikit-learn's breast-cancer data twice: in this process, then on a ``LocalCluster`` of
two single-threaded worker processes under ``joblib.parallel_backend("dask")``, which
sends every fit to a worker. It prints the best parameters and score, whether both
searches found the same cross-validation scores (fits with an int ``random_state`` are
deterministic on the CPU), and both wall times. Both runs use one torch thread per fit
(Dask starts its workers with ``OMP_NUM_THREADS=1``; this process is set to match), so
the comparison is the same fits one after another versus two at a time: the speed-up is
at most the number of workers, less the cost of shipping work to them, and none on a
machine whose cores are already busy. On a real cluster, replace the ``LocalCluster``
with the scheduler's address, ``Client("tcp://scheduler:8786")``. It takes well under a
minute on a laptop CPU. The printed figures are also written to
``distributed_search.json`` in ``--out`` (default: the current folder).

    python examples/distributed_search.py [--out DIR]
"""

# The gallery's thumbnail (a static picture: the documentation build does not run this example)
# sphinx_gallery_thumbnail_path = "_static/thumbnails/distributed_search.png"

import argparse
import importlib
import json
import logging
import time
import warnings
from pathlib import Path

import joblib
import numpy as np
import torch
from distributed import Client, LocalCluster
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, ParameterGrid

from skensemble import NeuralBaggingClassifier

PARAM_GRID = {
    "hidden_layer_sizes": [(16,), (64,)],
    "alpha": [1e-4, 1e-2],
    "learning_rate_init": [1e-3, 1e-2],
}
CV = 3


def make_search():
    estimator = NeuralBaggingClassifier(n_estimators=10, max_iter=100, tol=1e-3, random_state=0)
    return GridSearchCV(estimator, PARAM_GRID, cv=CV)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="folder for distributed_search.json (default: .)")
    args = parser.parse_args()
    # scikit-learn passes this filter on to the workers with each fit.
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    torch.set_num_threads(1)  # as on each worker
    X, y = load_breast_cancer(return_X_y=True)
    n_fits = CV * len(ParameterGrid(PARAM_GRID))

    start = time.perf_counter()
    sequential = make_search().fit(X, y)
    seconds_sequential = time.perf_counter() - start

    start = time.perf_counter()
    # Worker processes must be spawned from a guarded __main__ (see the bottom).
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        # Import torch and skensemble on the workers now, so that the timing below is the
        # search itself.
        client.run(importlib.import_module, "skensemble")
        seconds_startup = time.perf_counter() - start

        start = time.perf_counter()
        with joblib.parallel_backend("dask"):
            distributed = make_search().fit(X, y)
        seconds_distributed = time.perf_counter() - start
        n_workers = len(client.scheduler_info(n_workers=-1)["workers"])

    same = np.array_equal(
        sequential.cv_results_["mean_test_score"], distributed.cv_results_["mean_test_score"]
    )
    print(f"GridSearchCV: {n_fits} fits (+1 refit) on breast cancer, {X.shape}")
    print(f"best params : {distributed.best_params_}")
    print(f"best score  : {distributed.best_score_:.4f} ({CV}-fold accuracy)")
    print(f"same scores as the sequential search: {same}")
    print()
    print(f"{'run':<34}{'wall s':>8}")
    print(f"{'sequential, this process':<34}{seconds_sequential:>8.1f}")
    print(f"{f'dask, {n_workers} worker processes':<34}{seconds_distributed:>8.1f}")
    print(f"{'(cluster start + worker imports)':<34}{seconds_startup:>8.1f}")
    print(f"speed-up: {seconds_sequential / seconds_distributed:.2f}x")
    # The printed figures, for the documentation's check (benchmarks/check_docs.py).
    figures = {
        "n_fits": n_fits, "best_params": {k: list(v) if isinstance(v, tuple) else v
                                          for k, v in distributed.best_params_.items()},
        "best_score": float(distributed.best_score_), "same_scores": bool(same),
        "n_workers": n_workers, "sequential_s": seconds_sequential,
        "distributed_s": seconds_distributed, "startup_s": seconds_startup,
        "speedup": seconds_sequential / seconds_distributed,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "distributed_search.json").write_text(json.dumps(figures, indent=1) + "\n")
    print(f"saved {args.out / 'distributed_search.json'}")


if __name__ == "__main__":
    main()
