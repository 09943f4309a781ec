"""The small problems every engine test runs, and how to run an engine on one.

One generator for all engine tests (tests/test_contract.py, the engine-specific modules):
initial parameters (:class:`skensemble._engine.Params`), the rows (:class:`~._engine.Data`)
and a visiting order per epoch, from one seed; :func:`run` runs an epoch function over
them from a copy of the parameters, :func:`assert_same` compares two runs.
"""

from dataclasses import dataclass

import numpy as np
import torch

from skensemble import _engine as eng
from skensemble._inputs import Encoding

#: Solver variants: the ``solver`` and its momentum kind.
SOLVERS = {
    "adam": dict(solver="adam"),
    "nesterov": dict(solver="sgd", nesterovs_momentum=True),
    "heavy_ball": dict(solver="sgd", nesterovs_momentum=False),
    "lion": dict(solver="lion", beta_2=0.99),
}

# On these problems the float32 reference itself is up to ~7e-6 away from a float64 run
# of it (rounding, amplified by adam's normalisation); the engines are as close or closer.
RTOL = ATOL = 1e-5


@dataclass
class Case:
    """A problem: the start, the rows and one visiting order per epoch."""

    params: eng.Params
    data: eng.Data
    orders: list


def problem(sizes, hyper, E=3, N=17, M=None, weighted=True, seed=0, epochs=2,
            n_columns=None, features=None, encoding=None, columns=None, device="cpu"):
    """Glorot start, zero optimizer state, random rows, targets, weights and orders.

    ``n_columns``: columns of X when members read subsets (``features (E, k)``: each
    member's columns, then ``sizes[0] == k``); ``encoding`` (an
    :class:`~skensemble._inputs.Encoding` of X's columns, with bins) and ``columns (E, w)``
    (each member's columns of its space, or None: all) map X instead; ``M`` rows per member
    and epoch (default N), drawn with repeats.
    """
    g = torch.Generator().manual_seed(seed)
    layout = eng.Layout(sizes)
    flat = eng.init_parameters(layout, [seed + e for e in range(E)], hyper.activation)
    state, steps = eng.init_state(flat, hyper)
    n_out = sizes[-1]
    X = torch.randn(N, n_columns or sizes[0], generator=g)
    if hyper.loss == "log_loss":
        Y = torch.nn.functional.one_hot(torch.randint(0, n_out, (N,), generator=g), n_out).float()
    else:
        Y = torch.randn(N, n_out, generator=g)
    sw = torch.rand(N, generator=g) * 1.5 + 0.25 if weighted else None
    orders = [torch.randint(0, N, (E, M or N), generator=g).to(device) for _ in range(epochs)]
    params = eng.Params(flat.to(device), state.to(device), steps.to(device), layout)
    first = None
    if features is not None:
        first = Encoding.plain(X.shape[1]).first_layer(np.asarray(features), E, sizes[0])
    elif encoding is not None:
        first = encoding.first_layer(columns, E, sizes[0])
    data = eng.Data(X.to(device), Y.to(device), None if sw is None else sw.to(device),
                    None if first is None else first.to(device))
    return Case(params, data, orders)


def run(epoch, case, hyper, lr=0.01, alpha=None, **kwargs):
    """``epoch`` over ``case`` from a copy of its start: ``(params, [losses per epoch])``.

    ``lr``: one rate or one per member; ``alpha``: None or one L2 strength per member.
    """
    params = case.params.clone()
    E = params.flat.shape[0]
    lr = np.full(E, lr) if np.ndim(lr) == 0 else np.asarray(lr)
    member = eng.Member.of(lr, params.flat.device, alpha=alpha)
    losses = [epoch(params, case.data, order, member, hyper, **kwargs) for order in case.orders]
    return params, losses


def assert_same(ref, got, rtol=RTOL, atol=ATOL):
    """Two runs agree: parameters, optimizer state and losses to tolerance, steps exactly."""
    (p, losses), (q, losses2) = ref, got
    torch.testing.assert_close(q.flat, p.flat, rtol=rtol, atol=atol)
    torch.testing.assert_close(q.state, p.state, rtol=rtol, atol=atol)
    assert torch.equal(q.steps.cpu(), p.steps.cpu())
    for a, b in zip(losses, losses2, strict=True):
        assert b.shape == a.shape
        torch.testing.assert_close(b, a, rtol=rtol, atol=atol)


def call(epoch, flat, state, steps, X, Y, sw, order, lr, hyper, layout, features=None,
         alpha=None, **kwargs):
    """One epoch of ``epoch`` on loose tensors (updated in place, as the engine updates them).

    ``features (E, k)``: each member's columns of ``X``.
    """
    E = flat.shape[0]
    lr = np.full(E, lr) if np.ndim(lr) == 0 else np.asarray(lr)
    member = eng.Member.of(lr, flat.device, alpha=alpha)
    first = None
    if features is not None:
        first = Encoding.plain(X.shape[1]).first_layer(
            np.asarray(features.cpu()), E, layout.sizes[0]).to(flat.device)
    return epoch(eng.Params(flat, state, steps, layout), eng.Data(X, Y, sw, first), order,
                 member, hyper, **kwargs)


def binned(n_columns=4, n_bins=(3, 0, 2, 4), seed=0, levels=()):
    """An :class:`~skensemble._inputs.Encoding` of ``n_columns`` values and some bins each.

    Bins of feature f cover [-1.5, 1.5] in ``n_bins[f]`` equal widths (0: a value without
    bins, like a binary feature); first bins open below, last ones above.
    """
    lo, inv, feature, first, last = [], [], [], [], []
    for f, n in enumerate(n_bins):
        if not n:
            continue
        edges = np.linspace(-1.5, 1.5, n + 1) + 0.1 * seed
        lo += list(edges[:-1])
        inv += list(1.0 / np.diff(edges))
        feature += [f] * n
        first += [True] + [False] * (n - 1)
        last += [False] * (n - 1) + [True]
    F = n_columns + len(levels)
    lf = np.repeat(np.arange(n_columns, F), levels).astype(np.int64)
    lc = np.concatenate([np.arange(m) for m in levels] or [[]]).astype(np.int64)
    return Encoding(F, F + len(lo) + lf.size + 1, np.array(lo), np.array(inv),
                    np.array(feature, np.int64), np.array(first), np.array(last), n_columns,
                    lf, lc)
