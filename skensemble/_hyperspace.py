"""Per-member hyperparameters (``member_params``): the registry, the space, one draw per member.

Every name ``member_params`` accepts is registered once in :data:`REGISTRY`, with its
*scope* (how the training uses it), its check and what it must be:

- ``"vector"``: a per-member value of the optimizer step (learning rate, L2 strength);
  members of different values still train as one stacked computation, and each engine
  declares which such values it reads (:mod:`._engines`);
- ``"group"``: a setting members must share to train together (activation, weight decay,
  label smoothing); members of different values train in different groups, each group
  carrying its :class:`GroupSettings`;
- ``"architecture"``: the member's hidden layers (groups by depth or by architecture);
- ``"input"``: what the member's first layer reads (``numeric_encoding``, ``n_bins``);
- ``"rows"``: how many rows the member draws (``max_samples``).

Each member draws its own values from a generator seeded by its own seed, so a member's
values do not depend on how many members there are or which others exist: a warm start
that adds members draws exactly what a fit of all of them at once would have drawn.

Must not train or touch training state. Adding a per-member hyperparameter: register it
here (for a ``"vector"`` one, also a field of :class:`skensemble._engine.Member`; for a
``"group"`` one, a field of :class:`GroupSettings`), implement it in the engines that
run it and declare it there.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from numbers import Integral, Real

import numpy as np
from scipy.stats import loguniform

ACTIVATIONS = ("identity", "logistic", "tanh", "relu")


# ------------------------------------------------------------------------ checks
def _float_at_least_0(name, value):
    if (not isinstance(value, Real) or isinstance(value, bool) or not np.isfinite(value)
            or value < 0):
        raise _drew(name, value)
    return float(value)


def _unit_interval_open_right(name, value):
    if (isinstance(value, Real) and not isinstance(value, bool) and np.isfinite(value)
            and 0 <= value < 1):
        return float(value)
    raise _drew(name, value)


def _unit_interval(name, value):
    if (isinstance(value, Real) and not isinstance(value, bool) and np.isfinite(value)
            and 0 <= value <= 1):
        return float(value)
    raise _drew(name, value)


def _activation(name, value):
    if value not in ACTIVATIONS:
        raise _drew(name, value)
    return str(value)


def _encoding(name, value):
    if value not in ("none", "piecewise_linear"):
        raise _drew(name, value)
    return str(value)


def _n_bins(name, value):
    if isinstance(value, Integral) and not isinstance(value, bool) and value >= 2:
        return int(value)
    raise _drew(name, value)


def _max_samples(name, value):
    if isinstance(value, Integral) and not isinstance(value, bool) and value >= 1:
        return int(value)
    if isinstance(value, Real) and not isinstance(value, (bool, Integral)) and 0 < value <= 1:
        return float(value)
    raise _drew(name, value)


def _hidden_layer_sizes(name, value):
    sizes = (value,) if isinstance(value, Integral) else value
    try:
        sizes = tuple(sizes)
    except TypeError:
        sizes = ()
    if not sizes or not all(isinstance(h, Integral) and h > 0 for h in sizes):
        raise _drew(name, value)
    return tuple(int(h) for h in sizes)


def _drew(name, value):
    return ValueError(f"member_params[{name!r}] drew {value!r}; it must be "
                      f"{REGISTRY[name].describe}.")


# ---------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Entry:
    """One hyperparameter members may draw.

    Attributes
    ----------
    name : str
        Its name in ``member_params`` (and the estimator parameter it overrides).
    scope : str
        ``"vector"``, ``"group"``, ``"architecture"``, ``"input"`` or ``"rows"`` (see
        the module docstring).
    check : callable
        ``check(name, value)``: the value in canonical form, or a ValueError.
    describe : str
        What a value must be (error messages, docs).
    field : str or None
        ``"vector"``: the :class:`skensemble._engine.Member` field it sets; ``"group"``:
        the :class:`GroupSettings` field.
    lists_only : bool
        Only a list of values, no distribution (every value's encoding is computed
        before members draw).
    classifier_only : bool
    """

    name: str
    scope: str
    check: object
    describe: str
    field: str = None
    lists_only: bool = False
    classifier_only: bool = False


REGISTRY = {e.name: e for e in (
    Entry("learning_rate_init", "vector", _float_at_least_0, "a float >= 0", field="lr"),
    Entry("alpha", "vector", _float_at_least_0, "a float >= 0", field="alpha"),
    Entry("momentum", "vector", _unit_interval, "a float in [0, 1] (solver='sgd')",
          field="momentum"),
    Entry("hidden_layer_sizes", "architecture", _hidden_layer_sizes,
          "a tuple of positive ints (or one int)"),
    Entry("activation", "group", _activation,
          "one of 'identity', 'logistic', 'tanh', 'relu'", field="activation"),
    Entry("max_samples", "rows", _max_samples,
          "a float in (0, 1] or an int >= 1 (rows each member draws)"),
    Entry("label_smoothing", "group", _unit_interval_open_right,
          "a float in [0, 1) (NeuralBaggingClassifier only)", field="label_smoothing",
          classifier_only=True),
    Entry("weight_decay", "group", _float_at_least_0, "a float >= 0", field="weight_decay"),
    Entry("numeric_encoding", "input", _encoding, "'none' or 'piecewise_linear'",
          lists_only=True),
    Entry("n_bins", "input", _n_bins,
          "an int >= 2, from a list (every listed count's bins are computed before "
          "members draw)", lists_only=True),
)}

#: Hyperparameters a member may draw, and what each must be.
SUPPORTED = {name: e.describe for name, e in REGISTRY.items()}


@dataclass(frozen=True)
class GroupSettings:
    """Settings that members of one group share (scope ``"group"``); None: the estimator's.

    Members that drew different values train in different groups; each group carries
    its own (:class:`skensemble._groups.Group`), and training applies them to the step
    (:meth:`hyper`) and to the targets (label smoothing).
    """

    activation: str = None
    label_smoothing: float = None
    weight_decay: float = None

    def hyper(self, hyper):
        """``hyper`` with this group's activation and weight decay where it has its own."""
        own = {f: getattr(self, f) for f in ("activation", "weight_decay")
               if getattr(self, f) is not None}
        return replace(hyper, **own) if own else hyper


assert {f.name for f in fields(GroupSettings)} == {
    e.field for e in REGISTRY.values() if e.scope == "group"}, "GroupSettings != registry"


def auto_space():
    """The documented default space of ``member_params="auto"``.

    Log-uniform learning rate over [5e-4, 2e-3] (around adam's 1e-3) and L2 strength
    over [1e-5, 1e-3] (around 1e-4), and ``relu`` or ``tanh``; every member keeps the
    estimator's ``hidden_layer_sizes``, so the fit costs what a plain one does. It is
    not the default: the measurements behind that, and behind keeping the rates around
    1e-3, are in ``benchmarks/README.md`` ("member_params='auto'").
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
        if name not in REGISTRY:
            raise ValueError(
                f"member_params[{name!r}]: members cannot draw {name!r}. Supported: "
                f"{sorted(SUPPORTED)}; set the others as the estimator's parameters.")
        if hasattr(values, "rvs"):
            if REGISTRY[name].lists_only:
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


def check_value(name, value):
    """``value`` in its canonical form (float, int, str or tuple of ints), or ValueError."""
    return REGISTRY[name].check(name, value)


def draw(member_params, seeds, old=None, classifier=True):
    """Each member's values for ``member_params`` (list of dicts), or None without it.

    ``old``: the values of members already fitted (a warm start); they keep them.
    """
    space = resolve(member_params)
    if space is None:
        return None
    for name in space:
        if REGISTRY[name].classifier_only and not classifier:
            raise ValueError(
                f"member_params[{name!r}] is for classification: only "
                f"NeuralBaggingClassifier has it. Remove it from member_params.")
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


def names_of(params, scope):
    """The registered names of ``scope`` that members drew (list)."""
    if params is None:
        return []
    return [n for n in sorted(params[0]) if REGISTRY[n].scope == scope]


def group_settings(params, members=None):
    """Each member's :class:`GroupSettings` (list), or None where no member drew any.

    Members of different settings train in different groups
    (:func:`skensemble._groups.make_groups`).
    """
    names = names_of(params, "group")
    if not names:
        return None
    members = range(len(params)) if members is None else members
    return [GroupSettings(**{REGISTRY[n].field: params[int(e)][n] for n in names})
            for e in members]


def vectors(params, members=None):
    """Per-member values of scope ``"vector"``: ``{Member field: (E,) float64}`` (maybe empty)."""
    return {REGISTRY[n].field: np.array(values(params, n, members), dtype=np.float64)
            for n in names_of(params, "vector")}


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
        check_value("n_bins", value)
    for value in encodings:
        check_value("numeric_encoding", value)
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
            drawn[name] = check_value(name, value)
        out.append(drawn)
    return out
