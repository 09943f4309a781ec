"""One ensemble over several processes: ``n_jobs=2`` against 1, and a 2-worker Dask cluster.

What it shows
-------------
E=256 members of two hidden layers (64, 64), batch 32, on a synthetic 20,000 x 20
regression (seed 0; y a smooth nonlinear function of a few features plus noise), the
estimator's other defaults (numba engine, early stopping on 10% held-out rows), a few
epochs. Each fit is timed as a whole (wall clock):

* ``n_jobs=1``: one process; the numba kernel runs the members on both cores itself;
* ``n_jobs=2``: two loky worker processes of 128 members each, one thread each. The
  first ``n_jobs=2`` fit of a session also starts the workers (they import torch and
  numba): that ``cold`` time is reported apart from the timed ones;
* ``dask``: the same fit inside ``joblib.parallel_backend("dask")`` on a
  ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)``, after an untimed
  small fit that lets the workers import everything. ``sending s`` is the time to
  scatter the training data (to both workers) and each chunk's own members' data (rows
  and validation masks) before the chunks start (``_parallel_report.seconds_sending``);
  the JSON also has each chunk's compute time and worker (Dask's task stream).

Every fit has the same ``random_state``; the script checks that all of them give the
same members, bit for bit (``identical`` in the JSON), and predicts 2,000 rows with each.

How to run
----------
    python benchmarks/bench_parallel.py                 # ~5 minutes on 2 cores
    python benchmarks/bench_parallel.py --epochs 1 --repeats 1 --out DIR   # quicker

Writes ``benchmarks/results/parallel.json`` (machine, settings, every timing). Run it on
an otherwise idle machine; the load average is recorded.
"""

import argparse
import json
import logging
import os
import statistics
import time
import warnings
from pathlib import Path

import joblib
import numpy as np
from _machine import machine_info  # benchmarks/_machine.py
from sklearn.exceptions import ConvergenceWarning

from skensemble import NeuralBaggingRegressor


def data(n=20_000, features=20, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, features))
    y = (np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2] - 0.5 * X[:, 3] ** 2
         + 0.1 * rng.standard_normal(n))
    return X, y


def timed_fit(params, X, y, n_jobs):
    est = NeuralBaggingRegressor(**params, n_jobs=n_jobs)
    start = time.perf_counter()
    est.fit(X, y)
    return time.perf_counter() - start, est


def same_members(a, b):
    return all(np.array_equal(ga.flat, gb.flat) and np.array_equal(ga.members, gb.members)
               for ga, gb in zip(a._fitted.groups, b._fitted.groups, strict=True))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    X, y = data()
    params = dict(n_estimators=256, hidden_layer_sizes=(64, 64), batch_size=32,
                  max_iter=args.epochs, random_state=0)
    small = dict(params, n_estimators=4, max_iter=1)
    info = machine_info()
    if info["load_average"][0] > 0.5 * info["cpu_affinity"]:
        print(f"warning: load average {info['load_average'][0]:.1f}: timings mean little")
    NeuralBaggingRegressor(**small).fit(X[:500], y[:500])  # numba kernel loaded, threads up

    rows = {}
    fits = {}

    def record(name, seconds, est, **extra):
        rows.setdefault(name, {"seconds": [], **extra})["seconds"].append(seconds)
        fits[name] = est
        print(f"{name:>20}: {seconds:7.2f} s  (fit_time_ {est.fit_time_:.2f} s, "
              f"{est._fitted.report.n_chunks} chunk(s), n_iter_ {est.n_iter_})", flush=True)

    for _ in range(args.repeats):
        record("n_jobs=1", *timed_fit(params, X, y, 1))
    cold, est = timed_fit(params, X, y, 2)  # starts the loky workers
    print(f"n_jobs=2 cold (starting the workers): {cold:.2f} s", flush=True)
    rows["n_jobs=2"] = {"seconds": [], "cold_seconds": cold}
    for _ in range(args.repeats):
        record("n_jobs=2", *timed_fit(params, X, y, 2))

    import dask
    import distributed

    # distributed's default environment for worker processes (recorded in the JSON)
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
    for name, env in (("dask", environ),):
        start = time.perf_counter()
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                           processes=True, host="127.0.0.1",
                                           dashboard_address=None,
                                           silence_logs=logging.ERROR)
        client = distributed.Client(cluster)
        cluster_s = time.perf_counter() - start
        try:
            with joblib.parallel_backend("dask"):
                start = time.perf_counter()
                NeuralBaggingRegressor(**small).fit(X[:500], y[:500])  # workers import all
                warmup = time.perf_counter() - start
                rows[name] = {"seconds": [], "sending_seconds": [], "chunks": [],
                              "cluster_start_seconds": cluster_s, "warmup_seconds": warmup,
                              "worker_environment": env}
                print(f"{name}: LocalCluster start {cluster_s:.2f} s, first small fit "
                      f"{warmup:.2f} s", flush=True)
                for _ in range(args.repeats):
                    with distributed.get_task_stream(client=client) as stream:
                        seconds, est = timed_fit(params, X, y, None)  # a chunk per worker
                    report = est._fitted.report
                    rows[name]["sending_seconds"].append(report.seconds_sending)
                    chunks = [{"worker": t["worker"], "compute_seconds": sum(
                        s["stop"] - s["start"] for s in t["startstops"]
                        if s["action"] == "compute")}
                        for t in stream.data if str(t["key"]).startswith("skensemble-chunk-")]
                    rows[name]["chunks"].append(chunks)
                    record(name, seconds, est)
                    print(f"{'':>20}  sending {report.seconds_sending:.3f} s; chunks "
                          + ", ".join(f"{c['compute_seconds']:.2f} s on {c['worker']}"
                                      for c in chunks), flush=True)
        finally:
            client.close()
            cluster.close()

    Xs = fits["n_jobs=1"]._standardise(X)
    rows_members = 256 * fits["n_jobs=1"]._fitted.plan.n_draw
    sent_bytes = {"shared (X, y, weights)": int(Xs.nbytes + 4 * len(y) * 2),
                  "per member rows and validation masks": int(8 * rows_members + 256 * len(y))}
    Xp = X[:2000]
    preds = {k: e.predict(Xp) for k, e in fits.items()}
    identical = {
        k: bool(same_members(fits["n_jobs=1"], e) and np.array_equal(preds["n_jobs=1"], preds[k]))
        for k, e in fits.items() if k != "n_jobs=1"}
    summary = {k: {"median_seconds": statistics.median(v["seconds"]), **v}
               for k, v in rows.items()}
    base = summary["n_jobs=1"]["median_seconds"]
    for k in summary:
        summary[k]["speedup_vs_n_jobs_1"] = base / summary[k]["median_seconds"]
    print()
    print("| fit | median s | vs n_jobs=1 | sending s | identical to n_jobs=1 |")
    print("|---|--:|--:|--:|---|")
    for k, v in summary.items():
        send = v.get("sending_seconds")
        send = f"{statistics.median(send):.3f}" if send else ""
        same = "" if k == "n_jobs=1" else str(identical[k])
        print(f"| {k} | {v['median_seconds']:.2f} | {v['speedup_vs_n_jobs_1']:.2f}x | {send} "
              f"| {same} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": info,
        "settings": {**params, "n_samples": len(y), "n_features": X.shape[1],
                     "repeats": args.repeats, "engine": fits["n_jobs=1"].engine_,
                     "n_iter": int(fits["n_jobs=1"].n_iter_),
                     "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")},
        "fits": summary,
        "approx_bytes_sent_to_dask": sent_bytes,
        "identical": identical,
    }
    (out / "parallel.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"wrote {out / 'parallel.json'}")


if __name__ == "__main__":
    main()
