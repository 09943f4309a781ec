"""The simulated CUDA device (tests/fake_cuda.py), then the library's CUDA paths under it."""


import pickle

import numpy as np
import pytest
import torch
from fake_cuda import DEVICE, fake_cuda, on_device

from skensemble import NeuralBaggingRegressor, _engine, _schedule, _training

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
    np.testing.assert_allclose(pred, cpu.predict(X), rtol=1e-6, atol=1e-7)


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
    np.testing.assert_allclose(pred, cpu, rtol=1e-6, atol=1e-7)


def test_streamed_early_stopping_runs_on_cpu(noise_data, monkeypatch):
    """The scenario of the next test works on the CPU, where order and index share a device."""
    X, y = noise_data
    monkeypatch.setattr(_training, "STREAM_CHUNK_STEPS", 2)
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
    monkeypatch.setattr(_training, "STREAM_CHUNK_STEPS", 2)
    monkeypatch.setattr(_schedule, "CAPTURE_GRAPHS", False)  # graphed: its eager schedule
    kw = dict(SETTINGS, engine=engine)
    if schedule == "adaptive":
        kw.update(solver="sgd", learning_rate="adaptive", learning_rate_init=0.05)
    with fake_cuda():
        est = NeuralBaggingRegressor(**kw, device="cuda").fit(X, y)
        pred = est.predict(X)
    assert est.device_ == "cuda" and est.engine_ == engine
    cpu = NeuralBaggingRegressor(**dict(kw, engine="batched"), device="cpu")
    monkeypatch.setattr(_training, "STREAM_CHUNK_STEPS", None)
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
    np.testing.assert_allclose(on_cpu, on_device, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("stream", [False, True])
def test_members_of_other_input_widths_on_device(noise_data, monkeypatch, stream):
    # On CUDA members of one depth share one group padded to the widest input: member
    # column lists and their zero-column padding travel to the device, streamed or not,
    # and the fit equals the CPU's per-width groups.
    X, y = noise_data
    monkeypatch.setattr(_schedule, "CAPTURE_GRAPHS", False)
    if stream:
        monkeypatch.setattr(_training, "STREAM_CHUNK_STEPS", 2)
    kw = dict(SETTINGS, n_estimators=8, ensemble_selection=5, validation_fraction=0.5,
              member_params={
        "n_bins": [3, 6], "numeric_encoding": ["none", "piecewise_linear"],
        "learning_rate_init": [1e-3, 3e-3]})
    with fake_cuda():
        est = NeuralBaggingRegressor(**kw, device="cuda").fit(X, y)
        pred = est.predict(X)
    assert set(est._fitted.input_keys.tolist()) == {0, 3, 6}, "the draws should cover every width"
    assert len(est._fitted.groups) == 1 and est._fitted.groups[0].sizes[0] == 4 + 4 * 6 + 1
    monkeypatch.setattr(_training, "STREAM_CHUNK_STEPS", None)
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
    monkeypatch.setattr(_training, "STREAM_CHUNK_STEPS", stream)
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
    monkeypatch.setattr(_training, "STREAM_CHUNK_STEPS", None)
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
