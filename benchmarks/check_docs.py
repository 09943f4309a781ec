"""Check every figure that README.md and docs/ quote against the file it comes from.

    python benchmarks/check_docs.py                # check; exit 1 listing file:line and both values
    python benchmarks/check_docs.py --write        # regenerate the generated tables in place
    python benchmarks/check_docs.py --properties   # rerun the property suite's summary into
                                                   # benchmarks/results/properties.json
    python benchmarks/check_docs.py --root DIR     # check another copy of the repository

A quoted figure is bound to its source in one of two ways:

* **Generated blocks.** A table (or a printed output) between the markers
  ``<!-- check_docs: NAME -->`` and ``<!-- check_docs: end -->`` (Markdown) or
  ``.. check_docs: NAME`` and ``.. check_docs: end`` (reST comments) is rendered by the
  generator ``NAME`` below from its results file; the check compares it line by line and
  ``--write`` rewrites it.
* **The registry** ``benchmarks/doc_figures.json``: each entry names a file, the text
  around the figures with ``{}`` where each figure stands (whitespace and line breaks
  match any whitespace; the text must occur exactly once), the source file (relative to
  the repository root), one key per ``{}`` and how each is rounded. A key is a path into
  the JSON, its parts separated by ``/`` (``sizes/40/oob_r2/mean``), or ``=`` followed by
  a Python expression over the JSON ``d`` (``=d['a'] / d['b']``).

Every table in the checked files is a results table unless the registry's ``tables``
list says otherwise (``"not_results"`` with a reason, or ``"label_columns"``: how many
leading columns are labels such as settings). Every number in a results table outside
its label columns and outside code must be covered by a generated block or a registry
entry; an unregistered one fails the check, so a new figure cannot drift silently.

Sources are the committed results of the benchmarks (``benchmarks/results/*.json``: long
benchmarks are never re-run here) and the figures the examples write
(``examples/images/*.json``, written by ``python examples/NAME.py --out examples/images``).
"""

import argparse
import json
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = "benchmarks/doc_figures.json"
EXCLUDED_DOCS = ("_build", "generated", "auto_examples", "_gallery_src")

NUMBER = r"[-+−]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?%?"
TABLE_NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?")
CODE = re.compile(r"``[^`]*``|`[^`]*`")

# ----------------------------------------------------------------------------- sources


class SourceError(Exception):
    """A source file or key that does not exist."""


@dataclass
class Context:
    """The repository being checked and its loaded sources."""

    root: Path
    cache: dict = field(default_factory=dict)

    def load(self, rel):
        """The parsed JSON file ``rel`` (relative to the root)."""
        if rel not in self.cache:
            path = self.root / rel
            if not path.is_file():
                raise SourceError(f"source {rel} does not exist")
            self.cache[rel] = json.loads(path.read_text(encoding="utf-8"))
        return self.cache[rel]


def lookup(data, key):
    """The value at ``key``: a ``/``-separated path, or ``=`` and an expression over ``d``."""
    if key.startswith("="):
        env = {"d": data, "summarise": summarise, "ratios": ratios, "PEERS": PEERS,
               "NEURAL": NEURAL,
               "median": statistics.median, "mean": statistics.mean, "min": min,
               "max": max, "abs": abs, "sum": sum, "len": len, "round": round, "sorted": sorted,
               "list": list}
        # globals, so that comprehensions see them; keys come from the committed registry
        return eval(key[1:], {"__builtins__": {}, **env})
    value = data
    for part in key.split("/"):
        if isinstance(value, list):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise SourceError(f"no key {part!r} (of {key!r})")
    return value


def fmt(value, spec):
    """``value`` as the docs quote it: a format spec (``.3f``, ``+.3f``, ``.0%``, ``,.0f``), or
    ``sciN``: N decimals in scientific notation without the exponent's padding (``1.4e-5``)."""
    if isinstance(value, str):
        return value
    if spec.startswith("sci"):
        mantissa, exponent = format(value, f".{spec[3:]}e").split("e")
        return f"{mantissa}e{int(exponent)}"
    return format(value, spec)


# ----------------------------------------------------------------------------- generators


@dataclass
class Block:
    """What a generator renders: a table (rows, the first the header) or lines of output."""

    rows: list = None
    align: str = ""  # one character per column: "l" or "r" (Markdown alignment)
    code: list = None  # lines of a printed output, shown as a literal block
    source: str = ""


def _ranks(values):
    """Average ranks of ``values`` (1 = smallest; ties share the mean rank)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def summarise(res, half, methods, complete=False):
    """Per-data-set means over the splits every method ran, ranks and median times.

    The same computation as ``bench_quality.summarise`` (the test binds the two), without
    importing the benchmark and its data packages. ``complete``: only the data sets that
    every method ran. Returns ``(rows, summary)``.
    """
    recs = [r for r in res["results"] if r.get("status") == "ok"]
    rows = {}
    for d, info in res["datasets"].items():
        if info["half"] != half:
            continue
        by = {}
        for r in recs:
            if r["dataset"] == d and r["method"] in methods:
                by.setdefault(r["method"], {})[r["split"]] = r
        ms = [m for m in methods if m in by]
        if not ms or (complete and len(ms) < len(methods)):
            continue
        common = set.intersection(*(set(by[m]) for m in ms))
        if not common:
            continue
        main, second = ("rmse", "r2") if info["task"] == "regression" else ("log_loss", "accuracy")
        cells = {}
        for m in ms:
            rs = [by[m][s] for s in sorted(common)]
            # numpy's mean, as bench_quality.summarise: two methods whose split scores sum
            # alike tie there only where the two means round alike
            cells[m] = {k: float(np.mean([r[k] for r in rs])) for k in rs[0]
                        if k in ("rmse", "r2", "log_loss", "accuracy", "fit_s", "predict_s")}
        for m, a, b in zip(ms, _ranks([cells[m][main] for m in ms]),
                           _ranks([-cells[m][second] for m in ms])):
            cells[m]["rank"], cells[m]["rank2"] = a, b
        rows[d] = {"main": main, "second": second, "splits": sorted(common), "cells": cells}
    summary = {}
    for m in methods:
        cells = [rows[d]["cells"][m] for d in rows if m in rows[d]["cells"]]
        if not cells:
            continue
        fits = [r["fit_s"] for r in recs if r["method"] == m and r["dataset"] in rows]
        preds = [r["predict_s"] for r in recs if r["method"] == m and r["dataset"] in rows]
        summary[m] = {"avg_rank": statistics.fmean(c["rank"] for c in cells),
                      "avg_rank_acc_r2": statistics.fmean(c["rank2"] for c in cells),
                      "median_fit_s": statistics.median(fits),
                      "median_predict_s": statistics.median(preds),
                      "n_datasets": len(cells)}
    return rows, summary


def ratios(res, half, a, b, key="main"):
    """``{data set: mean of a's key / mean of b's key}`` over the splits both methods ran.

    ``key``: a field of the results (``fit_s``, ``member_epochs``, ...) or ``"main"``, the
    ranked metric (RMSE for regression, log-loss otherwise). For the registry's expressions.
    """
    out = {}
    for d, info in res["datasets"].items():
        if info["half"] != half:
            continue
        field = ("rmse" if info["task"] == "regression" else "log_loss") if key == "main" else key
        by = {m: {r["split"]: r[field] for r in res["results"] if r["dataset"] == d
                  and r["method"] == m and r.get("status") == "ok" and field in r} for m in (a, b)}
        common = sorted(set(by[a]) & set(by[b]))
        if common:
            out[d] = (statistics.fmean(by[a][s] for s in common)
                      / statistics.fmean(by[b][s] for s in common))
    return out


# The methods of the README's table: skensemble's defaults and the peers that ran every
# data set of both halves on three splits.
PEERS = ["skensemble_default", "catboost", "lightgbm", "xgboost", "hgb", "sklearn_mlp"]
PEER_NAMES = {
    "skensemble_default": "**skensemble** (defaults)", "catboost": "CatBoost",
    "lightgbm": "LightGBM", "xgboost": "XGBoost", "hgb": "HistGradientBoosting",
    "sklearn_mlp": "scikit-learn MLP",
}
QUALITY = "benchmarks/results/quality.json"


def gen_quality_peers(ctx):
    """The README's table: average ranks and median fit times against the peers."""
    res = ctx.load(QUALITY)
    halves = {h: summarise(res, h, PEERS) for h in ("tuning", "heldout")}
    n = {h: len(rows) for h, (rows, _) in halves.items()}
    rows = [["method", f"rank, tuning ({n['tuning']} sets)",
             f"rank, held-out ({n['heldout']} sets)", "accuracy / R² rank, held-out",
             "median fit s, tuning", "median fit s, held-out", "median predict s, held-out"]]
    for m in PEERS:
        t, h = halves["tuning"][1][m], halves["heldout"][1][m]
        rows.append([PEER_NAMES[m], f"{t['avg_rank']:.2f}", f"{h['avg_rank']:.2f}",
                     f"{h['avg_rank_acc_r2']:.2f}", f"{t['median_fit_s']:.2f}",
                     f"{h['median_fit_s']:.2f}", f"{h['median_predict_s']:.4f}"])
    return Block(rows=rows, align="l" + "r" * 6, source=QUALITY)


PEERS_PICTURE = "benchmarks/results/quality_peers.png"


def plot_peers(ctx):
    """The README's picture: average rank against median fit time, one panel per half."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = ctx.load(QUALITY)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, half in zip(axes, ("tuning", "heldout")):
        rows, summary = summarise(res, half, PEERS)
        for m, s in summary.items():
            ours = m.startswith("skensemble")
            ax.scatter(s["median_fit_s"], s["avg_rank"], s=60 if ours else 40,
                       color="C3" if ours else "C0", zorder=3)
            ax.annotate(PEER_NAMES[m].replace("**", ""), (s["median_fit_s"], s["avg_rank"]),
                        fontsize=9, xytext=(5, 4), textcoords="offset points")
        times = [s["median_fit_s"] for s in summary.values()]
        ax.set_xscale("log")
        ax.set_xlim(min(times) / 2, max(times) * 5)
        ax.set_xlabel("median fit time per fit [s], one core (log scale)")
        ax.set_title(f"{'held-out' if half == 'heldout' else half} half ({len(rows)} data sets, "
                     "3 splits)", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("average rank by RMSE / log-loss (lower is better)")
    axes[0].invert_yaxis()
    fig.suptitle("Accuracy against fit time, every method at its defaults", fontsize=11)
    fig.tight_layout()
    fig.savefig(ctx.root / PEERS_PICTURE, dpi=100)
    plt.close(fig)
    print(f"drew {PEERS_PICTURE}")


def _per_dataset(ctx, half, methods, source=QUALITY, complete=False):
    res = ctx.load(source)
    rows_, summary = summarise(res, half, methods, complete)
    ms = [m for m in methods if m in summary]
    rows = [["data set"] + [m.replace("skensemble_", "ske_") for m in ms]]
    for d, row in rows_.items():
        vals = {m: row["cells"][m][row["main"]] for m in ms if m in row["cells"]}
        best = min(vals.values())
        rows.append([f"{d} ({row['main']}, {len(row['splits'])} sp)"]
                    + [("" if m not in vals else
                        (f"**{vals[m]:.4f}**" if vals[m] == best else f"{vals[m]:.4f}"))
                       for m in ms])
    rows.append(["average rank"] + [f"{summary[m]['avg_rank']:.2f}" for m in ms])
    rows.append(["median fit s"] + [f"{summary[m]['median_fit_s']:.2f}" for m in ms])
    return Block(rows=rows, align="l" + "r" * len(ms), source=source)


def gen_quality_tuning(ctx):
    """The tuning half per data set, the README's methods."""
    return _per_dataset(ctx, "tuning", PEERS)


def gen_quality_heldout(ctx):
    """The held-out half per data set, the README's methods."""
    return _per_dataset(ctx, "heldout", PEERS)


NEURAL = ["skensemble_default", "skensemble_strong", "skensemble_0.1_defaults", "sklearn_mlp",
          "bagging_mlp", "hgb", "realmlp_td", "tabm_d_small"]


def gen_quality_neural_tuning(ctx):
    """The first twelve sets' tuning half with the neural peers (RealMLP, TabM, bagging)."""
    return _per_dataset(ctx, "tuning", NEURAL, complete=True)


def gen_quality_neural_heldout(ctx):
    """The first twelve sets' held-out half with the neural peers."""
    return _per_dataset(ctx, "heldout", NEURAL, complete=True)


HPO = "benchmarks/results/quality_hpo.json"
HPO_METHODS = {
    "skensemble_default": "defaults", "skensemble_hpo_select": '`"auto"` + sel.',
    "skensemble_default_70": "70 members", "skensemble_hpo_70_select": '70 `"auto"` + sel.',
    "skensemble_hpo_70_prune": '70 `"auto"`, halving',
    "skensemble_hpo_70_prune_select": '70 `"auto"`, halving + sel.',
    "search_plain": "search, 3 × `cv=2`", "search_default": "search, 10 × `cv=5`",
}


def gen_hpo(ctx):
    """One fit of many members against scikit-learn's search, held-out half."""
    res = ctx.load(HPO)
    methods = list(HPO_METHODS)
    rows_, summary = summarise(res, "heldout", methods)
    metric = {"rmse": "RMSE", "log_loss": "log-loss"}
    rows = [[""] + list(HPO_METHODS.values())]
    for d, row in rows_.items():
        vals = [row["cells"][m][row["main"]] for m in methods]
        rows.append([f"{d} ({metric[row['main']]})"]
                    + [f"**{v:.4f}**" if v == min(vals) else f"{v:.4f}" for v in vals])
    ranks = [summary[m]["avg_rank"] for m in methods]
    rows.append([f"average rank of {len(methods)}"]
                + [f"**{r:.2f}**" if r == min(ranks) else f"{r:.2f}" for r in ranks])
    rows.append(["median fit"] + [_seconds(summary[m]["median_fit_s"]) for m in methods])
    return Block(rows=rows, align="l" + "r" * len(methods), source=HPO)


def _seconds(s):
    return f"{s:.2f} s" if s < 10 else f"{s:.1f} s"


ABLATION = "benchmarks/results/quality_ablation.json"
ABLATION_NAMES = {
    "abl_default": "the base: new defaults with hidden (100, 100)",
    "abl_no_robust": '`input_scaling="standard"`',
    "abl_no_encoding": '`numeric_encoding="none"`',
    "abl_neither": "both of the above",
    "abl_bins16": "`n_bins=16`",
    "abl_batch200": "`batch_size=200`",
    "abl_one_layer": "hidden (100,): **the new default**",
    "abl_no_early_stopping": "`early_stopping=False`",
    "abl_20_members": "`n_estimators=20`",
    "abl_old_defaults": "the 0.1 defaults",
}


def gen_ablation(ctx):
    """Each idea of the defaults switched off in turn, tuning half."""
    res = ctx.load(ABLATION)
    methods = list(ABLATION_NAMES)
    rows_, summary = summarise(res, "tuning", methods)
    rows = [["configuration"] + list(rows_) + ["rank", "median fit s"]]
    for m in methods:
        rows.append([ABLATION_NAMES[m]]
                    + [f"{row['cells'][m][row['main']]:.4f}" for row in rows_.values()]
                    + [f"{summary[m]['avg_rank']:.2f}", f"{summary[m]['median_fit_s']:.2f}"])
    return Block(rows=rows, align="l" + "r" * (len(rows[0]) - 1), source=ABLATION)


COLD = "benchmarks/results/cold_start.json"


def gen_cold_start(ctx):
    """First fit in a new environment against a later process (medians)."""
    s = ctx.load(COLD)["summary_median"]

    def sec(v):
        return f"{v:.1f} s" if v >= 2 else ("0 s" if v == 0 else f"{v:.2f} s")

    rows = [["numba cache", "`from skensemble import NeuralBaggingClassifier`", "first fit",
             "second fit, same process", "numba compiling"]]
    for key, label in (("cold", "empty (new environment)"), ("warm", "warm (any later process)")):
        c = s[key]
        rows.append([label, sec(c["import_s"]), sec(c["first_fit_s"]), sec(c["second_fit_s"]),
                     sec(c["compile_s"])])
    return Block(rows=rows, align="lrrrr", source=COLD)


TRAINING = "benchmarks/results/training_cpu.json"


def _sig(v):
    """Seconds as the speed table quotes them: three significant figures."""
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def _ratio(v):
    return f"{v:.0f}x" if v >= 10 else f"{v:.1f}x"


def gen_training_cpu(ctx):
    """Seconds per epoch against the baselines."""
    d = ctx.load(TRAINING)
    rows = [["E", "w", "batch", "engine", "skensemble s", "(a) loop over E `torch.nn` models",
             "(b) sklearn `BaggingRegressor(MLPRegressor)`", "(c) skensemble autograd reference"]]
    for t in d["training"]:
        cells = [str(t["E"]), str(t["w"]), str(t["B"]), t["skensemble"]["engine"],
                 _sig(t["skensemble"]["seconds_per_epoch"])]
        for base, ratio in (("torch_loop", "torch_loop"), ("sklearn", "sklearn"),
                            ("reference", "reference")):
            b = t[base]
            star = "*" if b.get("partial") else ""
            cells.append(f"{_sig(b['seconds_per_epoch'])}{star} ({_ratio(t['ratios'][ratio])})")
        rows.append(cells)
    return Block(rows=rows, align="rrrl" + "r" * 4, source=TRAINING)


BUSY = "benchmarks/results/training_cpu_busy.json"


def gen_training_busy(ctx):
    """engine="auto" against each CPU engine, idle and busy."""
    d = ctx.load(BUSY)
    rows = [["members, hidden, batch", "condition", "load", "auto (engine)", "numba", "batched",
             "auto / fastest"]]
    for r in d["rows"]:
        label = (f"{r['E']}, ({', '.join(map(str, r['hidden']))},), {r['B']}"
                 if len(r["hidden"]) == 1 else
                 f"{r['E']}, ({', '.join(map(str, r['hidden']))}), {r['B']}")
        label += f" ({r['rows']:,} rows, {r['epochs']} epochs)"
        s = r["seconds"]
        rows.append([label, r["condition"], f"{r['load_average_at_start'][0]:.1f}",
                     f"{s['auto']['median']:.3f} ({r['auto_engine']})",
                     f"{s['numba']['median']:.3f}", f"{s['batched']['median']:.3f}",
                     f"{r['auto_over_fastest']:.2f}"])
    return Block(rows=rows, align="llrrrrr", source=BUSY)


PARALLEL = "benchmarks/results/parallel.json"


def gen_parallel(ctx):
    """One fit's members over processes and a Dask cluster."""
    d = ctx.load(PARALLEL)
    f = d["fits"]
    send = f["dask"]["sending_seconds"]
    rows = [["fit", "seconds", "vs `n_jobs=1`", "sending data", "members identical to `n_jobs=1`"]]
    for key, label in (("n_jobs=1", "`n_jobs=1` (numba's two threads)"),
                       ("n_jobs=2", "`n_jobs=2` (two loky processes)"),
                       ("dask", "2-worker `LocalCluster`")):
        same = "" if key == "n_jobs=1" else ("yes" if d["identical"][key] else "no")
        sending = f"{min(send):.2f}-{max(send):.2f} s" if key == "dask" else ""
        rows.append([label, f"{f[key]['median_seconds']:.2f}",
                     f"{f[key]['speedup_vs_n_jobs_1']:.2f}x", sending, same])
    return Block(rows=rows, align="lrrrl", source=PARALLEL)


GPU = "benchmarks/results/gpu.json"


def gen_gpu_timings(ctx):
    """Steps per second of the CUDA engines (one H200 run)."""
    t = ctx.load(GPU)["sections"]["timings"]["result"]
    rows = [["E", "w", "batch", "`batched`", "`graphed`", "`triton`", "`auto`"]]
    cases = {}  # (E, width, batch) -> {engine: steps per second}, in the file's order
    for r in t["rows"]:
        if not r.get("sweep"):
            cases.setdefault((r["E"], r["width"], r["batch"], r["auto"]), {})[r["engine"]] = r
    for (E, width, batch, auto), engines in cases.items():
        def cell(engine):
            return f"{engines[engine]['steps_per_s']:,.0f}" if engine in engines else "-"

        rows.append([str(E), str(width), str(batch), cell("batched"), cell("graphed"),
                     cell("triton"), auto])
    return Block(rows=rows, align="rrrrrrl", source=GPU)


PROPERTIES = "benchmarks/results/properties.json"


def gen_properties(ctx):
    """Outcomes of the property suite per category."""
    d = ctx.load(PROPERTIES)
    rows = [["category", "cases", "succeeded", "clean errors", "other failures"]]
    for c in d["categories"]:
        rows.append([c["category"], str(c["cases"]), str(c["succeeded"]), str(c["clean"]),
                     str(c["other"])])
    return Block(rows=rows, align="lrrrr", source=PROPERTIES)


QUICKSTART = "examples/images/quickstart.json"


def gen_quickstart_output(ctx):
    """What examples/quickstart.py printed, as it prints it."""
    q = ctx.load(QUICKSTART)
    lines = [f"one-time kernel compile or cache load: {q['compile_s']:.1f} s", "",
             f"{'model':<45}{'accuracy':>18}{'s / fit':>10}{'total s':>10}"]
    for name, m in q["models"].items():
        lines.append(f"{name:<45}{m['accuracy']:>10.4f} +/- {m['accuracy_sd']:.3f}"
                     f"{m['s_per_fit']:>10.3f}{m['total_s']:>10.1f}")
    lines += ["", f"skensemble fits {q['speedup']:.1f}x faster than the scikit-learn loop."]
    return Block(code=lines, source=QUICKSTART)


SCALE = "benchmarks/results/scale.json"
SCALE_METHODS = ["skensemble_native", "skensemble_native_clip", "skensemble_default",
                 "lightgbm", "catboost", "xgboost", "hgb"]


def gen_scale(ctx):
    """bench_scale.py: every method at every training size, side by side."""
    d = ctx.load(SCALE)
    recs = {(r["dataset"], r["n_train"], r["method"]): r for r in d["results"]
            if r.get("status") == "ok"}
    rows = [["data set", "training rows", "method", "metric", "fit s", "predict s",
             "predict rows/s", "fit peak MiB"]]
    for name in d["datasets"]:
        for n in sorted({k[1] for k in recs if k[0] == name}):
            for m in SCALE_METHODS:
                r = recs.get((name, n, m))
                if r is None:
                    continue
                metric = "rmse" if r.get("rmse") is not None else "log_loss"
                peak = r.get("fit_peak_mib")
                rows.append([name, f"{n:,}", m, f"{metric} {r[metric]:.4f}", f"{r['fit_s']:.2f}",
                             f"{r['predict_s']:.3f}", f"{r['n_test'] / r['predict_s']:,.0f}",
                             "" if peak is None else f"{peak:.0f}"])
    return Block(rows=rows, align="lrllrrrr", source=SCALE)


def gen_scale_full(ctx):
    """bench_scale.py at each data set's full training set: metric (fit s) per method."""
    d = ctx.load(SCALE)
    recs = {(r["dataset"], r["n_train"], r["method"]): r for r in d["results"]
            if r.get("status") == "ok"}
    methods = [m for m in SCALE_METHODS if m not in ("skensemble_default",
                                                     "skensemble_native_clip")]
    rows = [["data set (full)", "training rows", "metric", *methods]]
    for name in d["datasets"]:
        n = max((k[1] for k in recs if k[0] == name), default=None)
        if n is None:
            continue
        first = recs.get((name, n, methods[0]))
        metric = "rmse" if first is not None and first.get("rmse") is not None else "log_loss"
        cells = []
        for m in methods:
            r = recs.get((name, n, m))
            cells.append("-" if r is None else f"{r[metric]:.4f} ({r['fit_s']:.1f} s)")
        rows.append([name, f"{n:,}", metric, *cells])
    return Block(rows=rows, align="lrl" + "r" * len(methods), source=SCALE)


SMALL = "benchmarks/results/small.json"


def gen_small(ctx):
    """bench_small.py: schedules on data too small to validate on."""
    d = ctx.load(SMALL)
    variants = list(d["variants"])
    rows = [["data set", *variants]]
    for name, row in d["results"].items():
        rows.append([name, *(f"{row[v]['loss']:.4f}" for v in variants)])
    rows.append(["mean rank", *(f"{d['mean_rank'][v]:.2f}" for v in variants)])
    return Block(rows=rows, align="l" + "r" * len(variants), source=SMALL)


CLIP = "benchmarks/results/quality_ablation_clip.json"
CLIP_VARIANTS = [("skensemble_smoothclip", "smooth clip (default)"),
                 ("skensemble_asinh", "asinh"), ("skensemble_noclip", "no clip"),
                 ("skensemble_standard", "standard")]


def gen_clip(ctx):
    """The tails of robust scaling on the tuning half (ablation beside the defaults)."""
    rows_by = {}
    for r in ctx.load(CLIP)["results"]:
        if r.get("status") == "ok" and r["method"] in dict(CLIP_VARIANTS):
            v = r.get("rmse") if r.get("rmse") is not None else r.get("log_loss")
            rows_by.setdefault(r["dataset"], {}).setdefault(r["method"], []).append(v)
    names = [m for m, _ in CLIP_VARIANTS]
    rows = [["data set", *(label for _, label in CLIP_VARIANTS)]]
    per_rank = {m: [] for m in names}
    for ds, v in rows_by.items():
        means = [sum(v[m]) / len(v[m]) for m in names]
        rows.append([ds, *(f"{x:.4f}" for x in means)])
        for m, rk in zip(names, _ranks(means)):
            per_rank[m].append(rk)
    rows.append(["mean rank", *(f"{sum(per_rank[m]) / len(per_rank[m]):.2f}" for m in names)])
    return Block(rows=rows, align="l" + "r" * len(names), source=CLIP)


BINS = "benchmarks/results/quality_ablation_bins.json"
BINS_VARIANTS = [("skensemble_bins8", "8 bins"), ("skensemble_bins16", "16 bins"),
                 ("skensemble_bins24", "24 bins (default)")]


def gen_bins(ctx):
    """Bins per feature on the tuning half: mean loss per data set and mean rank."""
    by = {}
    for r in ctx.load(BINS)["results"]:
        if r.get("status") == "ok" and r["method"] in dict(BINS_VARIANTS):
            v = r.get("rmse") if r.get("rmse") is not None else r.get("log_loss")
            by.setdefault(r["dataset"], {}).setdefault(r["method"], []).append(v)
    names = [m for m, _ in BINS_VARIANTS]
    rows = [["data set", *(label for _, label in BINS_VARIANTS)]]
    per_rank = {m: [] for m in names}
    for ds, v in by.items():
        if not all(m in v for m in names):
            continue
        means = [sum(v[m]) / len(v[m]) for m in names]
        rows.append([ds, *(f"{x:.4f}" for x in means)])
        for m, rk in zip(names, _ranks(means)):
            per_rank[m].append(rk)
    rows.append(["mean rank", *(f"{sum(per_rank[m]) / len(per_rank[m]):.2f}" for m in names)])
    return Block(rows=rows, align="l" + "r" * len(names), source=BINS)


MEMORY = "benchmarks/results/memory.json"


def gen_memory(ctx):
    """bench_memory.py: extra peak memory of a default fit and predict."""
    d = ctx.load(MEMORY)
    rows = [["rows x columns", "data MiB", "step", "added at peak MiB", "x the data", "s"]]
    for step in ("fit", "predict"):
        rows.append([f"{d['rows']:,} x {d['columns']}", f"{d['data_mib']:.0f}", step,
                     f"{d[step + '_added_peak_mib']:.0f}", f"{d[step + '_added_over_data']:.2f}",
                     f"{d[step + '_s']:.1f}"])
    if "predict20_rows" in d:
        rows.append([f"{d['predict20_rows']:,} x 20", f"{d['predict20_data_mib']:.0f}",
                     "predict after a 10,000-row fit", f"{d['predict20_added_peak_mib']:.0f}",
                     f"{d['predict20_added_peak_mib'] / d['predict20_data_mib']:.2f}",
                     f"{d['predict20_s']:.1f}"])
    return Block(rows=rows, align="lrlrrr", source=MEMORY)


GENERATORS = {
    "quality-peers": gen_quality_peers,
    "quality-tuning": gen_quality_tuning,
    "quality-heldout": gen_quality_heldout,
    "quality-neural-tuning": gen_quality_neural_tuning,
    "quality-neural-heldout": gen_quality_neural_heldout,
    "hpo": gen_hpo,
    "ablation": gen_ablation,
    "cold-start": gen_cold_start,
    "training-cpu": gen_training_cpu,
    "training-busy": gen_training_busy,
    "parallel": gen_parallel,
    "gpu-timings": gen_gpu_timings,
    "properties": gen_properties,
    "quickstart-output": gen_quickstart_output,
    "scale": gen_scale,
    "scale-full": gen_scale_full,
    "small": gen_small,
    "clip": gen_clip,
    "bins": gen_bins,
    "memory": gen_memory,
}

# ----------------------------------------------------------------------------- rendering


def render(block, markdown):
    """The lines of a generated block, in Markdown or reST."""
    if block.code is not None:
        if markdown:
            return ["```", *block.code, "```"]
        return [".. code-block:: text", "", *[("   " + line).rstrip() for line in block.code]]
    if markdown:
        sep = "|" + "|".join("--:" if a == "r" else "---" for a in block.align) + "|"
        lines = ["| " + " | ".join(block.rows[0]) + " |", sep]
        lines += ["| " + " | ".join(row) + " |" for row in block.rows[1:]]
        return lines
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in block.rows:
        for i, cell in enumerate(row):
            text = cell.replace("`", "``") if "`" in cell and "``" not in cell else cell
            lines.append(("   * - " if i == 0 else "     - ") + text if text else
                         ("   * -" if i == 0 else "     -"))
    return lines


# ----------------------------------------------------------------------------- the check


@dataclass
class Problem:
    """One failed check, with where it is."""

    file: str
    line: int
    message: str

    def __str__(self):
        return f"{self.file}:{self.line}: {self.message}"


def doc_files(root):
    """README.md and the reST sources of docs/ (not generated ones, not the build)."""
    files = [root / "README.md"]
    docs = root / "docs"
    for path in sorted(docs.rglob("*.rst")):
        rel = path.relative_to(docs).parts
        if rel[0] in EXCLUDED_DOCS or path.name == "sg_execution_times.rst":
            continue
        files.append(path)
    return [f for f in files if f.is_file()]


def markers(markdown):
    """Regexes of a generated block's start and end lines."""
    if markdown:
        return (re.compile(r"^<!-- check_docs: ([\w-]+) -->\s*$"),
                re.compile(r"^<!-- check_docs: end -->\s*$"))
    return re.compile(r"^\.\. check_docs: ([\w-]+)\s*$"), re.compile(r"^\.\. check_docs: end\s*$")


def generated_blocks(lines, markdown):
    """``[(name, first body line index, end marker index)]`` of the generated blocks."""
    start, end = markers(markdown)
    blocks, open_ = [], None
    for i, line in enumerate(lines):
        if end.match(line):
            if open_:
                blocks.append((open_[0], open_[1], i))
            open_ = None
        elif start.match(line):
            open_ = (start.match(line).group(1), i + 1)
    return blocks


def _body(rendered, markdown):
    # reST needs a blank line after the opening comment and before the closing one.
    return rendered if markdown else ["", *rendered, ""]


def check_generated(ctx, rel, lines, markdown, write, problems):
    """Compare (or rewrite) every generated block; returns the (possibly new) lines."""
    out, pos = [], 0
    for name, first, last in generated_blocks(lines, markdown):
        out += lines[pos:first]
        pos = last
        if name not in GENERATORS:
            problems.append(Problem(rel, first, f"unknown generated block {name!r}; known: "
                                                 f"{', '.join(GENERATORS)}"))
            out += lines[first:last]
            continue
        try:
            block = GENERATORS[name](ctx)
        except (SourceError, KeyError) as exc:
            problems.append(Problem(rel, first, f"generated block {name!r}: {exc}"))
            out += lines[first:last]
            continue
        want = _body(render(block, markdown), markdown)
        have = lines[first:last]
        if write:
            out += want
            continue
        out += have
        if have != want:
            problems.append(Problem(rel, *_first_difference(name, block.source, have, want,
                                                            first)))
    out += lines[pos:]
    return out


def _cells(line):
    line = line.strip()
    if line.startswith("|"):
        return [c.strip() for c in line.strip("|").split("|")]
    return [re.sub(r"^(\* )?- ?", "", line)]


def _first_difference(name, source, have, want, first):
    """(line number, message) of the first line where a generated block differs."""
    for i in range(max(len(have), len(want))):
        a = have[i] if i < len(have) else "(nothing)"
        b = want[i] if i < len(want) else "(nothing)"
        if a != b:
            ca, cb = _cells(a), _cells(b)
            if len(ca) == len(cb):
                diffs = [f"{x!r} where {source} gives {y!r}" for x, y in zip(ca, cb) if x != y]
                detail = "; ".join(diffs)
            else:
                detail = f"{a.strip()!r} where {source} gives {b.strip()!r}"
            return first + i + 1, (f"generated block {name!r} differs from its source: the "
                                   f"text says {detail} (python benchmarks/check_docs.py --write "
                                   "regenerates it)")
    raise AssertionError("no difference")


def template_regex(text):
    """The regex of a registry entry's text: ``{}`` captures a number, spaces match any."""
    parts = text.split("{}")
    out = []
    for i, part in enumerate(parts):
        words = [re.escape(w) for w in re.split(r"\s+", part)]
        out.append(r"\s+".join(words))
        if i < len(parts) - 1:
            out.append(f"({NUMBER})")
    return re.compile("".join(out))


def line_of(text, offset):
    """1-based line number of a character offset."""
    return text.count("\n", 0, offset) + 1


def check_registry(ctx, texts, entries, problems):
    """Check the registry's figures; returns ``{file: [(start, end) of checked numbers]}``."""
    spans = {}
    for n, entry in enumerate(entries):
        rel = entry["file"]
        where = f"{REGISTRY} entry {n} ({entry['text'][:40]!r})"
        if rel not in texts:
            problems.append(Problem(rel, 0, f"{where}: no such checked file"))
            continue
        text = texts[rel]
        matches = list(template_regex(entry["text"]).finditer(text))
        if len(matches) != 1:
            what = "does not occur" if not matches else f"occurs {len(matches)} times"
            line = line_of(text, matches[1].start()) if len(matches) > 1 else 0
            problems.append(Problem(rel, line, f"{where}: the text {what} (make it unique, or "
                                               "update the entry)"))
            continue
        m = matches[0]
        keys = entry["keys"]
        formats = entry["format"]
        formats = formats if isinstance(formats, list) else [formats] * len(keys)
        if len(keys) != len(m.groups()) or len(formats) != len(keys):
            problems.append(Problem(rel, line_of(text, m.start()),
                                    f"{where}: {len(m.groups())} figures in the text, "
                                    f"{len(keys)} keys, {len(formats)} formats"))
            continue
        for g, (key, spec) in enumerate(zip(keys, formats), start=1):
            spans.setdefault(rel, []).append((m.start(g), m.end(g)))
            line = line_of(text, m.start(g))
            try:
                want = fmt(lookup(ctx.load(entry["source"]), key), spec)
            except Exception as exc:  # a key that does not resolve is a problem to report
                problems.append(Problem(rel, line, f"{where}: {entry['source']} {key}: "
                                                   f"{type(exc).__name__}: {exc}"))
                continue
            have = m.group(g).replace("−", "-")
            if have != want:
                problems.append(Problem(rel, line, f"the text says {have}, {entry['source']} "
                                                   f"{key} gives {want}"))
    return spans


def tables(lines, markdown):
    """``[(header line index, [(line index, [cell texts])])]`` of the tables in a file."""
    found = []
    if markdown:
        i, fence = 0, False
        while i < len(lines):
            if lines[i].lstrip().startswith("```"):
                fence = not fence
            if not fence and lines[i].lstrip().startswith("|"):
                j = i
                while j < len(lines) and lines[j].lstrip().startswith("|"):
                    j += 1
                rows = [(k, _cells(lines[k])) for k in range(i + 1, j)
                        if not re.match(r"^\s*\|[\s:|-]+\|\s*$", lines[k])]
                found.append((i, rows))
                i = j
                continue
            i += 1
        return found
    found += _simple_tables(lines)
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)\.\. list-table::", lines[i])
        if not m:
            i += 1
            continue
        indent = len(m.group(1))
        header_rows, j = 0, i + 1
        rows, current = [], None
        while j < len(lines) and (not lines[j].strip() or
                                  len(lines[j]) - len(lines[j].lstrip()) > indent):
            s = lines[j].strip()
            h = re.match(r":header-rows:\s*(\d+)", s)
            if h:
                header_rows = int(h.group(1))
            elif s.startswith("* -") or s == "*":
                current = [j, [s[3:].strip()]]
                rows.append(current)
            elif (s.startswith("- ") or s == "-") and current is not None:
                current[1].append(s[2:].strip())
            elif s and current is not None:
                current[1][-1] += " " + s
            j += 1
        body = [(k, cells) for k, cells in rows[header_rows:]]
        header = rows[0][0] if rows else i
        found.append((header, body))
        i = j
    return found


def _simple_tables(lines):
    """reST simple tables (``===  ===`` borders): the body rows, cut at the columns."""
    border = re.compile(r"^\s*=+( +=+)+\s*$")
    found, i = [], 0
    while i < len(lines):
        if not border.match(lines[i]):
            i += 1
            continue
        spans = [m.span() for m in re.finditer(r"=+", lines[i])]
        borders, j = [i], i + 1
        while j < len(lines) and len(borders) < 3 and (lines[j].strip() or len(borders) < 2):
            if border.match(lines[j]):
                borders.append(j)
            j += 1
        if len(borders) < 3:  # a table without a header: the body is between two borders
            borders = [borders[0], borders[0], borders[-1]]
        body = []
        for k in range(borders[1] + 1, borders[2]):
            if lines[k].strip():
                cells = [lines[k][a:(spans[n + 1][0] if n + 1 < len(spans) else None)].strip()
                         for n, (a, _) in enumerate(spans)]
                body.append((k, cells))
        found.append((borders[0] + 1 if borders[1] > borders[0] else borders[0], body))
        i = borders[2] + 1
    return found


def check_tables(rel, lines, markdown, spans, table_entries, generated, problems):
    """Flag every number in a results table that no generated block or entry covers."""
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    covered = spans.get(rel, [])
    for header, rows in tables(lines, markdown):
        if any(first <= header < last for _, first, last in generated):
            continue
        head = lines[header] if markdown else " ".join(
            lines[k] for k in range(header, min(header + 12, len(lines))))
        entry = next((t for t in table_entries if t["file"] == rel and t["header"] in head), None)
        if entry and "not_results" in entry:
            continue
        label_columns = entry.get("label_columns", 1) if entry else 1
        for line_index, cells in rows:
            for cell in cells[label_columns:]:
                for m in TABLE_NUMBER.finditer(CODE.sub(lambda c: " " * len(c.group()), cell)):
                    token = m.group()
                    # where the token is in the file: search the row's lines for it
                    found = False
                    for k in range(line_index, min(line_index + 8, len(lines))):
                        for mm in re.finditer(re.escape(token), lines[k]):
                            pos = offsets[k] + mm.start()
                            if any(a <= pos < b for a, b in covered):
                                found = True
                    if not found:
                        problems.append(Problem(
                            rel, line_index + 1,
                            f"unregistered figure {token} in a results table (cell {cell!r}): "
                            f"generate the table or bind the figure in {REGISTRY}"))


def check(root, write=False):
    """All problems of the repository at ``root`` (rewriting generated blocks if ``write``)."""
    ctx = Context(Path(root))
    registry_path = ctx.root / REGISTRY
    registry = json.loads(registry_path.read_text(encoding="utf-8"))
    problems = []
    files = doc_files(ctx.root)
    texts, all_lines = {}, {}
    for path in files:
        rel = path.relative_to(ctx.root).as_posix()
        markdown = path.suffix == ".md"
        lines = path.read_text(encoding="utf-8").split("\n")
        new = check_generated(ctx, rel, lines, markdown, write, problems)
        if write and new != lines:
            path.write_text("\n".join(new), encoding="utf-8")
            print(f"rewrote the generated blocks of {rel}")
        all_lines[rel] = new
        texts[rel] = "\n".join(new)
    spans = check_registry(ctx, texts, registry["figures"], problems)
    for path in files:
        rel = path.relative_to(ctx.root).as_posix()
        markdown = path.suffix == ".md"
        generated = generated_blocks(all_lines[rel], markdown)
        check_tables(rel, all_lines[rel], markdown, spans, registry.get("tables", []), generated,
                     problems)
    return problems


# ----------------------------------------------------------------------------- properties


def run_properties(root):
    """Rerun ``tests/test_properties.py --table`` and store its category table as JSON."""
    import platform
    import time

    start = time.perf_counter()
    out = subprocess.run([sys.executable, "tests/test_properties.py", "--table"], cwd=root,
                         check=True, capture_output=True, text=True).stdout
    cats, lines = [], out.splitlines()
    i = lines.index("| category | cases | succeeded | clean errors | other failures |")
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        name, cases, ok, clean, other = _cells(line)
        if name.startswith("**"):
            continue
        cats.append({"category": name, "cases": int(cases), "succeeded": int(ok),
                     "clean": int(clean), "other": int(other)})
    cats.append({"category": "**all**", **{k: sum(c[k] for c in cats)
                                          for k in ("cases", "succeeded", "clean", "other")}})
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "skensemble"], cwd=root,
                           capture_output=True, text=True).stdout.strip()
    result = {"command": "python tests/test_properties.py --table", "commit": commit,
              "skensemble_clean": not dirty,
              "python": platform.python_version(), "seconds": round(time.perf_counter() - start, 1),
              "categories": cats, "output": out}
    path = Path(root) / PROPERTIES
    path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(out)
    print(f"wrote {PROPERTIES}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="repository to check")
    parser.add_argument("--write", action="store_true", help="regenerate the generated blocks")
    parser.add_argument("--properties", action="store_true",
                        help=f"rerun the property suite's summary into {PROPERTIES}")
    args = parser.parse_args(argv)
    if args.properties:
        run_properties(args.root)
    problems = check(args.root, write=args.write)
    if args.write:
        plot_peers(Context(args.root))
    for p in problems:
        print(p)
    n = len(json.loads((args.root / REGISTRY).read_text(encoding="utf-8"))["figures"])
    if problems:
        print(f"{len(problems)} problem(s) in the documentation's figures")
        return 1
    print(f"documentation figures: all match their sources ({n} registered figures' texts, "
          f"{len(GENERATORS)} generators)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
