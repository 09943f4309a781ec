"""Ensemble selection ablation: plain greedy forward selection against the bagged one.

What it shows
-------------
Whether ``ensemble_selection`` helps on new data, and which selection rule to use. For
each data set of the TUNING half of ``bench_quality.py`` (the held-out half is not looked
at) and each split, one ensemble is fitted with per-member hyperparameters
(``member_params``) and ``ensemble_selection=50``; the members' validation predictions
that the selection sees are captured, and every rule below weighs the SAME members on
the SAME rows. Each rule's weights are then scored on the test rows (RMSE or log-loss,
as ``bench_quality.py``), relative to the uniform average of all members.

Rules:

* ``uniform``: every member 1/E (what ``ensemble_selection=None`` does);
* ``forward``: plain greedy forward selection with replacement on all validation rows,
  kept when it beats uniform there (``_selection.greedy(..., n_bags=0)``; the library's
  rule before the bagged one);
* ``bagged``: the library's rule (``_selection.greedy`` at its defaults): forward
  selection on 20 bootstrap resamples of the rows, weights averaged, and kept only when
  the runs beat uniform on the rows their resamples left out.

Spaces (``--spaces``): ``auto`` is ``member_params="auto"`` (rates and L2 strengths near
the defaults, relu or tanh: no bad members to drop); ``wide`` spans rates 1e-4..1e-2, L2
1e-6..1e-1 and relu/tanh/logistic (some members clearly worse: selection has something
to find). The data, splits and preprocessing are ``bench_quality.py``'s (its docstring
names every data set's source); one thread.

Usage::

    taskset -c 1 python benchmarks/bench_selection.py            # ~6 min on one core
    python benchmarks/bench_selection.py --table-only
"""

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
OUT = HERE / "results" / "selection.json"

SPACES = {
    "auto": "auto",
    "wide": {"learning_rate_init": ("loguniform", 1e-4, 1e-2),
             "alpha": ("loguniform", 1e-6, 1e-1),
             "activation": ["relu", "tanh", "logistic"]},
}
RULES = ("uniform", "forward", "bagged")


def _space(spec):
    from scipy.stats import loguniform

    if isinstance(spec, str):
        return spec
    return {k: loguniform(v[1], v[2]) if isinstance(v, tuple) else v for k, v in spec.items()}


def one(name, seed, space):
    """Test scores of every rule on one data set, split and space."""
    import bench_quality as bq
    import torch

    from skensemble import NeuralBaggingClassifier, NeuralBaggingRegressor, _selection

    torch.set_num_threads(1)
    X, y, cat, info = bq.load(name)
    task = info["task"]
    tr, te = bq.split(y, task, seed)
    A, B = bq.preprocess(X.iloc[tr], X.iloc[te], cat)
    if task == "regression":
        yv = y.to_numpy(dtype=float)
        mu, sd = yv[tr].mean(), yv[tr].std()
        y_tr, y_te = (yv[tr] - mu) / sd, (yv[te] - mu) / sd
    else:
        classes, codes = np.unique(y.to_numpy(), return_inverse=True)
        y_tr, y_te = codes[tr], codes[te]
    cls = NeuralBaggingRegressor if task == "regression" else NeuralBaggingClassifier
    est = cls(random_state=seed, member_params=_space(SPACES[space]), ensemble_selection=50)
    seen = {}
    library_rule = _selection.greedy

    def capture(entries, n_rounds, row_loss, **kwargs):  # the selection's own inputs
        seen.update(entries=entries, n_rounds=n_rounds, row_loss=row_loss, kwargs=kwargs)
        t0 = time.perf_counter()
        out = library_rule(entries, n_rounds, row_loss, **kwargs)
        seen["bagged_s"] = time.perf_counter() - t0
        return out

    _selection.greedy = capture
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            est.fit(A, y_tr)
            fit_s = time.perf_counter() - t0
    finally:
        _selection.greedy = library_rule
    E = est.n_estimators
    t0 = time.perf_counter()
    forward = library_rule(seen["entries"], seen["n_rounds"], seen["row_loss"], n_bags=0)
    forward_s = time.perf_counter() - t0
    weights = {"uniform": np.full(E, 1.0 / E), "forward": forward.weights,
               "bagged": est.ensemble_weights_}
    if task == "regression":
        members = est.predict_members(B).reshape(E, len(te))
    else:
        proba = est.predict_proba_members(B)
        members = np.zeros(proba.shape[:2] + (len(classes),))
        members[:, :, np.asarray(est.classes_, dtype=int)] = proba
    rec = {"dataset": name, "split": seed, "space": space, "fit_s": round(fit_s, 3),
           "forward_selection_s": round(forward_s, 4),
           "bagged_selection_s": round(seen["bagged_s"], 4)}
    for rule, w in weights.items():
        pred = np.tensordot(w, members, 1)
        if task == "regression":
            rec[rule] = float(np.sqrt(np.mean((y_te - pred) ** 2)))
        else:
            p = np.clip(pred, 1e-15, 1.0)
            p = p / p.sum(1, keepdims=True)
            rec[rule] = float(-np.mean(np.log(p[np.arange(len(te)), y_te])))
        rec[rule + "_members"] = int((w > 0).sum())
    return rec


def table(res):
    """Markdown: per space and data set, each rule's test loss relative to uniform."""
    rows = res["results"]
    lines = ["| space | data set | forward | bagged | members kept (forward / bagged) |",
             "|---|---|--:|--:|--:|"]
    means = {}
    for space in SPACES:
        for name in dict.fromkeys(r["dataset"] for r in rows if r["space"] == space):
            rs = [r for r in rows if r["space"] == space and r["dataset"] == name]
            uni = np.mean([r["uniform"] for r in rs])
            rel = {k: np.mean([r[k] for r in rs]) / uni - 1 for k in ("forward", "bagged")}
            for k, v in rel.items():
                means.setdefault((space, k), []).append(v)
            kept = "{:.1f} / {:.1f}".format(*(np.mean([r[k + "_members"] for r in rs])
                                              for k in ("forward", "bagged")))
            lines.append(f"| {space} | {name} ({len(rs)} splits) | {rel['forward']:+.2%} | "
                         f"{rel['bagged']:+.2%} | {kept} |")
        if (space, "forward") in means:
            lines.append(f"| {space} | **mean** | {np.mean(means[(space, 'forward')]):+.2%} | "
                         f"{np.mean(means[(space, 'bagged')]):+.2%} | |")
    return "\n".join(lines)


def main():
    import bench_quality as bq
    from _machine import machine_info

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--splits", type=int, default=3)
    ap.add_argument("--spaces", default=",".join(SPACES))
    ap.add_argument("--datasets", default=",".join(
        d for d, s in bq.DATASETS.items() if s.half == "tuning"))
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    if args.table_only:
        print(table(json.loads(Path(args.out).read_text())))
        return
    res = {"rules": {"uniform": "every member 1/E",
                     "forward": "greedy forward selection on all validation rows (n_bags=0)",
                     "bagged": "the library's rule: 20 bootstrap resamples, averaged, checked "
                               "on the left-out rows"},
           "spaces": {k: v if isinstance(v, str) else {n: list(x) if isinstance(x, tuple) else x
                                                       for n, x in v.items()}
                      for k, v in SPACES.items()},
           "metric": "test RMSE (regression, standardised target) or log-loss",
           "machine": machine_info(), "argv": sys.argv[1:], "results": []}
    t0 = time.perf_counter()
    for space in args.spaces.split(","):
        for name in args.datasets.split(","):
            for seed in range(args.splits):
                rec = one(name, seed, space)
                print(json.dumps(rec), flush=True)
                res["results"].append(rec)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(table(res))


if __name__ == "__main__":
    main()
