"""The stacked engine against E independent torch.nn models, and engines against each other."""

import itertools
import math

import numpy as np
import pytest
import torch
from engine_cases import call
from torch import nn

from skensemble import _dispatch, _engine, _sampling, _schedule, _training
from skensemble._engine import Hyper, Layout
from skensemble._inputs import Encoding

ACT = {"relu": nn.ReLU, "tanh": nn.Tanh, "logistic": nn.Sigmoid, "identity": nn.Identity}


def _problem(loss, E=3, N=23, F=4, hidden=(6, 5), O=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, F, generator=g)
    if loss == "squared_error":
        Y = torch.randn(N, O, generator=g)
    else:
        Y = torch.eye(O)[torch.randint(0, O, (N,), generator=g)]
    sw = torch.rand(N, generator=g) + 0.5
    layout = Layout((F, *hidden, O))
    return X, Y, sw, layout


def _nn_members(flat, layout, activation):
    """E separate nn.Sequential models carrying the same weights as ``flat``."""
    models = []
    for e in range(flat.shape[0]):
        mods = []
        for i, (W, b) in enumerate(layout.views(flat)):
            lin = nn.Linear(W.shape[1], W.shape[2])
            with torch.no_grad():
                lin.weight.copy_(W[e].T)  # nn.Linear stores (fan_out, fan_in)
                lin.bias.copy_(b[e, 0])
            mods.append(lin)
            if i < layout.n_layers - 1:
                mods.append(ACT[activation]())
        models.append(nn.Sequential(*mods))
    return models


def _train_loop(models, X, Y, sw, order, hyper, lr, epochs):
    """What a user would write: a Python loop over members, each its own optimizer."""
    for e, model in enumerate(models):
        params = list(model.parameters())
        if hyper.solver == "sgd":
            opt = torch.optim.SGD(
                params, lr=lr, momentum=hyper.momentum, nesterov=hyper.nesterovs_momentum
            )
        else:  # scikit-learn's adam (epsilon outside the bias correction), by hand
            m = [torch.zeros_like(p) for p in params]
            v = [torch.zeros_like(p) for p in params]
        t = 0
        for ep in range(epochs):
            idx_all = order[ep][e]
            for s in range(0, len(idx_all), hyper.batch_size):
                idx = idx_all[s : s + hyper.batch_size]
                b = len(idx)
                out = model(X[idx])
                if hyper.loss == "squared_error":
                    rows = 0.5 * ((out - Y[idx]) ** 2).sum(1)
                else:
                    rows = -(Y[idx] * torch.log_softmax(out, 1)).sum(1)
                loss = (rows * sw[idx]).sum() / b
                loss = loss + 0.5 * hyper.alpha / b * sum(
                    (mod.weight**2).sum() for mod in model if isinstance(mod, nn.Linear)
                )
                grads = torch.autograd.grad(loss, params)
                t += 1
                if hyper.solver == "sgd":
                    for p, gr in zip(params, grads):
                        p.grad = gr
                    opt.step()
                else:
                    with torch.no_grad():
                        lr_t = lr * math.sqrt(1 - hyper.beta_2**t) / (1 - hyper.beta_1**t)
                        for p, gr, mi, vi in zip(params, grads, m, v):
                            mi.mul_(hyper.beta_1).add_(gr, alpha=1 - hyper.beta_1)
                            vi.mul_(hyper.beta_2).addcmul_(gr, gr, value=1 - hyper.beta_2)
                            p.sub_(lr_t * mi / (vi.sqrt() + hyper.epsilon))


CASES = list(
    itertools.product(
        ["relu", "tanh", "logistic", "identity"],
        [("adam", True), ("sgd", True), ("sgd", False)],
        ["squared_error", "log_loss"],
    )
)


@pytest.mark.parametrize("engine", ["reference", "batched"])
@pytest.mark.parametrize("activation, solver, loss", CASES)
def test_stacked_engine_equals_loop_of_nn_models(engine, activation, solver, loss):
    X, Y, sw, layout = _problem(loss)
    hyper = Hyper(
        activation=activation, loss=loss, solver=solver[0], nesterovs_momentum=solver[1],
        alpha=0.01, batch_size=4,
    )
    E, epochs, lr = 3, 3, 0.02
    flat = _engine.init_parameters(layout, [11, 12, 13], activation)
    models = _nn_members(flat, layout, activation)
    state, steps = _engine.init_state(flat, hyper)
    gen = torch.Generator().manual_seed(5)
    plan = _sampling.Plan(X.shape[0], X.shape[1], 19, X.shape[1], True, False)
    rows = torch.from_numpy(_sampling.member_samples([1, 2, 3], plan)[0])
    order = [_training.epoch_order(rows, gen, True) for _ in range(epochs)]
    fn = _engine.epoch_reference if engine == "reference" else _engine.epoch_batched
    for ep in range(epochs):
        call(fn, flat, state, steps, X, Y, sw, order[ep], lr, hyper, layout)
    _train_loop(models, X, Y, sw, order, hyper, lr, epochs)
    expected = _engine.init_parameters(layout, [0] * E, activation)  # same shape, overwritten
    for e, model in enumerate(models):
        lins = [m for m in model if isinstance(m, nn.Linear)]
        for (W, b), lin in zip(layout.views(expected), lins):
            W[e] = lin.weight.detach().T
            b[e, 0] = lin.bias.detach()
    assert torch.equal(steps, torch.full((E,), epochs * 5))
    torch.testing.assert_close(flat, expected, rtol=1e-4, atol=1e-5)
    # and training moved the weights: the test would catch an engine that does nothing
    assert not torch.allclose(flat, _engine.init_parameters(layout, [11, 12, 13], activation))


def test_reference_gradient_matches_finite_differences():
    X, Y, sw, layout = _problem("squared_error", E=2, N=5, hidden=(3,), O=1)
    hyper = Hyper(activation="tanh", loss="squared_error", solver="sgd", momentum=0.0,
                  nesterovs_momentum=False, alpha=0.1, batch_size=5)
    flat = _engine.init_parameters(layout, [3, 4], "tanh").double()
    order = torch.arange(5).repeat(2, 1)

    def member_loss(f):
        out = _engine.forward(f, layout, X.double(), "tanh")
        rows = _engine.per_row_loss(out, Y.double().expand(2, -1, -1), "squared_error")
        l2 = 0.5 * 0.1 / 5 * ((f * f) * layout.weight_mask().double()).sum(1)
        return (rows * sw.double()).sum(1) / 5 + l2

    state, steps = _engine.init_state(flat, hyper)
    before = flat.clone()
    call(_engine.epoch_reference, flat, state, steps, X.double(), Y.double(), sw.double(), order,
                            1.0, hyper, layout)
    grad = before - flat  # lr=1, no momentum: the update is the gradient
    h = 1e-6
    for p in [0, 5, layout.n_params - 1]:
        bump = torch.zeros_like(before)
        bump[:, p] = h
        fd = (member_loss(before + bump) - member_loss(before - bump)) / (2 * h)
        torch.testing.assert_close(grad[:, p], fd, rtol=1e-5, atol=1e-7)


def test_members_are_independent():
    X, Y, sw, layout = _problem("squared_error", E=3)
    hyper = Hyper(activation="relu", batch_size=2)
    flat = _engine.init_parameters(layout, [1, 2, 3], "relu")
    order = torch.argsort(torch.rand(3, X.shape[0], generator=torch.Generator().manual_seed(1)), 1)
    f1 = flat.clone()
    s1, t1 = _engine.init_state(f1, hyper)
    call(_engine.epoch_batched, f1, s1, t1, X, Y, sw, order, 0.01, hyper, layout)
    f2 = flat.clone()
    f2[0] += 1.0  # perturb member 0 only, and give it another order
    order2 = order.clone()
    order2[0] = order2[0].flip(0)
    s2, t2 = _engine.init_state(f2, hyper)
    call(_engine.epoch_batched, f2, s2, t2, X, Y, sw, order2, 0.01, hyper, layout)
    assert torch.equal(f1[1:], f2[1:])
    assert not torch.allclose(f1[0], f2[0])


def test_predict_chunked_matches_single_chunk():
    X, _, _, layout = _problem("squared_error", N=50)
    flat = _engine.init_parameters(layout, [1, 2, 3], "tanh")
    one = torch.cat(_engine.predict_chunked(flat, layout, X, "tanh", lambda o: o.mean(0)))
    many = torch.cat(_engine.predict_chunked(flat, layout, X, "tanh", lambda o: o.mean(0), 7))
    torch.testing.assert_close(one, many)
    assert one.shape == (50, 2)


def test_layout_views_share_storage():
    layout = Layout((3, 4, 2))
    assert layout.n_params == 3 * 4 + 4 + 4 * 2 + 2
    flat = torch.zeros(5, layout.n_params)
    (W0, b0), (W1, b1) = layout.views(flat)
    W1[2, 3, 1] = 7.0
    assert flat[2, layout.offsets[1][0] + 3 * 2 + 1] == 7.0
    assert layout.weight_mask().sum() == 3 * 4 + 4 * 2


def test_init_is_per_member_seed_and_glorot():
    layout = Layout((30, 100, 1))
    a = _engine.init_parameters(layout, [7, 8], "tanh")
    b = _engine.init_parameters(layout, [9, 7], "tanh")
    assert torch.equal(a[0], b[1])  # member weights depend on their own seed only
    W0 = layout.views(a)[0][0]
    bound = math.sqrt(6 / 130)
    assert W0.abs().max() <= bound and W0.abs().max() > 0.9 * bound


def test_member_samples_bootstrap_subsample_features():
    def plan(n_draw, bootstrap, n_feat=6, bootstrap_features=False, holdout=None):
        return _sampling.Plan(50, 6, n_draw, n_feat, bootstrap, bootstrap_features, holdout)

    rows, held, feats = _sampling.member_samples([1, 2], plan(50, True))
    assert rows.shape == (2, 50) and len(np.unique(rows[0])) < 50 and held is None
    np.testing.assert_array_equal(feats, [np.arange(6)] * 2)
    rows, _, _ = _sampling.member_samples([1, 2], plan(20, False))
    assert all(len(np.unique(r)) == 20 for r in rows)
    assert not np.array_equal(rows[0], rows[1])
    rows, _, _ = _sampling.member_samples([3], plan(50, False))
    np.testing.assert_array_equal(rows[0], np.arange(50))
    _, _, feats = _sampling.member_samples([1, 2], plan(50, False, n_feat=3))
    assert feats.shape == (2, 3) and all(len(set(f)) == 3 for f in feats)
    _, _, feats = _sampling.member_samples(range(20), plan(50, False, 6, True))
    assert any(len(set(f)) < 6 for f in feats)  # with replacement: repeats happen
    rows, held, _ = _sampling.member_samples([1, 2], plan(45, False, holdout=0.1))
    for r, h in zip(rows, held):
        assert len(h) == 5 and not set(r) & set(h)
    # weighted bootstrap never draws a zero-weight row
    w = np.ones(50)
    w[:25] = 0
    rows, _, _ = _sampling.member_samples([1, 2, 3], plan(50, True), weight=w)
    assert rows.min() >= 25
    # a member's draws depend on its own seed only
    a = _sampling.member_samples([7, 8], plan(30, True, 3))
    b = _sampling.member_samples([9, 7], plan(30, True, 3))
    np.testing.assert_array_equal(a[0][0], b[0][1])
    np.testing.assert_array_equal(a[2][0], b[2][1])


def test_feature_subsets_batched_equals_reference():
    X, Y, sw, _ = _problem("squared_error", E=3, F=6)
    layout = Layout((3, 5, 2))
    feats = torch.tensor([[0, 2, 4], [5, 1, 1], [3, 4, 5]])
    hyper = Hyper(activation="tanh", batch_size=4, alpha=0.01)
    flat = _engine.init_parameters(layout, [1, 2, 3], "tanh")
    state, steps = _engine.init_state(flat, hyper)
    f2, s2, t2 = flat.clone(), state.clone(), steps.clone()
    order = torch.argsort(torch.rand(3, X.shape[0], generator=torch.Generator().manual_seed(0)), 1)
    call(_engine.epoch_reference, flat, state, steps, X, Y, sw, order, 0.01, hyper, layout, feats)
    call(_engine.epoch_batched, f2, s2, t2, X, Y, sw, order, 0.01, hyper, layout, feats)
    torch.testing.assert_close(flat, f2, rtol=1e-5, atol=1e-6)
    # forward with subsets equals forward on each member's own columns
    first = Encoding.plain(6).first_layer(feats.numpy(), 3, 3).to("cpu")
    out = _engine.forward(flat, layout, X, "tanh", first)
    for e in range(3):
        own = _engine.forward(flat[e : e + 1], layout, X[:, feats[e]], "tanh")
        torch.testing.assert_close(out[e], own[0])


def _engines_here():
    names = ["reference", "batched", "graphed"]
    if "numba" in _dispatch.available_engines(torch.device("cpu")):
        names.append("numba")
    try:
        from skensemble._kernels import triton_gpu
    except ImportError:  # pragma: no cover - triton missing
        return names
    if triton_gpu._build_mode() == "interpreted":
        names.append("triton")
    return names


@pytest.mark.parametrize("engine", _engines_here())
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_per_member_rates_and_alphas_equal_one_call_per_value(engine, solver):
    # Every engine takes a rate and an L2 strength per member: one call must equal
    # separate calls for the members of each (rate, alpha), and a member at rate 0 must
    # keep its weights. (Triton runs under its interpreter here.)
    X, Y, sw, layout = _problem("squared_error", E=4, N=21 if engine != "triton" else 9,
                                hidden=(6,), O=2)
    hyper = Hyper(activation="tanh", solver=solver, alpha=0.01, batch_size=4)
    rates = np.array([0.01, 0.0, 0.03, 0.01])
    alphas = np.array([0.5, 0.01, 0.0, 0.5])
    flat = _engine.init_parameters(layout, range(4), "tanh")
    start = flat.clone()
    state, steps = _engine.init_state(flat, hyper)
    f2, s2, t2 = flat.clone(), state.clone(), steps.clone()
    N = X.shape[0]
    order = torch.argsort(torch.rand(4, N, generator=torch.Generator().manual_seed(3)), 1)
    fn = _dispatch.epoch_function(engine)
    kw = {"capture": False} if engine == "graphed" else {}
    loss = call(fn, flat, state, steps, X, Y, sw, order, rates, hyper, layout, alpha=alphas, **kw)
    for key in sorted(set(zip(rates, alphas))):
        m = torch.from_numpy(np.flatnonzero((rates == key[0]) & (alphas == key[1])))
        sub = f2[m].contiguous(), s2[:, m].contiguous(), t2[m].contiguous()
        part = call(fn, *sub, X, Y, sw, order[m].contiguous(), float(key[0]), hyper, layout,
                    alpha=[key[1]] * len(m), **kw)
        f2[m], s2[:, m], t2[m] = sub
        torch.testing.assert_close(loss[m], part, rtol=0, atol=0)
    torch.testing.assert_close(flat, f2, rtol=0, atol=0)
    torch.testing.assert_close(state, s2, rtol=0, atol=0)
    torch.testing.assert_close(flat[1], start[1], rtol=0, atol=0)  # rate 0: untouched
    assert not torch.equal(flat[0], start[0])
    # the scalar path is the per-member path with every member at hyper.alpha, and a
    # member's alpha acts on that member only: a strong L2 shrinks its weights
    runs = []
    for alpha in (None, [0.01] * 4, [0.01, 0.01, 5.0, 0.01]):
        f3, (s3, t3) = start.clone(), _engine.init_state(start, hyper)
        extra = {} if alpha is None else {"alpha": alpha}
        call(fn, f3, s3, t3, X, Y, sw, order, 0.01, hyper, layout, **extra, **kw)
        runs.append(f3)
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-6, atol=1e-7)
    keep = torch.tensor([0, 1, 3])
    torch.testing.assert_close(runs[2][keep], runs[1][keep], rtol=0, atol=0)
    weights = layout.weight_mask() > 0
    assert runs[2][2][weights].norm() < runs[1][2][weights].norm()
    _schedule.release_graphs()


def test_weight_decay_is_decoupled_from_the_gradient():
    # One sgd step without momentum on the whole batch: w <- w (1 - lr wd) - lr grad,
    # biases b <- b - lr grad; the gradient is the plain one (alpha=0).
    X, Y, sw, layout = _problem("squared_error", E=2, N=6, hidden=(4,), O=1)
    lr, wd = 0.1, 0.5
    hyper = Hyper(activation="identity", solver="sgd", momentum=0.0, nesterovs_momentum=False,
                  alpha=0.0, batch_size=6, weight_decay=wd)
    flat = _engine.init_parameters(layout, range(2), "identity")
    start = flat.clone()
    order = torch.arange(6).repeat(2, 1)
    p = start.clone().requires_grad_(True)
    out = _engine.forward(p, layout, X, "identity")
    rows = _engine.per_row_loss(out, Y.expand(2, -1, -1), "squared_error") * sw
    (grad,) = torch.autograd.grad((rows.sum(1) / 6).sum(), p)
    mask = layout.weight_mask()
    want = start * (1 - lr * wd * mask) - lr * grad
    state, steps = _engine.init_state(flat, hyper)
    call(_engine.epoch_reference, flat, state, steps, X, Y, sw, order, lr, hyper, layout)
    torch.testing.assert_close(flat, want, rtol=1e-5, atol=1e-6)
