"""The engine contract: every available engine equals the reference on everything it declares.

The cases are generated from the engines' declarations (:data:`skensemble._engines.ENGINES`):
for each engine, every solver, activation and loss it declares, with sample weights or
none, one or two hidden layers, batches of one row or of three (a short last batch),
covered pairwise. A declared combination an engine gets wrong fails here; a combination
it does not declare is refused by the dispatcher (tested at the end), never substituted.

Engines run on the CPU: the graphed engine's static-buffer schedule eagerly
(``capture=False``), streaming over the batched and the graphed schedule, numba compiled,
Triton in its interpreter (tiny problems: it is slow).
"""

import os

import numpy as np
import pytest
import torch
from engine_cases import SOLVERS, assert_same, binned, problem, run

from skensemble import _dispatch, _engine, _engines, _schedule
from skensemble._engine import Hyper

# (weighted, hidden, batch_size): every pair of values of these axes occurs once.
PAIRWISE = [(False, (5,), 1), (True, (5, 6), 1), (False, (5, 6), 3), (True, (5,), 3)]


def _graphed(params, data, order, member, hyper):
    return _schedule.epoch_graphed(params, data, order, member, hyper, chunk=2, capture=False)


def _streamed(inner):
    def epoch(params, data, order, member, hyper):
        return _schedule.epoch_streamed(inner, params, data, order, member, hyper,
                                        chunk_steps=2)

    return epoch


def _available():
    """Engine runs on the CPU: name -> (declaration, epoch function, cases)."""
    out = {
        "batched": ("batched", _engine.epoch_batched, PAIRWISE),
        "graphed": ("graphed", _graphed, PAIRWISE),
        "streamed-batched": ("batched", _streamed(_engine.epoch_batched), PAIRWISE[2:]),
        "streamed-graphed": ("graphed", _streamed(_graphed), PAIRWISE[:1]),
    }
    try:
        from skensemble._kernels import numba_cpu

        out["numba"] = ("numba", numba_cpu.epoch_numba, PAIRWISE)
    except ImportError:  # pragma: no cover - numba is a dependency
        pass
    if os.environ.get("TRITON_INTERPRET") == "1" or torch.cuda.is_available():
        try:
            from skensemble._kernels import triton_gpu

            if triton_gpu._build_mode() is not None:
                # the interpreter is slow: one case per combination, the two alternating
                out["triton"] = ("triton", triton_gpu.epoch_triton,
                                 [(True, (4, 5), 1), (False, (4,), 3)])
        except ImportError:  # pragma: no cover - the gpu extra is not installed
            pass
    return out


ENGINES = _available()


def _covering(caps, pairs):
    """The numba cases: every pair of activation, loss, solver and batch kind, once.

    numba builds a kernel per configuration and kind of batch (one row, several rows:
    seconds each). One case per (activation, loss), solver and batch kind from their
    sum t: (t mod 3, t mod 2) runs through every (solver, kind), so each pair of the
    four factors meets (a pairwise covering: 12 kernels, not 72).
    """
    solvers = [s for s, kw in SOLVERS.items() if kw["solver"] in caps.solvers]
    ones, more = [p for p in pairs if p[2] == 1], [p for p in pairs if p[2] > 1]
    for a, activation in enumerate(sorted(caps.activations)):
        for i, loss in enumerate(sorted(caps.losses)):
            t = a + i
            kind = (ones, more)[t % 2]
            yield solvers[t % len(solvers)], activation, loss, kind[a % len(kind)]


def _cases():
    for name, (declared, _, pairs) in ENGINES.items():
        caps = _engines.ENGINES[declared]
        if name == "numba":
            for solver, activation, loss, (weighted, hidden, batch) in _covering(caps, pairs):
                yield pytest.param(name, solver, activation, loss, weighted, hidden, batch,
                                   id=f"{name}-{solver}-{activation}-{loss}-"
                                   f"{'w' if weighted else 'u'}{len(hidden)}-b{batch}")
            continue
        n = 0
        for solver, kw in SOLVERS.items():
            if kw["solver"] not in caps.solvers:
                continue
            for activation in sorted(caps.activations):
                for loss in sorted(caps.losses):
                    n += 1
                    chosen = [pairs[n % 2]] if name == "triton" else pairs
                    for weighted, hidden, batch in chosen:
                        yield pytest.param(name, solver, activation, loss, weighted, hidden,
                                           batch, id=f"{name}-{solver}-{activation}-{loss}-"
                                           f"{'w' if weighted else 'u'}{len(hidden)}-b{batch}")


def _device(name):
    return "cuda" if name == "triton" and torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("engine, solver, activation, loss, weighted, hidden, batch",
                         list(_cases()))
def test_engine_equals_reference(engine, solver, activation, loss, weighted, hidden, batch):
    _, fn, _ = ENGINES[engine]
    n_out = 3 if loss == "log_loss" else len(hidden)  # one output: the single-column paths
    # the pinball loss: one quantile (one output), or one per output
    quantiles = tuple(np.linspace(0.2, 0.7, n_out).tolist()) if loss == "quantile" else ()
    hyper = Hyper(activation=activation, loss=loss, alpha=1e-2, batch_size=batch,
                  quantiles=quantiles, **SOLVERS[solver])
    # A small rate keeps training stable: diverging runs amplify rounding without bound.
    lr = 0.001 if solver == "lion" else 0.01
    tiny = engine == "triton"  # the interpreter runs every program op by op
    case = problem((4, *hidden, n_out), hyper, N=7 if tiny else 17, E=2 if tiny else 3,
                   epochs=1 if tiny else 2, weighted=weighted, device=_device(engine))
    ref = run(_engine.epoch_reference, case, hyper, lr)
    got = run(fn, case, hyper, lr)
    assert not torch.equal(got[0].flat, case.params.flat)  # it trained
    assert_same(ref, got)


def _declares(check):
    """The engines whose declaration passes ``check(capabilities)``."""
    return [pytest.param(n, id=n) for n, (declared, _, _) in ENGINES.items()
            if check(_engines.ENGINES[declared])]


@pytest.mark.parametrize("engine", _declares(lambda caps: "alpha" in caps.member_values))
def test_per_member_rates_and_l2(engine):
    _, fn, _ = ENGINES[engine]
    hyper = Hyper(activation="tanh", loss="log_loss", solver="adam", alpha=0.0, batch_size=3)
    case = problem((4, 6, 3), hyper, E=3, device=_device(engine))
    lr, alpha = [0.01, 0.03, 0.0], [0.0, 1e-3, 0.1]
    ref = run(_engine.epoch_reference, case, hyper, lr, alpha=alpha)
    assert_same(ref, run(fn, case, hyper, lr, alpha=alpha))


@pytest.mark.parametrize("engine", _declares(lambda caps: "momentum" in caps.member_values))
@pytest.mark.parametrize("nesterov", [True, False])
def test_per_member_momentum_equals_one_run_per_value(engine, nesterov):
    # each member at its own momentum equals that member run with hyper.momentum set to it
    _, fn, _ = ENGINES[engine]
    hyper = Hyper(activation="tanh", solver="sgd", nesterovs_momentum=nesterov, batch_size=3)
    case = problem((4, 6, 2), hyper, E=3, device=_device(engine))
    mus = np.array([0.5, 0.95, 0.0])
    params = case.params.clone()
    member = _engine.Member.of(np.full(3, 0.01), params.flat.device, momentum=mus)
    for order in case.orders:
        fn(params, case.data, order, member, hyper)
    for e, mu in enumerate(mus):
        alone, _ = run(_engine.epoch_reference, case, Hyper(
            activation="tanh", solver="sgd", nesterovs_momentum=nesterov, batch_size=3,
            momentum=float(mu)))
        torch.testing.assert_close(params.flat[e], alone.flat[e], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("engine", _declares(lambda caps: caps.mapped_inputs))
@pytest.mark.parametrize("batch", [1, 3])
def test_members_read_their_own_columns(engine, batch):
    _, fn, _ = ENGINES[engine]
    hyper = Hyper(activation="relu", solver="sgd", alpha=1e-2, batch_size=batch)
    features = torch.tensor([[0, 1, 2], [5, 3, 1], [4, 4, 0]])  # repeats allowed
    case = problem((3, 5, 1), hyper, n_columns=6, features=features, device=_device(engine))
    assert_same(run(_engine.epoch_reference, case, hyper), run(fn, case, hyper))


def _materialized(X, encoding):
    """The encoded space as a matrix (values, bins, one-hot levels, a zero column), float64.

    What the first layers read before they computed it from the values: the definition
    the first-layer maps are bound to.
    """
    X = np.asarray(X, dtype=np.float64)
    enc = (X[:, encoding.feature] - encoding.lo) * encoding.inv  # (N, T)
    enc = np.where(encoding.first, enc, np.maximum(enc, 0.0))
    enc = np.where(encoding.last, enc, np.minimum(enc, 1.0))
    parts = [X, enc]
    if encoding.level_feature is not None and encoding.level_feature.size:
        parts.append(X[:, encoding.level_feature] == encoding.level_code)  # one-hot (N, L)
    zero = np.zeros((X.shape[0], encoding.n_columns - sum(p.shape[1] for p in parts)))
    return torch.from_numpy(np.concatenate([*parts, zero], 1).astype(np.float32))


# each member's columns of the encoded space: values, then their bins, then padding
_COLUMNS = {
    "all": None,
    # columns 0-3 values; bins of value 0: 4-6, of 2: 7-8, of 3: 9-12 (1 has none); 13: 0
    "own": np.array([[0, 2, 4, 5, 6, 7, 8, 13, 13, 13],  # values 0, 2 and their bins
                     [3, 1, 9, 10, 11, 12, 13, 13, 13, 13],  # 3 (four bins), 1 (none)
                     [2, 2, 7, 8, 7, 8, 13, 13, 13, 13]]),  # 2 twice, each its bins
}


@pytest.mark.parametrize("engine", [pytest.param(n, id=n) for n in ENGINES])
@pytest.mark.parametrize("which", list(_COLUMNS))
@pytest.mark.parametrize("batch", [1, 3])
def test_first_layer_map_equals_the_materialized_encoding(engine, which, batch):
    # Every engine reads the values and computes each input from the map (inside the
    # first layer, per batch or per row, or by the bins' structure); the reference reads
    # the encoding materialized as a matrix. They agree to float32 rounding.
    _, fn, _ = ENGINES[engine]
    encoding = binned()  # 4 values; 3, 0, 2 and 4 bins; 14 columns with the zero column
    columns = _COLUMNS[which]
    width = encoding.n_columns if columns is None else columns.shape[1]
    hyper = Hyper(activation="tanh", loss="log_loss", solver="adam", alpha=1e-3,
                  batch_size=batch)
    tiny = engine == "triton"
    case = problem((width, 6, 3), hyper, N=7 if tiny else 17, epochs=1 if tiny else 2,
                   n_columns=4, encoding=encoding, columns=columns, device=_device(engine))
    case.data.X.mul_(1.2)  # values beyond the outer edges too (open first and last bins)
    dense = problem((width, 6, 3), hyper, N=7 if tiny else 17, epochs=1 if tiny else 2,
                    n_columns=encoding.n_columns, device=_device(engine),
                    features=(np.tile(np.arange(width), (3, 1)) if columns is None
                              else columns))
    dense.data.X = _materialized(case.data.X.cpu(), encoding).to(_device(engine))
    dense.data.Y, dense.data.sw, dense.orders = case.data.Y, case.data.sw, case.orders
    assert_same(run(_engine.epoch_reference, dense, hyper), run(fn, case, hyper),
                rtol=2e-5, atol=2e-5)


# 3 numeric values (3, 0 and 2 bins) and a categorical feature of 4 codes: columns 0-2
# values, 3 codes; bins of 0: 4-6, of 2: 7-8; levels 9-12; 13: the zero column
_CATEGORICAL = np.array([[0, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12],  # all of it
                         [1, 0, 4, 5, 6, 9, 10, 11, 12, 13, 13],  # padded
                         [2, 7, 8, 9, 10, 11, 12, 9, 10, 11, 12]])  # the levels twice


@pytest.mark.parametrize("engine", [pytest.param(n, id=n) for n in ENGINES])
@pytest.mark.parametrize("batch", [1, 3])
def test_one_hot_levels_equal_the_materialized_encoding(engine, batch):
    # A categorical feature's codes reach the first layer as one-hot inputs (its learned
    # embedding, a row per level); every engine computes them from the codes.
    _, fn, _ = ENGINES[engine]
    encoding = binned(3, (3, 0, 2), levels=(4,))
    hyper = Hyper(activation="relu", solver="adam", alpha=1e-3, batch_size=batch)
    width = _CATEGORICAL.shape[1]
    tiny = engine == "triton"
    N = 7 if tiny else 17
    case = problem((width, 6, 2), hyper, N=N, epochs=1 if tiny else 2, n_columns=4,
                   encoding=encoding, columns=_CATEGORICAL, device=_device(engine))
    codes = torch.arange(N) % 4  # every level, on rows of every batch
    case.data.X[:, 3] = codes.to(case.data.X)
    dense = problem((width, 6, 2), hyper, N=N, epochs=1 if tiny else 2,
                    n_columns=encoding.n_columns, features=_CATEGORICAL,
                    device=_device(engine))
    dense.data.X = _materialized(case.data.X.cpu(), encoding).to(_device(engine))
    assert dense.data.X[:, 9:13].sum(1).eq(1).all()  # one level per row
    dense.data.Y, dense.data.sw, dense.orders = case.data.Y, case.data.sw, case.orders
    assert_same(run(_engine.epoch_reference, dense, hyper), run(fn, case, hyper),
                rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("engine", list(ENGINES))
def test_weight_decay(engine):
    _, fn, _ = ENGINES[engine]
    hyper = Hyper(activation="relu", solver="adam", alpha=0.0, weight_decay=0.1, batch_size=3)
    case = problem((4, 5, 2), hyper, E=2, N=11, device=_device(engine))
    ref = run(_engine.epoch_reference, case, hyper)
    plain = run(_engine.epoch_reference, case, Hyper(activation="relu", alpha=0.0,
                                                     batch_size=3))
    assert not torch.allclose(ref[0].flat, plain[0].flat)  # the decay changes the result
    assert_same(ref, run(fn, case, hyper))


# ---------------------------------------------------------------- refusals
def _request(hyper, sizes=(4, 5, 1), **kw):
    return _engines.Request(hyper, sizes, **kw)


def test_a_named_engine_refuses_what_it_does_not_declare():
    with pytest.raises(ValueError, match="solver='lion'") as info:
        _dispatch.select_engine("numba", _request(Hyper(solver="lion")), torch.device("cpu"))
    # it names what the engine runs, and the engines that would run the request
    assert "['adam', 'sgd']" in str(info.value)
    assert "engine='auto'" in str(info.value) and "'batched'" in str(info.value)
    with pytest.raises(ValueError, match="per member only"):  # no engine reads it
        _dispatch.select_engine("batched", _request(Hyper(), member_values=frozenset({"x"})),
                                torch.device("cpu"))


def test_triton_declares_its_limits():
    caps = _engines.ENGINES["triton"]
    assert caps.refusal(_request(Hyper(batch_size=1))) is None
    assert "solver='lion'" in caps.refusal(_request(Hyper(solver="lion", batch_size=1)))
    assert "batch_size=65" in caps.refusal(_request(Hyper(batch_size=65)))
    assert "4 hidden layers" in caps.refusal(_request(Hyper(batch_size=1), (3, 4, 4, 4, 4, 1)))
    assert "wider than 1024" in caps.refusal(_request(Hyper(batch_size=1), (3, 1025, 1)))


def test_auto_picks_an_engine_that_declares_the_request():
    cpu = torch.device("cpu")
    assert _dispatch.select_engine("auto", _request(Hyper(batch_size=8)), cpu) == "numba"
    # numba does not declare lion: auto runs the batched engine, which does
    assert _dispatch.select_engine("auto", _request(Hyper(solver="lion", batch_size=8)),
                                   cpu) == "batched"


def test_every_solver_is_declared_by_the_torch_engines():
    from skensemble import _optim

    for name in ("reference", "batched", "graphed"):
        assert _engines.ENGINES[name].solvers == frozenset(_optim.SOLVERS)
    assert np.all([s.n_state >= 1 for s in _optim.SOLVERS.values()])
