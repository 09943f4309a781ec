"""Per-member hyperparameters (``member_params``): the space, its checks, one draw per member.

Each member draws its own values from a generator seeded by its own seed, so a member's
values do not depend on how many members there are or which others exist: a warm start
that adds members draws exactly what a fit of all of them at once would have drawn.

Must not train or touch training state; :mod:`._base` applies the drawn values (rates
and L2 strengths as per-member vectors of one stacked group, architectures and
activations as groups, row counts as each member's own sample).
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from scipy.stats import loguniform

#: Hyperparameters a member may draw, and what each must be.
SUPPORTED = {
    "learning_rate_init": "a float >= 0",
    "alpha": "a float >= 0",
    "hidden_layer_sizes": "a tuple of positive ints (or one int)",
    "activation": "one of 'identity', 'logistic', 'tanh', 'relu'",
    "max_samples": "a float in (0, 1] or an int >= 1 (rows each member draws)",
    "label_smoothing": "a float in [0, 1) (NeuralBaggingClassifier only)",
    "weight_decay": "a float >= 0",
    "numeric_encoding": "'none' or 'piecewise_linear'",
    "n_bins": "an int >= 2, from a list (every listed count's bins are computed before "
              "members draw)",
}

#: Values, besides the architecture, that members must share to train in one group.
GROUPING = ("activation", "label_smoothing", "weight_decay")


def auto_space():
    """The documented default space of ``member_params="auto"``.

    Log-uniform learning rate over [5e-4, 2e-3] (around adam's 1e-3) and L2 strength
    over [1e-5, 1e-3] (around 1e-4), and ``relu`` or ``tanh``; every member keeps the
    estimator's ``hidden_layer_sizes``, so the fit costs what a plain one does. On the
    tuning half of ``benchmarks/bench_quality.py`` this cheap diversity ranked above the
    estimator's defaults (then at rate 1e-3) and above a wider space of architectures
    (64 to 256 units, one or two layers) with ensemble selection, which cost 2-3 times
    as much
    (``benchmarks/results/quality_hpo.json`` at f35b109). On the held-out half (3
    splits, ``benchmarks/results/quality_hpo.json`` at 75e4646) ten such members ranked
    below the defaults and below ``RandomizedSearchCV`` over the same space, so it is not
    the default. 70 of them with ``prune="halving"`` and ``ensemble_selection`` beat
    scikit-learn's default-size search (10 candidates, ``cv=5``) on 5 of 6 data sets in
    0.10-0.14 of its time, and a search of as many member fits (3 candidates, ``cv=2``)
    on 5 of 6 with fewer member epochs (at 57b0898); 10 or 70 members of the defaults
    at the later default rate 2e-3 ranked above it. The rates stay around 1e-3: drawn
    around 2e-3 instead ([1e-3, 4e-3]), they were worse on 5 of 6 tuning sets
    (``benchmarks/results/quality_hpo_auto_center.json``).
    """
    return {
        "learning_rate_init": loguniform(5e-4, 2e-3),
        "alpha": loguniform(1e-5, 1e-3),
        "activation": ["relu", "tanh"],
    }


def resolve(member_params):
    """The space as a dict ``{name: list or distribution}`` (None: no per-member values).

    Raises
    ------
    ValueError
        Naming ``member_params`` and what to change, for an unknown name, an empty list,
        or a value that is neither a list nor a distribution with ``rvs``.
    """
    if member_params is None:
        return None
    if isinstance(member_params, str):
        if member_params == "auto":
            return auto_space()
        raise ValueError(f"member_params={member_params!r} is not understood; use None, "
                         "'auto' or a dict of hyperparameter name to values.")
    if not isinstance(member_params, dict) or not member_params:
        raise ValueError("member_params must be None, 'auto' or a non-empty dict mapping a "
                         f"hyperparameter name to a list of values or a scipy.stats "
                         f"distribution; got {member_params!r}.")
    for name, values in member_params.items():
        if name not in SUPPORTED:
            raise ValueError(
                f"member_params[{name!r}]: members cannot draw {name!r}. Supported: "
                f"{sorted(SUPPORTED)}; set the others as the estimator's parameters.")
        if hasattr(values, "rvs"):
            if name in ("n_bins", "numeric_encoding"):
                raise ValueError(
                    f"member_params[{name!r}] must be a list, not a distribution: the "
                    "input encodings members may draw are all computed before they draw. "
                    "Use e.g. [4, 8, 16] for 'n_bins' or ['none', 'piecewise_linear'].")
            continue
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or not len(values):
            raise ValueError(
                f"member_params[{name!r}] must be a non-empty list of values or a "
                f"scipy.stats distribution (with .rvs), got {values!r}.")
    return dict(member_params)


def _check_value(name, value):
    """``value`` in its canonical form (float, int, str or tuple of ints), or ValueError."""
    if name == "activation":
        if value not in ("identity", "logistic", "tanh", "relu"):
            raise ValueError(f"member_params['activation'] drew {value!r}; it must be "
                             f"{SUPPORTED[name]}.")
        return str(value)
    if name == "numeric_encoding":
        if value not in ("none", "piecewise_linear"):
            raise ValueError(f"member_params['numeric_encoding'] drew {value!r}; it must be "
                             f"{SUPPORTED[name]}.")
        return str(value)
    if name == "n_bins":
        if isinstance(value, Integral) and not isinstance(value, bool) and value >= 2:
            return int(value)
        raise ValueError(f"member_params['n_bins'] drew {value!r}; it must be "
                         f"{SUPPORTED[name]}.")
    if name == "label_smoothing":
        if (isinstance(value, Real) and not isinstance(value, bool) and np.isfinite(value)
                and 0 <= value < 1):
            return float(value)
        raise ValueError(f"member_params['label_smoothing'] drew {value!r}; it must be "
                         f"{SUPPORTED[name]}.")
    if name == "max_samples":
        if isinstance(value, Integral) and not isinstance(value, bool) and value >= 1:
            return int(value)
        if (isinstance(value, Real) and not isinstance(value, (bool, Integral))
                and 0 < value <= 1):
            return float(value)
        raise ValueError(f"member_params['max_samples'] drew {value!r}; it must be "
                         f"{SUPPORTED[name]}.")
    if name == "hidden_layer_sizes":
        sizes = (value,) if isinstance(value, Integral) else value
        try:
            sizes = tuple(sizes)
        except TypeError:
            sizes = ()
        if not sizes or not all(isinstance(h, Integral) and h > 0 for h in sizes):
            raise ValueError(f"member_params['hidden_layer_sizes'] drew {value!r}; it must "
                             f"be {SUPPORTED[name]}.")
        return tuple(int(h) for h in sizes)
    if (not isinstance(value, Real) or isinstance(value, bool) or not np.isfinite(value)
            or value < 0):
        raise ValueError(f"member_params[{name!r}] drew {value!r}; it must be "
                         f"{SUPPORTED[name]}.")
    return float(value)


def draw(member_params, seeds, old=None, classifier=True):
    """Each member's values for ``member_params`` (list of dicts), or None without it.

    ``old``: the values of members already fitted (a warm start); they keep them.
    """
    space = resolve(member_params)
    if space is None:
        return None
    if "label_smoothing" in space and not classifier:
        raise ValueError(
            "member_params['label_smoothing'] smooths class labels: only "
            "NeuralBaggingClassifier has it. Remove it from member_params.")
    drawn = sample(space, seeds)
    if old:
        keep = min(len(old), len(drawn))
        drawn[:keep] = [dict(p) for p in old[:keep]]
    return drawn


def values(params, name, members=None):
    """The values of ``name`` that members drew (list, of ``members`` only), or None."""
    if params is None or name not in params[0]:
        return None
    members = range(len(params)) if members is None else members
    return [params[int(e)][name] for e in members]


def kinds(params, members=None):
    """Each member's ``(activation, label_smoothing, weight_decay)`` it drew, or None.

    An entry is None where members did not draw that name; members of different kinds
    train in different groups (:func:`skensemble._groups.make_groups`).
    """
    drawn = [values(params, name, members) for name in GROUPING]
    if all(v is None for v in drawn):
        return None
    n = len(next(v for v in drawn if v is not None))
    return list(zip(*[v if v is not None else [None] * n for v in drawn]))


def key_of(encoding, n_bins):
    """A member's input key: its bin count, or 0 without encoding."""
    return 0 if encoding == "none" else int(n_bins)


def input_keys(params, encoding, n_bins):
    """Each member's input key ``(E,)`` int64, or None where no member drew its inputs.

    ``encoding``, ``n_bins``: the estimator's, for members that did not draw them.
    """
    if params is None or not any({"numeric_encoding", "n_bins"} & set(p) for p in params):
        return None
    return np.array([key_of(p.get("numeric_encoding", encoding), p.get("n_bins", n_bins))
                     for p in params], dtype=np.int64)


def bin_counts(member_params, encoding, n_bins):
    """Every bin count the input transform must encode (sorted list; empty: none).

    The estimator's own, and every count a member of the space may draw.
    """
    space = resolve(member_params) or {}
    encodings = space.get("numeric_encoding", [encoding])
    counts = space.get("n_bins", [n_bins])
    for value in counts:
        _check_value("n_bins", value)
    for value in encodings:
        _check_value("numeric_encoding", value)
    return sorted({int(b) for b in counts} if "piecewise_linear" in encodings else set())


def member_rng(seed):
    """A member's generator for its hyperparameters, decorrelated from its other streams."""
    return np.random.RandomState(np.random.SeedSequence([int(seed), 2]).generate_state(1)[0])


def sample(space, seeds):
    """One dict of values per member, names in sorted order, each from the member's seed.

    Parameters
    ----------
    space : dict
        From :func:`resolve`.
    seeds : array-like of int
        The members' seeds.

    Returns
    -------
    list of dict
    """
    out = []
    for seed in seeds:  # set-up: a few draws per member
        rng = member_rng(seed)
        drawn = {}
        for name in sorted(space):
            values = space[name]
            if hasattr(values, "rvs"):
                value = values.rvs(random_state=rng)
                value = value.item() if hasattr(value, "item") else value
            else:
                value = values[rng.randint(len(values))]
            drawn[name] = _check_value(name, value)
        out.append(drawn)
    return out
