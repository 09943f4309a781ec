"""The training module on its own: no estimator, no scikit-learn."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from skensemble import _engine, _groups, _history, _optim, _schedule, _training
from skensemble._engine import Hyper


def _group_data(E=4, N=60, F=5, O=1, hidden=(8,), seed=0, val_fraction=0.25):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, F)).astype(np.float32)
    Y = (X[:, :1] * 2 - X[:, 1:2] + 0.3 * rng.standard_normal((N, 1))).astype(np.float32)
    Y = np.repeat(Y, O, axis=1)
    n_val = int(N * val_fraction)
    val_mask = np.zeros((E, N), dtype=bool)
    rows = []
    for e in range(E):
        perm = rng.permutation(N)
        val_mask[e, perm[:n_val]] = True
        rows.append(np.sort(perm[n_val:]))
    archs = [hidden] * E
    init = _groups.random_rows(archs, range(100, 100 + E), F, O, "tanh")
    (group,) = _groups.make_groups(init, archs, np.arange(E), F, O, "tanh")
    data = _training.Data(X=X, Y=Y, rows=np.stack(rows), val_mask=val_mask)
    return group, data


def test_training_runs_without_scikit_learn():
    # The training module and the engine are importable and usable with scikit-learn
    # blocked: the package imports its estimators lazily.
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "sklearn" or name.startswith("sklearn."):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        import numpy as np, torch
        from skensemble import _training, _engine, _groups
        rng = np.random.default_rng(0)
        X = rng.standard_normal((40, 3)).astype(np.float32)
        Y = X[:, :1].copy()
        init = _groups.random_rows([(6,)] * 2, [1, 2], 3, 1, "tanh")
        (g,) = _groups.make_groups(init, [(6,)] * 2, np.arange(2), 3, 1, "tanh")
        data = _training.Data(X=X, Y=Y, rows=np.tile(np.arange(40), (2, 1)))
        hyper = _engine.Hyper(activation="tanh", batch_size=8)
        cfg = _training.Config(max_iter=30, learning_rate_init=0.01, engine="batched")
        out, hist, engine = _training.train_group(g, data, hyper, cfg, torch.device("cpu"))
        assert hist.loss[-1].max() < hist.loss[0].min(), hist.loss
        assert not any(m.startswith("sklearn") for m in sys.modules)
        print("ok", engine)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["ok", "batched"]


def test_members_stop_on_their_own_and_keep_their_best_weights():
    group, data = _group_data(E=4)
    group.vectors["lr"] = np.array([0.0, 0.01, 0.01, 0.05])  # member 0 cannot learn at all
    hyper = Hyper(activation="tanh", batch_size=8)
    cfg = _training.Config(max_iter=80, n_iter_no_change=3, tol=1e-6, engine="batched")
    out, hist, _ = _training.train_group(group, data, hyper, cfg, torch.device("cpu"))
    # member 0: first epoch sets its best, then patience runs out
    assert hist.n_iter[0] == 1 + cfg.n_iter_no_change
    np.testing.assert_array_equal(out.flat[0], group.flat[0])  # lr 0: weights unchanged
    assert hist.n_iter[1:].max() > hist.n_iter[0]
    assert np.isnan(hist.loss[hist.n_iter[0]:, 0]).all()  # stopped: no further epochs
    # each member ends with the weights of its best validation epoch
    out_t = _engine.forward(torch.from_numpy(out.flat), out.layout, torch.from_numpy(data.X),
                            "tanh")  # (E, N, 1)
    err = 0.5 * ((out_t - torch.from_numpy(data.Y)) ** 2).sum(-1).numpy()  # (E, N)
    val = (err * data.val_mask).sum(1) / data.val_mask.sum(1)
    np.testing.assert_allclose(val, hist.best, rtol=1e-4)
    np.testing.assert_allclose(hist.best, np.nanmin(hist.val_loss, axis=0), rtol=1e-6)


def _train(data, group, hyper, cfg):
    out, hist, engine = _training.train_group(group, data, hyper, cfg, torch.device("cpu"),
                                              seed=7)
    return out, hist


@pytest.mark.parametrize("engine", ["batched", "numba"])
def test_streaming_with_stopping_and_adaptive_schedule_equals_resident(engine, monkeypatch):
    # Members stop at different epochs and the adaptive schedule gives them different
    # rates, so epochs run on member subsets; streamed from host memory in chunks of
    # 2 batches, the fit must equal the resident one.
    group, data = _group_data(E=5, N=50)
    hyper = Hyper(activation="tanh", solver="sgd", batch_size=4)
    cfg = _training.Config(max_iter=40, learning_rate="adaptive", learning_rate_init=0.05,
                           n_iter_no_change=2, tol=1e-3, engine=engine)
    calls = []
    real = _training._epoch_subset

    def spy(epoch_fn, members, *args):
        calls.append((members.size, args[-3][members]))  # members trained together, rates
        return real(epoch_fn, members, *args)

    monkeypatch.setattr(_training, "_epoch_subset", spy)
    resident, h1 = _train(data, group, hyper, cfg)
    assert len(set(h1.n_iter)) > 1  # members really stopped at different epochs
    assert any(n < 5 for n, _ in calls)  # so epochs ran on member subsets
    assert len({float(r) for _, rate in calls for r in np.atleast_1d(rate)}) > 2  # several rates
    monkeypatch.setattr(_schedule, "STREAM_CHUNK_STEPS", 2)
    streamed, h2 = _train(data, group, hyper, cfg)
    np.testing.assert_array_equal(h1.n_iter, h2.n_iter)
    np.testing.assert_allclose(streamed.flat, resident.flat, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h2.val_loss, h1.val_loss, rtol=1e-5, atol=1e-6)


def test_history_combine_resume_and_grow():
    a = _history.History(loss=np.ones((3, 2)), n_iter=np.array([3, 2]), unconverged=1,
                          seconds=1.0, val_loss=np.ones((3, 2)), val_score=np.ones((3, 2)),
                          best=np.array([0.5, 0.6]))
    b = _history.History(loss=np.full((5, 1), 2.0), n_iter=np.array([5]), seconds=2.0,
                          val_loss=np.full((5, 1), 2.0), val_score=np.ones((5, 1)),
                          best=np.array([0.1]))
    both = _history.History.combine([(np.array([0, 2]), a), (np.array([1]), b)], 3)
    assert both.loss.shape == (5, 3) and both.seconds == 3.0 and both.unconverged == 1
    np.testing.assert_array_equal(both.n_iter, [3, 5, 2])
    np.testing.assert_array_equal(both.best, [0.5, 0.1, 0.6])
    assert np.isnan(both.loss[3:, 0]).all() and (both.loss[:, 1] == 2).all()
    grown = b.beside(a)  # a's two members, then b's new one
    assert grown.loss.shape == (5, 3) and np.isnan(grown.loss[3:, :2]).all()
    np.testing.assert_array_equal(grown.n_iter, [3, 2, 5])
    resumed = a.after(a)
    assert resumed.loss.shape == (6, 2)
    np.testing.assert_array_equal(resumed.n_iter, [6, 4])
    no_val = _history.History(loss=np.ones((1, 2)), n_iter=np.array([1, 1]))
    assert no_val.after(a).val_loss is None and no_val.beside(a).val_loss is None


def test_merge_groups_pads_new_members_into_the_old_group():
    init = _groups.random_rows([(4,), (6,)], [1, 2], 3, 1, "relu")
    (old,) = _groups.make_groups(init[:1], [(4,)], np.array([0]), 3, 1, "relu")
    (new,) = _groups.make_groups(init[1:], [(6,)], np.array([1]), 3, 1, "relu")
    for g in (old, new):
        g.opt_state = np.ones((2, *g.flat.shape), dtype=np.float32)
        g.steps, g.vectors["lr"] = np.array([5]), np.array([0.1])
    (merged,) = _groups.merge_groups([old], [new], "relu")
    assert merged.sizes == (3, 6, 1)
    np.testing.assert_array_equal(merged.members, [0, 1])
    np.testing.assert_array_equal(merged.member_row(0, (3, 4, 1)), init[0])
    np.testing.assert_array_equal(merged.member_row(1, (3, 6, 1)), init[1])
    assert merged.opt_state.shape == (2, 2, merged.flat.shape[1])
    assert old.sizes == (3, 4, 1)  # the old group object is left as it was


def test_out_of_memory_is_translated(monkeypatch):
    group, data = _group_data(E=2)

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(_engine, "epoch_batched", out_of_memory)
    with pytest.raises(MemoryError, match="Lower n_estimators or batch_size"):
        _training.train_group(group, data, Hyper(batch_size=4), _training.Config(
            max_iter=2, engine="batched"), torch.device("cpu"))


def test_epoch_order_permutes_within_each_member():
    rows = torch.arange(12).view(2, 6)
    order = _training.epoch_order(rows, torch.Generator().manual_seed(0), True)
    for e in range(2):
        assert sorted(order[e].tolist()) == rows[e].tolist()
    assert not torch.equal(order, rows)
    assert torch.equal(_training.epoch_order(rows, torch.Generator(), False), rows)


def test_plateau_decays_lower_the_rate_and_never_end_worse():
    # The run is the no-decay run up to each member's first plateau; from there the
    # member goes on at a tenth of its rate from its best weights, so its best
    # validation loss (the weights it ends with) can only go down.
    group, data = _group_data(E=5, N=60)
    hyper = Hyper(activation="tanh", solver="adam", batch_size=8)
    base = dict(max_iter=200, learning_rate_init=0.01, n_iter_no_change=2, tol=1e-4,
                engine="batched")
    plain, h0 = _train(data, group, hyper, _training.Config(**base))
    decayed, h2 = _train(data, group, hyper, _training.Config(**base, plateau_decays=2))
    assert np.all(h2.n_iter >= h0.n_iter) and np.any(h2.n_iter > h0.n_iter)
    assert np.all(h2.best <= h0.best) and np.any(h2.best < h0.best)
    rates = decayed.vectors["lr"] / 0.01
    assert set(np.round(rates, 12)) <= {1.0, 0.1, 0.01} and np.any(rates < 1)
    assert np.all(plain.vectors["lr"] == 0.01)
    # the trajectories agree until the first plateau
    first = int(h0.n_iter.min())
    np.testing.assert_array_equal(h2.val_loss[:first], h0.val_loss[:first])


def test_warmup_cosine_factor():
    f = [_optim.warmup_cosine(e, 100) for e in range(100)]
    np.testing.assert_allclose(f[:5], [0.2, 0.4, 0.6, 0.8, 1.0])  # w = 100 // 20 = 5
    assert f[4] == f[5] == 1.0 and np.all(np.diff(f[5:]) < 0) and 0 < f[-1] < 1e-3
    np.testing.assert_allclose(_optim.warmup_cosine(5 + 95 // 2, 100), 0.5 * (1 + np.cos(
        np.pi * (95 // 2) / 95)))
    assert _optim.warmup_cosine(0, 1) == 1.0  # one epoch: warm-up of one epoch


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_warmup_cosine_sets_each_epochs_rate_and_engines_agree(solver, monkeypatch):
    group, data = _group_data(E=3, N=40)
    hyper = Hyper(activation="tanh", solver=solver, batch_size=8)
    cfg = dict(max_iter=12, learning_rate="warmup_cosine", learning_rate_init=0.02,
               n_iter_no_change=50)
    seen = []
    real = _training._epoch_subset

    def spy(epoch_fn, members, *args):
        seen.append(float(np.max(args[-3][members])))  # the rate of this epoch's call
        return real(epoch_fn, members, *args)

    monkeypatch.setattr(_training, "_epoch_subset", spy)
    out, _ = _train(data, group, hyper, _training.Config(**cfg, engine="batched"))
    want = [0.02 * _optim.warmup_cosine(e, 12) for e in range(12)]
    np.testing.assert_allclose(seen, want, rtol=1e-12)
    assert np.all(out.vectors["lr"] == 0.02)  # the base rate is kept for a continued fit
    other, _ = _train(data, group, hyper, _training.Config(**cfg, engine="numba"))
    np.testing.assert_allclose(other.flat, out.flat, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("weighted", [False, True])
def test_own_validation_rows_equal_the_shared_layout(weighted):
    # Members holding out as many rows each are validated on their own rows only (not
    # on the union of everybody's): the same losses and scores as the shared layout.
    from types import SimpleNamespace

    gen = torch.Generator().manual_seed(0)
    N, E = 60, 4
    X, Y = torch.randn(N, 3, generator=gen), torch.randn(N, 2, generator=gen)
    mask = np.zeros((E, N), dtype=bool)
    for e in range(E):
        mask[e, np.random.RandomState(e).choice(N, 9, replace=False)] = True
    data = SimpleNamespace(val_mask=mask, val_rows=None,
                           val_weight=np.linspace(0.5, 2.0, N) if weighted else None)
    t = SimpleNamespace(X=X, Y=Y)
    layout = _engine.Layout((3, 5, 2))
    flat = _engine.init_parameters(layout, list(range(E)), "tanh")
    hyper = _engine.Hyper(activation="tanh")

    def score(out, Yv, w):  # a member score that reads the targets row by row
        return _training.member_sum(((out - Yv) ** 2).sum(-1) * w)

    own = _training._validation(data, None, t, torch.device("cpu"))
    assert own.idx is not None and own.idx.shape == (E, 9)
    vrows = np.flatnonzero(mask.any(0))
    w = mask[:, vrows].astype(np.float32)
    if weighted:
        w = w * data.val_weight[vrows].astype(np.float32)
    shared = _training._Validation(X=X[vrows], Y=Y[vrows], w=torch.from_numpy(w))
    a = _training._validate(flat, own, hyper, layout, None, score)
    b = _training._validate(flat, shared, hyper, layout, None, score)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
    # unequal counts (out-of-bag rows) keep the shared layout
    mask[0, 0] = ~mask[0, 0]
    assert _training._validation(data, None, t, torch.device("cpu")).idx is None
