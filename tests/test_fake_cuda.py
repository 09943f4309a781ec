"""The simulated CUDA device (tests/fake_cuda.py), then the library's CUDA paths under it."""


import pickle

import numpy as np
import pytest
import torch
from fake_cuda import DEVICE, fake_cuda, on_device

from skensemble import NeuralBaggingRegressor, _dispatch, _engine, _schedule, _training

MISMATCH = "Expected all tensors to be on the same device"
HOST_INDEX = r"indices should be either on cpu or on the same device as the indexed tensor \(cpu\)"
NUMPY = "can't convert cuda:0 device type tensor to numpy"


# ------------------------------------------------------------------ the harness
def test_device_tensors_report_cuda():
    with fake_cuda(free=123, total=456):
        made = [
            torch.zeros(3, device="cuda"),
            torch.arange(3, device=torch.device("cuda", 0)),
            torch.ones(3).to("cuda:0"),
            torch.ones(3).cuda(),
            torch.tensor([1.0, 2.0], device=0),
        ]
        d = made[0]
        derived = [d * 2 + 1, d.sum(), d[1:], d.view(3, 1), torch.max(d.view(1, 3), 1).values,
                   torch.zeros_like(d), d.new_ones(2), torch.full((2,), 1.0, device=d.device)]
        for t in made + derived:
            assert on_device(t) and t.is_cuda and not t.is_cpu
            assert t.device == torch.device("cuda", 0) == DEVICE and t.get_device() == 0
        host = [torch.zeros(3), d.cpu(), d.to("cpu"), torch.zeros_like(d, device="cpu"),
                torch.from_numpy(np.zeros(2))]
        for t in host:
            assert not on_device(t) and t.device.type == "cpu" and not t.is_cuda
        assert torch.cuda.is_available() and torch.cuda.device_count() == 1
        assert torch.cuda.current_device() == 0
        assert torch.cuda.mem_get_info() == (123, 456)
        assert "device='cuda:0'" in repr(d)


def test_mixing_host_and_device_raises():
    with fake_cuda():
        d, h = torch.ones(3, device="cuda"), torch.ones(3)
        for op in (lambda: d + h, lambda: h * d, lambda: torch.where(h > 0, d, d),
                   lambda: torch.cat([d, h]), lambda: torch.stack([h, d]),
                   lambda: d.add_(h), lambda: torch.add(h, h, out=d),
                   lambda: torch.bmm(d.view(1, 1, 3), h.view(1, 3, 1)),
                   lambda: h + torch.tensor(2.0, device="cuda")):  # a *device* scalar
            with pytest.raises(RuntimeError, match=MISMATCH):
                op()
        # Python scalars and host 0-dim tensors may join device tensors, as on CUDA
        assert on_device(d + 2.0) and on_device(d * torch.tensor(3.0))
        assert on_device(d.expand_as(torch.ones(2, 3)))  # other's shape only
        assert on_device(d.new_tensor([1.0, 2.0]))  # new data go to self's device


def test_reading_by_index_follows_real_torch_rules():
    with fake_cuda():
        d = torch.arange(6.0, device="cuda").view(2, 3)
        h = torch.arange(6.0).view(2, 3)
        hidx, didx = torch.tensor([1, 0]), torch.tensor([1, 0], device="cuda")
        # a device tensor takes host or device indices (host ones are copied over)
        for out in (d[hidx], d[didx], d[:, hidx], d[hidx, didx], d[[1, 0]], d[np.array([1])]):
            assert on_device(out)
        np.testing.assert_array_equal(d[hidx].cpu().numpy(), h[hidx].numpy())
        # a host tensor refuses a device index ...
        for op in (lambda: h[didx], lambda: h[:, didx], lambda: h[didx > 0]):
            with pytest.raises(RuntimeError, match=HOST_INDEX):
                op()
        # ... except a 0-dim integer one, which is read as a Python int
        assert not on_device(h[torch.tensor(1, device="cuda")])
        # index_select / gather / scatter / take: same device both ways, no exception
        for op in (lambda: torch.index_select(d, 0, hidx), lambda: h.index_select(0, didx),
                   lambda: torch.gather(d, 1, hidx.view(2, 1)),
                   lambda: torch.gather(h, 1, didx.view(2, 1)),
                   lambda: d.scatter(1, hidx.view(2, 1), 0.0),
                   lambda: torch.take(d, hidx), lambda: d.index_fill(1, hidx, 0.0)):
            with pytest.raises(RuntimeError, match=MISMATCH):
                op()
        assert on_device(torch.index_select(d, 0, didx))
        assert on_device(d.index_fill(1, didx, torch.tensor(0.0)))  # 0-dim host value: fine


def test_writing_by_index_follows_real_torch_rules():
    with fake_cuda():
        d, h = torch.zeros(4, device="cuda"), torch.zeros(4)
        hidx, didx = torch.tensor([1, 2]), torch.tensor([1, 2], device="cuda")
        dval, hval = torch.ones(2, device="cuda"), torch.ones(2)
        # indices may be on either device; the value must be on the target's device ...
        d[hidx] = dval
        d[didx] = dval
        h[didx] = hval
        h[hidx] = 2.0
        d[didx] = torch.tensor(3.0)  # ... unless it is 0-dim (moved over)
        h[didx] = torch.tensor(3.0, device="cuda")
        np.testing.assert_array_equal(d.cpu().numpy(), [0, 3, 3, 0])
        np.testing.assert_array_equal(h.numpy(), [0, 3, 3, 0])
        for op in (lambda: d.__setitem__(didx, hval), lambda: h.__setitem__(hidx, dval),
                   lambda: d.index_put_((hidx,), hval), lambda: torch.index_put(h, (didx,), dval)):
            with pytest.raises(RuntimeError, match=MISMATCH):
                op()
        # basic indexing writes with copy_, which crosses devices
        d[0:2] = hval
        h[2:] = dval
        d.copy_(h)
        assert on_device(d) and not on_device(h)


def test_host_access_and_copies():
    with fake_cuda():
        d = torch.arange(3.0, device="cuda")
        with pytest.raises(TypeError, match=NUMPY):
            d.numpy()
        with pytest.raises(TypeError, match=NUMPY):
            np.asarray(d)
        np.testing.assert_array_equal(d.cpu().numpy(), [0, 1, 2])
        assert d.sum().item() == 3.0 and d.tolist() == [0.0, 1.0, 2.0] and float(d[1]) == 1.0
        # moves copy: the device never shares memory with a host array
        a = np.zeros(3, dtype=np.float32)
        t = torch.from_numpy(a).to("cuda")
        t += 1
        assert a.sum() == 0
        back = t.cpu()
        back += 1
        assert t.sum().item() == 3.0
        assert t.to("cuda") is t and t.cuda() is t and t.to(t) is t  # already there
        assert on_device(t.to(torch.float64)) and t.to(torch.float64).dtype == torch.float64
        with pytest.raises(RuntimeError, match="invalid device ordinal"):
            torch.zeros(1, device="cuda:1")
        # pinned memory is host memory; device tensors cannot be pinned
        pinned = back.pin_memory()
        assert not on_device(pinned) and pinned.data_ptr() != back.data_ptr()
        with pytest.raises(RuntimeError, match="only dense CPU tensors can be pinned"):
            t.pin_memory()
        # autograd on the device gives device gradients
        p = t.detach().requires_grad_(True)
        (g,) = torch.autograd.grad((p * p).sum(), p)
        assert on_device(g)
        np.testing.assert_array_equal(g.cpu().numpy(), 2 * t.cpu().numpy())


def test_graph_capture_is_not_simulated():
    with fake_cuda():
        with pytest.raises(NotImplementedError, match="CUDA graph capture"):
            torch.cuda.CUDAGraph()
        side = torch.cuda.Stream()  # streams are no-ops
        with torch.cuda.stream(side):
            side.wait_stream(torch.cuda.current_stream())


def test_state_is_restored_after_the_block():
    before = {name: getattr(torch.cuda, name) for name in
              ("is_available", "device_count", "mem_get_info", "Stream", "CUDAGraph")}
    available = torch.cuda.is_available()
    with pytest.raises(ValueError, match="inside"):
        with fake_cuda():
            assert torch.cuda.is_available()
            raise ValueError("inside")
    for name, value in before.items():
        assert getattr(torch.cuda, name) is value
    assert torch.cuda.is_available() == available
    assert torch.zeros(2).device.type == "cpu"  # the mode is gone too
    if not available:
        assert not torch.cuda.is_available()
        with pytest.raises((RuntimeError, AssertionError)):
            torch.zeros(1, device="cuda")


# ------------------------------------------------------------- the library under it
@pytest.fixture(autouse=True)
def keyed_orders(monkeypatch):
    """Fits on the CPU draw the keyed orders a CUDA device draws, so that they compare."""
    monkeypatch.setattr(_training, "KEYED_ORDER", True)


# The brief's settings. On pure-noise targets validation loss stops improving at once
# for some members: with this data member 3 stops after 3 epochs, the others run all 15,
# so epochs 4..15 train a member subset.
SETTINGS = dict(n_estimators=4, hidden_layer_sizes=(8,), max_iter=15, early_stopping=True,
                n_iter_no_change=2, engine="batched", random_state=0)


@pytest.fixture
def noise_data():
    rng = np.random.RandomState(0)
    return rng.normal(size=(120, 4)), rng.normal(size=120)


def test_batched_fit_on_device_matches_cpu(noise_data):
    """No streaming: data, order and member index all on the device; passes today."""
    X, y = noise_data
    cpu = NeuralBaggingRegressor(**SETTINGS, device="cpu").fit(X, y)
    assert len(set(cpu.n_iter_per_member_)) > 1  # the member-subset path runs
    with fake_cuda():
        est = NeuralBaggingRegressor(**SETTINGS, device="cuda").fit(X, y)
        pred = est.predict(X)
    assert est.device_ == "cuda" and est.engine_ == "batched"
    np.testing.assert_array_equal(est.n_iter_per_member_, cpu.n_iter_per_member_)
    np.testing.assert_allclose(pred, cpu.predict(X), rtol=1e-5, atol=1e-6)  # float32 on the device


def test_streaming_is_chosen_from_free_memory(noise_data, monkeypatch):
    """Free memory below twice the data's size streams it (no override); passes today."""
    X, y = noise_data
    calls = []
    streamed = _schedule.epoch_streamed
    monkeypatch.setattr(_schedule, "epoch_streamed",
                        lambda *a, **k: calls.append(k["chunk_steps"]) or streamed(*a, **k))
    kw = dict(SETTINGS, early_stopping=False, max_iter=3)  # all members train every epoch
    with fake_cuda(free=4096):  # the data take 2,880 bytes: more than half of 4,096
        pred = NeuralBaggingRegressor(**kw, device="cuda").fit(X, y).predict(X)
    assert calls and set(calls) == {1}
    cpu = NeuralBaggingRegressor(**kw, device="cpu").fit(X, y).predict(X)
    np.testing.assert_allclose(pred, cpu, rtol=1e-5, atol=1e-6)


def test_streamed_early_stopping_runs_on_cpu(noise_data, monkeypatch):
    """The scenario of the next test works on the CPU, where order and index share a device."""
    X, y = noise_data
    monkeypatch.setattr(_schedule, "STREAM_CHUNK_STEPS", 2)
    est = NeuralBaggingRegressor(**SETTINGS, device="cpu").fit(X, y)
    assert len(set(est.n_iter_per_member_)) > 1


@pytest.mark.parametrize("engine", ["batched", "graphed"])
@pytest.mark.parametrize("schedule", ["constant", "adaptive"])
def test_streamed_early_stopping_on_device(noise_data, monkeypatch, engine, schedule):
    # Streaming keeps the order on the host while parameters live on the device; once a
    # member stops (or the adaptive schedule splits members by rate) epochs run on member
    # subsets, whose index must be made on the device of each tensor it indexes.
    # (Before the foundation refactor this raised "indices should be either on cpu or on
    # the same device as the indexed tensor" at order[idx] in _epoch_subset.)
    X, y = noise_data
    monkeypatch.setattr(_schedule, "STREAM_CHUNK_STEPS", 2)
    monkeypatch.setattr(_schedule, "CAPTURE_GRAPHS", False)  # graphed: its eager schedule
    kw = dict(SETTINGS, engine=engine)
    if schedule == "adaptive":
        kw.update(solver="sgd", learning_rate="adaptive", learning_rate_init=0.05)
    with fake_cuda():
        est = NeuralBaggingRegressor(**kw, device="cuda").fit(X, y)
        pred = est.predict(X)
    assert est.device_ == "cuda" and est.engine_ == engine
    cpu = NeuralBaggingRegressor(**dict(kw, engine="batched"), device="cpu")
    monkeypatch.setattr(_schedule, "STREAM_CHUNK_STEPS", None)
    cpu.fit(X, y)
    # the member-subset path ran: members stopped at different epochs, or ran at different rates
    assert len(set(cpu.n_iter_per_member_)) > 1 or len(set(cpu._fitted.groups[0].vectors["lr"])) > 1
    np.testing.assert_array_equal(est.n_iter_per_member_, cpu.n_iter_per_member_)
    np.testing.assert_allclose(pred, cpu.predict(X), rtol=1e-5, atol=1e-6)


def test_auto_on_device_runs_and_keeps_no_graph_after_fit(noise_data, monkeypatch):
    X, y = noise_data
    monkeypatch.setattr(_schedule, "CAPTURE_GRAPHS", False)
    with fake_cuda():
        est = NeuralBaggingRegressor(**dict(SETTINGS, engine="auto"), device="cuda").fit(X, y)
    assert est.engine_ in ("graphed", "triton")
    assert _schedule.cached_runner_count() == 0  # the graph runner (device buffers) is released


def test_graphed_engine_needs_capture_disabled(noise_data, monkeypatch):
    """engine='graphed' captures CUDA graphs on a CUDA device; its eager schedule runs."""
    X, y = noise_data
    kw = dict(SETTINGS, engine="graphed", max_iter=3, batch_size=16)
    with fake_cuda(), pytest.raises(NotImplementedError, match="CUDA graph capture"):
        NeuralBaggingRegressor(**kw, device="cuda").fit(X, y)
    monkeypatch.setattr(_schedule, "CAPTURE_GRAPHS", False)
    with fake_cuda():
        pred = NeuralBaggingRegressor(**kw, device="cuda").fit(X, y).predict(X)
    ref = NeuralBaggingRegressor(**dict(kw, engine="batched"), device="cpu").fit(X, y)
    np.testing.assert_allclose(pred, ref.predict(X), rtol=1e-5, atol=1e-6)


def test_model_fitted_on_cuda_predicts_on_a_cpu_only_machine(noise_data, monkeypatch):
    X, y = noise_data
    monkeypatch.setattr(_schedule, "CAPTURE_GRAPHS", False)
    with fake_cuda():
        est = NeuralBaggingRegressor(**dict(SETTINGS, max_iter=3), device="cuda").fit(X, y)
        on_device = est.predict(X)
    restored = pickle.loads(pickle.dumps(est))  # as if loaded on a machine without CUDA
    with pytest.warns(UserWarning, match="predicting on the CPU") as record:
        on_cpu = restored.predict(X)
    assert record[0].filename == __file__
    np.testing.assert_allclose(on_cpu, on_device, rtol=1e-5, atol=1e-6)  # float32 on the device


@pytest.mark.parametrize("stream", [False, True])
def test_members_of_other_input_widths_on_device(noise_data, monkeypatch, stream):
    # On CUDA members of one depth share one group padded to the widest input: member
    # column lists and their zero-column padding travel to the device, streamed or not,
    # and the fit equals the CPU's per-width groups.
    X, y = noise_data
    monkeypatch.setattr(_schedule, "CAPTURE_GRAPHS", False)
    if stream:
        monkeypatch.setattr(_schedule, "STREAM_CHUNK_STEPS", 2)
    kw = dict(SETTINGS, n_estimators=8, ensemble_selection=5, validation_fraction=0.5,
              member_params={
        "n_bins": [3, 6], "numeric_encoding": ["none", "piecewise_linear"],
        "learning_rate_init": [1e-3, 3e-3]})
    with fake_cuda():
        est = NeuralBaggingRegressor(**kw, device="cuda").fit(X, y)
        pred = est.predict(X)
    assert set(est._fitted.input_keys.tolist()) == {0, 3, 6}, "the draws should cover every width"
    assert len(est._fitted.groups) == 1 and est._fitted.groups[0].sizes[0] == 4 + 4 * 6 + 1
    monkeypatch.setattr(_schedule, "STREAM_CHUNK_STEPS", None)
    cpu = NeuralBaggingRegressor(**kw, device="cpu").fit(X, y)
    assert len(cpu._fitted.groups) > 1  # one group per input width on the CPU
    np.testing.assert_array_equal(est.n_iter_per_member_, cpu.n_iter_per_member_)
    np.testing.assert_allclose(est.ensemble_weights_, cpu.ensemble_weights_, atol=1e-12)
    np.testing.assert_allclose(pred, cpu.predict(X), rtol=1e-5, atol=1e-6)


# --------------------------------------------- issue 25: devices, graphs, faults, launches
def test_the_harness_simulates_several_devices_and_the_current_one():
    with fake_cuda(n_devices=2) as fake:
        assert torch.cuda.device_count() == 2 and fake.devices[1] == torch.device("cuda", 1)
        a, b = torch.ones(2, device="cuda:1"), torch.ones(2, device="cuda")
        assert a.device == torch.device("cuda", 1) and b.device == DEVICE  # "cuda": current
        assert (a * 2).get_device() == 1 and a.cuda().device == DEVICE and a.cuda(1) is a
        with pytest.raises(RuntimeError, match="cuda:0 and cuda:1"):
            a + b
        with torch.cuda.device(1):
            assert torch.cuda.current_device() == 1 == fake.current
            assert torch.zeros(1, device="cuda").get_device() == 1
        assert torch.cuda.current_device() == 0
        torch.cuda.set_device(1)
        assert torch.ones(1).cuda().get_device() == 1
        with pytest.raises(RuntimeError, match="invalid device ordinal"):
            torch.zeros(1, device="cuda:2")


def test_the_harness_captures_and_replays_graphs_on_the_current_device_only():
    with fake_cuda(n_devices=2, graphs=True) as fake:
        for index in (0, 1):
            x = torch.zeros(3, device=f"cuda:{index}")
            g = torch.cuda.CUDAGraph()
            with torch.cuda.device(index), torch.cuda.graph(g):
                y = x + 1  # a fresh tensor at a fixed address
                x.copy_(y * 2)
                with pytest.raises(RuntimeError, match="stream is capturing"):
                    x.sum().item()  # no host synchronisation while capturing
                assert torch.cuda.is_current_stream_capturing()
            assert g.device == index and not g.empty
            launches = fake.launches
            g.replay()
            g.replay()
            assert fake.launches == launches and fake.replays == 2 * (index + 1)
            np.testing.assert_array_equal(x.cpu().numpy(), [14.0] * 3)  # 0 -> 2 -> 6 -> 14
        # captured with cuda:0 current, the work on cuda:1 is not captured: an empty graph
        x = torch.zeros(3, device="cuda:1")
        g = torch.cuda.CUDAGraph()
        with pytest.warns(UserWarning, match="CUDA Graph is empty"):
            with torch.cuda.graph(g):
                x.add_(1)
        g.replay()
        assert g.empty and x.sum().item() == 3.0  # ran once at capture, never again


def test_the_harness_raises_a_fault_at_the_next_synchronisation():
    with fake_cuda() as fake:
        x = torch.ones(2, device="cuda")
        fake.fault(RuntimeError("CUDA error: an illegal memory access was encountered"))
        y = x * 2  # launches are asynchronous: the error waits
        with pytest.raises(RuntimeError, match="illegal memory access"):
            y.cpu()
        assert y.sum().item() == 4.0  # raised once


GRAPHED = dict(SETTINGS, engine="graphed", early_stopping=False, max_iter=4, batch_size=16)


@pytest.mark.parametrize("device", ["cuda:0", "cuda:1"])
def test_graphed_fit_captures_on_the_parameters_device(noise_data, device):
    # Issue 25, defect 1: capture ran without a device guard, so on cuda:1 (with cuda:0
    # current) torch captured an empty graph and every replay did nothing: members
    # stayed untrained.
    X, y = noise_data
    captured = []
    with fake_cuda(n_devices=2, graphs=True) as fake:
        real = torch.cuda.graph

        def spy(graph, *args, **kwargs):
            captured.append(torch.cuda.current_device())
            return real(graph, *args, **kwargs)

        torch.cuda.graph = spy  # restored by fake_cuda on exit
        est = NeuralBaggingRegressor(**GRAPHED, device=device).fit(X, y)
        pred = est.predict(X)
        assert fake.replays > 0 and fake.current == 0
    assert est.device_ == device and est.engine_ == "graphed"
    assert captured and set(captured) == {int(device[-1])}
    cpu = NeuralBaggingRegressor(**dict(GRAPHED, engine="batched"), device="cpu").fit(X, y)
    np.testing.assert_allclose(pred, cpu.predict(X), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("stream", [None, 3])
def test_graphed_epochs_launch_no_eager_step_after_capture(noise_data, monkeypatch, stream):
    # Issue 25, defect 3: the steps left over after the last whole captured chunk ran
    # eagerly every epoch (up to 63 steps of ~40 kernels). 120 rows, batch 16, chunk 4:
    # each epoch is one chunk of 4 steps and a leftover of 4 steps (the last one of 8
    # rows); streamed in chunks of 3 batches: chunks of 3, 3 and 2 steps.
    X, y = noise_data
    monkeypatch.setattr(_schedule, "STREAM_CHUNK_STEPS", stream)
    eager = []
    real = _schedule._batched_step

    def counted(*args):
        if not torch.cuda.is_current_stream_capturing():
            eager.append(1)
        return real(*args)

    monkeypatch.setattr(_schedule, "_batched_step", counted)
    real_graphed = _schedule.epoch_graphed
    monkeypatch.setattr(_schedule, "epoch_graphed",
                        lambda *a, **k: real_graphed(*a, **k, chunk=4))
    epochs = []
    with fake_cuda(graphs=True) as fake:
        est = NeuralBaggingRegressor(**dict(GRAPHED, max_iter=5), device="cuda")
        real_epoch = _training._Loop._epoch

        def per_epoch(self, *args):
            before = len(eager)
            out = real_epoch(self, *args)
            epochs.append(len(eager) - before)
            return out

        monkeypatch.setattr(_training._Loop, "_epoch", per_epoch)
        pred = est.fit(X, y).predict(X)
        assert fake.replays > 0
    # eager steps only warm up a capture (two per graph), in the first epoch
    assert epochs[0] > 0 and epochs[1:] == [0] * 4
    monkeypatch.setattr(_schedule, "STREAM_CHUNK_STEPS", None)
    cpu = NeuralBaggingRegressor(**dict(GRAPHED, max_iter=5, engine="batched"),
                                 device="cpu").fit(X, y)
    np.testing.assert_allclose(pred, cpu.predict(X), rtol=1e-5, atol=1e-6)


def test_triton_launches_on_the_parameters_device(monkeypatch):
    # Issue 25, defect 1: Triton launches on the current device; the launch for members
    # on cuda:1 had no device guard and failed there.
    pytest.importorskip("triton")
    from skensemble._kernels import triton_gpu

    seen = []

    class Kernel:
        def __getitem__(self, grid):
            def launch(flat, *args, **kwargs):
                seen.append((torch.cuda.current_device(), flat.get_device(), grid))
            return launch

    monkeypatch.setattr(triton_gpu, "_epoch_kernel", Kernel())
    monkeypatch.setattr(triton_gpu, "build_mode", lambda device: "compiled")
    layout = _engine.Layout((4, 6, 1))
    hyper = _engine.Hyper(activation="relu", solver="adam", batch_size=1)
    with fake_cuda(n_devices=2):
        for index in (1, 0):
            dev = torch.device("cuda", index)
            flat = _engine.init_parameters(layout, [0, 1, 2], "relu").to(dev)
            state, steps = _engine.init_state(flat, hyper)
            params = _engine.Params(flat, state, steps, layout)
            data = _engine.Data(torch.ones(5, 4, device=dev), torch.ones(5, 1, device=dev),
                                None, None)
            order = torch.arange(5, device=dev).expand(3, 5).contiguous()
            member = _engine.Member.of(np.full(3, 1e-3), dev)
            triton_gpu.epoch_triton(params, data, order, member, hyper)
        assert torch.cuda.current_device() == 0
    assert seen == [(1, 1, (3,)), (0, 0, (3,))]


# ---------------------------------------------- issue 25: orders, memory, faults on device
def test_keyed_orders_are_per_member_permutations_uniform_and_device_free():
    from skensemble import _sampling

    rows = torch.arange(6).repeat(40, 1) * 10  # (40, 6): every member visits rows 0..50
    keys = torch.from_numpy(_sampling.order_keys(7, range(40)))
    counts = np.zeros((6, 6))
    for epoch in range(50):
        order = _sampling.keyed_order(rows, keys, epoch)
        assert torch.equal(order.sort(1).values, rows)  # a permutation of each member's rows
        for e in range(40):
            counts[np.arange(6), order[e].numpy() // 10] += 1
        # a member's order depends on its own key only (n_jobs chunks draw the same)
        assert torch.equal(_sampling.keyed_order(rows[5:9], keys[5:9], epoch), order[5:9])
    # every row equally likely at every position: 2,000 draws per position, 333 expected
    chi2 = ((counts - 2000 / 6) ** 2 / (2000 / 6)).sum()
    assert chi2 < 70, chi2  # 25 degrees of freedom: p < 1e-5 beyond 70
    assert not torch.equal(_sampling.keyed_order(rows, keys, 0), _sampling.keyed_order(rows, keys, 1))
    with fake_cuda():  # drawn on the device: the same bits
        dev = _sampling.keyed_order(rows.cuda(), keys.cuda(), 3)
        assert on_device(dev)
        assert torch.equal(dev.cpu(), _sampling.keyed_order(rows, keys, 3))


def test_device_fits_draw_their_orders_on_the_device(noise_data, monkeypatch):
    # Issue 25, defect 4: the order was drawn and sorted on the host every epoch (a
    # serial stable argsort of E x M: 0.77 s at E=1000 and 9,000 rows).
    X, y = noise_data
    monkeypatch.setattr(_training, "KEYED_ORDER", None)  # the defaults
    host = []
    real = _training.epoch_order
    monkeypatch.setattr(_training, "epoch_order", lambda *a: host.append(1) or real(*a))
    kw = dict(SETTINGS, max_iter=4)
    with fake_cuda():
        pred = NeuralBaggingRegressor(**kw, device="cuda").fit(X, y).predict(X)
    assert not host  # no host order
    cpu_default = NeuralBaggingRegressor(**kw, device="cpu").fit(X, y)
    assert host  # the CPU engines keep theirs (bit for bit: test_bitwise)
    monkeypatch.setattr(_training, "KEYED_ORDER", True)
    cpu_keyed = NeuralBaggingRegressor(**kw, device="cpu").fit(X, y).predict(X)
    np.testing.assert_allclose(pred, cpu_keyed, rtol=1e-5, atol=1e-6)
    assert np.abs(cpu_default.predict(X) - pred).max() > 1e-4  # another order


def test_the_order_counts_in_the_resident_or_streamed_decision(noise_data, monkeypatch):
    # Issue 25, defect 5: the E x M int64 order was left out (8 GB at E=1000, 1M rows).
    # Here the data take 2,880 bytes and the orders 3 x 4 x 120 x 8 = 11,520.
    X, y = noise_data
    calls = []
    streamed = _schedule.epoch_streamed
    monkeypatch.setattr(_schedule, "epoch_streamed",
                        lambda *a, **k: calls.append(k["chunk_steps"]) or streamed(*a, **k))
    kw = dict(SETTINGS, early_stopping=False, max_iter=2)
    assert _schedule.stream_chunk_steps(X.astype(np.float32), y[:, None].astype(np.float32),
                                        torch.device("cpu"), None, 4, 120) is None
    with fake_cuda(free=8192):
        NeuralBaggingRegressor(**kw, device="cuda").fit(X, y)
    assert calls
    calls.clear()
    with fake_cuda(free=2 * (2880 + 11520)):
        NeuralBaggingRegressor(**kw, device="cuda").fit(X, y)
    assert not calls


def test_device_out_of_memory_anywhere_in_a_fit_says_what_to_change(noise_data, monkeypatch):
    # Issue 25, defect 6: device allocations before the epoch loop (data, validation
    # rows, parameters) and graph capture were outside the translation.
    X, y = noise_data

    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with monkeypatch.context() as m:
        m.setattr(_training, "_validation", oom)
        with fake_cuda(), pytest.raises(MemoryError, match="ran out of memory training 4"):
            NeuralBaggingRegressor(**SETTINGS, device="cuda").fit(X, y)

    def capture_oom(self, rows):
        raise RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be ...")

    monkeypatch.setattr(_schedule._ChunkRunner, "_capture", capture_oom)
    with fake_cuda(graphs=True), pytest.raises(MemoryError, match="Lower n_estimators"):
        NeuralBaggingRegressor(**GRAPHED, device="cuda").fit(X, y)
    assert _schedule.cached_runner_count() == 0


def _faulting_triton(fake):
    def epoch(params, *args, **kwargs):
        params.flat.mul_(0.0).add_(123.0)  # ran, and left its mark
        params.steps.add_(5)
        fake.fault(RuntimeError("CUDA error: an illegal memory access was encountered"))
        return torch.zeros(params.flat.shape[0], device=params.flat.device)
    return epoch


def test_auto_falls_back_from_an_asynchronous_triton_fault(noise_data, monkeypatch):
    # Issue 25, defect 2: a kernel fault surfaces at the next synchronisation, after
    # the fallback's first call returned: it escaped the fallback.
    X, y = noise_data
    kw = dict(GRAPHED, engine="auto")
    monkeypatch.setattr(_schedule, "CAPTURE_GRAPHS", False)
    with fake_cuda() as fake:
        real_select, real_fn = _dispatch.select_engine, _dispatch.epoch_function
        monkeypatch.setattr(_dispatch, "select_engine", lambda requested, *a, **k: "triton"
                            if requested == "auto" else real_select(requested, *a, **k))
        monkeypatch.setattr(_dispatch, "epoch_function", lambda name: _faulting_triton(fake)
                            if name == "triton" else real_fn(name))
        with pytest.warns(RuntimeWarning, match="illegal memory access"):
            est = NeuralBaggingRegressor(**kw, device="cuda").fit(X, y)
        pred = est.predict(X)
    assert est.engine_ == "graphed (triton failed: RuntimeError)"
    cpu = NeuralBaggingRegressor(**dict(kw, engine="batched"), device="cpu").fit(X, y)
    np.testing.assert_allclose(pred, cpu.predict(X), rtol=1e-5, atol=1e-6)


def test_a_fault_that_leaves_the_device_unusable_says_so(noise_data, monkeypatch):
    X, y = noise_data
    monkeypatch.setattr(_schedule, "CAPTURE_GRAPHS", False)
    with fake_cuda():
        def sticky(params, *args, **kwargs):
            def broken(device=None):  # every synchronisation fails from now on
                raise RuntimeError("CUDA error: an illegal memory access was encountered")

            torch.cuda.synchronize = broken  # fake_cuda restores it on exit
            return torch.zeros(params.flat.shape[0], device=params.flat.device)

        real_select, real_fn = _dispatch.select_engine, _dispatch.epoch_function
        monkeypatch.setattr(_dispatch, "select_engine", lambda requested, *a, **k: "triton"
                            if requested == "auto" else real_select(requested, *a, **k))
        monkeypatch.setattr(_dispatch, "epoch_function",
                            lambda name: sticky if name == "triton" else real_fn(name))
        with pytest.raises(RuntimeError, match="left the device unusable"):
            NeuralBaggingRegressor(**dict(GRAPHED, engine="auto"), device="cuda").fit(X, y)


def test_device_predictions_compute_in_float32_in_large_chunks(noise_data, monkeypatch):
    # Issue 25, defect 7: predictions ran in float64 on the device (1/64 of the float32
    # rate on consumer GPUs), in chunks sized for the CPU (30 rows at E=1000, 271 inputs).
    from skensemble import _predict

    X, y = noise_data
    seen = []
    real = _engine.forward
    monkeypatch.setattr(_engine, "forward", lambda flat, layout, Xc, *a, **k: seen.append(
        (Xc.dtype, flat.dtype, Xc.device.type)) or real(flat, layout, Xc, *a, **k))
    monkeypatch.setattr(_schedule, "CAPTURE_GRAPHS", False)
    with fake_cuda():
        est = NeuralBaggingRegressor(**dict(SETTINGS, max_iter=3), device="cuda").fit(X, y)
        seen.clear()
        pred = est.predict(X)
        assert set(seen) == {(torch.float32, torch.float32, "cuda")}
        assert pred.dtype == np.float64
        wide = [type("G", (), {"members": np.arange(1000), "sizes": (271, 100, 1)})()]
        assert _predict.chunk_rows(wide, torch.device("cuda")) >= 900
    assert _predict.chunk_rows(wide, torch.device("cpu")) == 30  # the CPU's budget, as before
    seen.clear()
    with pytest.warns(UserWarning, match="predicting on the CPU"):
        on_cpu = est.predict(X)  # fitted on the device, predicted on the CPU: float64 there
    assert {s[:2] for s in seen} <= {(torch.float64, torch.float64)}
    np.testing.assert_allclose(pred, on_cpu, rtol=1e-5, atol=1e-6)
