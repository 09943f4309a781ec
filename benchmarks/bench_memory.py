"""Peak memory of a fit on a 1,000,000 x 100 float64 training set, against the data's size.

Shows that a fit copies the training data once (the float32 standardised matrix the
engines read in place). Prints the data size, the resident memory before the fit, the
peak during it and the ratio of the growth to the data size.

    python benchmarks/bench_memory.py [n_estimators]
"""

import resource
import sys
import time
import warnings

import numpy as np

from skensemble import NeuralBaggingRegressor

warnings.simplefilter("ignore")
E = int(sys.argv[1]) if len(sys.argv) > 1 else 10
rng = np.random.default_rng(0)
X = rng.standard_normal((1_000_000, 100))
y = X[:, :5].sum(1)
mib = 2**20
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / mib
start = time.perf_counter()
NeuralBaggingRegressor(n_estimators=E, hidden_layer_sizes=(32,), max_iter=1, batch_size=1000,
                       random_state=0, device="cpu").fit(X, y)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / mib
data = X.nbytes / mib
print(f"E={E}: data {data:.0f} MiB; resident before fit {before:.0f} MiB, peak {peak:.0f} MiB; "
      f"the fit added {peak - before:.0f} MiB = {(peak - before) / data:.2f}x the data "
      f"({time.perf_counter() - start:.1f} s)")
