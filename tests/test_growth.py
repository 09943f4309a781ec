"""Growth preserves the function: widen, deepen, hatch; MotherNet architecture and clusters."""

import numpy as np
import pytest
import torch

from skensemble import _engine, _growth
from skensemble._engine import ACTIVATIONS, Layout

# (F, H..., O): one and several hidden layers, one and several outputs
SIZES = [(3, 5, 1), (4, 6, 5, 3), (5, 4, 7, 3, 2)]


def _member(sizes, activation, seed=0):
    """One member's row ``(P,)`` with the engine's own initialisation."""
    return _engine.init_parameters(Layout(sizes), [seed], activation)[0]


def _out(flat, sizes, X, activation):
    """Outputs ``(N, O)`` of one member through the engine's forward."""
    return _engine.forward(flat.unsqueeze(0), Layout(sizes), X, activation)[0]


def _X(F, n=200, seed=1):
    return torch.randn(n, F, generator=torch.Generator().manual_seed(seed)) * 2


def _hidden(flat, sizes, X, activation, layer):
    """Activations ``(N, H)`` of hidden layer ``layer``."""
    h = X
    for W, b in _growth._split(flat, sizes)[: layer + 1]:
        h = _engine.activate(h @ W + b, activation)
    return h


# ---------------------------------------------------------------------- widen
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("sizes", SIZES)
def test_widen_preserves_function(activation, sizes):
    X = _X(sizes[0])
    flat = _member(sizes, activation)
    ref = _out(flat, sizes, X, activation)
    g = torch.Generator().manual_seed(0)
    for layer in range(len(sizes) - 2):
        h = sizes[layer + 1]
        for new_width in (h, h + 1, 2 * h + 3):
            f2, s2 = _growth.widen(flat, sizes, layer, new_width, g)
            assert s2[layer + 1] == new_width and f2.numel() == Layout(s2).n_params
            torch.testing.assert_close(_out(f2, s2, X, activation), ref, rtol=1e-5, atol=1e-5)
    # several layers in turn, including a layer widened twice
    f, s = flat, sizes
    for layer in [*range(len(sizes) - 2), 0]:
        f, s = _growth.widen(f, s, layer, s[layer + 1] + 3, g)
    torch.testing.assert_close(_out(f, s, X, activation), ref, rtol=1e-5, atol=1e-5)


def test_widen_structure():
    sizes = (4, 6, 5, 3)
    flat = _member(sizes, "relu")
    f2, s2 = _growth.widen(flat, sizes, 0, 14, torch.Generator().manual_seed(3))
    (W_in, b_in), (W_out, _), _ = _growth._split(flat, sizes)
    (V_in, c_in), (V_out, _), _ = _growth._split(f2, s2)
    torch.testing.assert_close(V_in[:, :6], W_in, rtol=0, atol=0)  # first h units unchanged
    # every new unit is an exact copy of one original; its group shares the outgoing row
    for j in range(14):
        matches = [i for i in range(6) if torch.equal(V_in[:, j], W_in[:, i])]
        assert len(matches) == 1 and c_in[j] == b_in[matches[0]]
    groups = {}
    for j in range(14):
        groups.setdefault(int(torch.nonzero((V_in[:, j:j + 1] == W_in).all(0))[0]), []).append(j)
    for i, js in groups.items():
        for j in js:
            torch.testing.assert_close(V_out[j], W_out[i] / len(js))
    assert any(len(js) > 1 for js in groups.values())


def test_widen_same_generator_same_result_and_errors():
    sizes = (4, 6, 5, 3)
    flat = _member(sizes, "tanh")
    a, _ = _growth.widen(flat, sizes, 1, 11, torch.Generator().manual_seed(5))
    b, _ = _growth.widen(flat, sizes, 1, 11, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    same, s = _growth.widen(flat, sizes, 1, 5, None)
    assert torch.equal(same, flat) and s == sizes
    with pytest.raises(ValueError, match="shrink"):
        _growth.widen(flat, sizes, 1, 4)
    with pytest.raises(ValueError, match="hidden layer"):
        _growth.widen(flat, sizes, 2, 9)
    with pytest.raises(ValueError, match="parameters"):
        _growth.widen(flat[:-1], sizes, 0, 9)


# --------------------------------------------------------------------- deepen
@pytest.mark.parametrize("activation", ["relu", "identity"])
@pytest.mark.parametrize("sizes", SIZES)
def test_deepen_exact_relu_identity(activation, sizes):
    X = _X(sizes[0])
    flat = _member(sizes, activation)
    ref = _out(flat, sizes, X, activation)
    for after in range(len(sizes) - 2):
        f2, s2 = _growth.deepen(flat, sizes, after, activation)
        assert s2 == sizes[: after + 2] + (sizes[after + 1],) + sizes[after + 2:]
        # identity weights, zero bias: bit-for-bit the same outputs
        torch.testing.assert_close(_out(f2, s2, X, activation), ref, rtol=0, atol=0)


@pytest.mark.parametrize("activation, bound", [("tanh", 1 / 3), ("logistic", 1 / 6)])
@pytest.mark.parametrize("gain", [1.0, 10.0, 100.0])
def test_deepen_tanh_logistic_within_documented_bound(activation, bound, gain):
    # Inserted before the (linear) output layer, the output error is at most the
    # per-unit error bound / c^2 times the column sums of |W_out|.
    sizes = (4, 6, 5, 3)
    X = _X(4, n=500)
    flat = _member(sizes, activation)
    ref = _out(flat, sizes, X, activation)
    f2, s2 = _growth.deepen(flat, sizes, 1, activation, gain=gain)
    W_out = _growth._split(flat, sizes)[-1][0]  # (H, O)
    limit = bound / gain**2 * W_out.abs().sum(0) + 1e-5  # (O,), + float32 slack
    err = (_out(f2, s2, X, activation) - ref).abs()  # (N, O)
    assert (err <= limit).all()
    # the carried hidden activation: per-unit error within the bound
    a = _hidden(flat, sizes, X, activation, 1)  # (N, H)
    s = _hidden(f2, s2, X, activation, 2)
    if activation == "tanh":
        carried = gain * s
        per_unit = a.abs() ** 3 / (3 * gain**2)
    else:
        carried = gain * s + (1 - gain) / 2
        per_unit = 4 * (a - 0.5).abs() ** 3 / (3 * gain**2)
    assert ((carried - a).abs() <= per_unit + 1e-5 * gain).all()


@pytest.mark.parametrize("activation", ["tanh", "logistic"])
def test_deepen_tanh_logistic_error_shrinks_with_gain(activation):
    # The measured relative output error on Glorot-initialised members, inserted after
    # every hidden layer: ~1e-3 (tanh) and ~1e-4 (logistic) at the default gain, falling
    # as 1 / gain^2; plain identity insertion (tanh, gain 1) is ~10% off.
    sizes = (5, 4, 7, 3, 2)
    X = _X(5, n=500)
    rel = {}
    for gain in (1.0, 10.0, 100.0):
        worst = 0.0
        for seed in range(3):
            flat = _member(sizes, activation, seed)
            ref = _out(flat, sizes, X, activation)
            for after in range(3):
                f2, s2 = _growth.deepen(flat, sizes, after, activation, gain=gain)
                d = (_out(f2, s2, X, activation) - ref).norm() / ref.norm()
                worst = max(worst, float(d))
        rel[gain] = worst
    assert rel[10.0] < (5e-3 if activation == "tanh" else 1e-3)
    assert rel[100.0] < 1e-4
    assert rel[10.0] < rel[1.0] / 20
    if activation == "tanh":
        assert rel[1.0] > 1e-2  # identity insertion is not exact: why the gain exists


@pytest.mark.parametrize("activation", ["tanh", "logistic"])
def test_deepen_repeatedly_does_not_compound_scale(activation):
    sizes = (4, 6, 3)
    X = _X(4)
    flat = _member(sizes, activation)
    ref = _out(flat, sizes, X, activation)
    f, s = flat, sizes
    for _ in range(3):
        f, s = _growth.deepen(f, s, 0, activation, gain=10.0)
    layers = _growth._split(f, s)
    # the output layer is scaled by the gain once, not gain^3
    torch.testing.assert_close(layers[-1][0], 10.0 * _growth._split(flat, sizes)[-1][0])
    assert max(float(W.abs().max()) for W, _ in layers) < 10 * float(flat.abs().max()) + 1e-6
    d = (_out(f, s, X, activation) - ref).norm() / ref.norm()
    assert d < 1e-2


def test_deepen_errors():
    flat = _member((4, 6, 3), "relu")
    with pytest.raises(ValueError, match="hidden layer"):
        _growth.deepen(flat, (4, 6, 3), 1, "relu")
    with pytest.raises(ValueError, match="activation"):
        _growth.deepen(flat, (4, 6, 3), 0, "softplus")
    with pytest.raises(ValueError, match="cannot be deepened"):
        _growth.deepen(_member((4, 3), "relu"), (4, 3), 0, "relu")


# ---------------------------------------------------------------------- hatch
@pytest.mark.parametrize("activation", ["relu", "identity"])
def test_hatch_noise_free_wider_and_deeper_is_exact(activation):
    mother, member = (5, 4, 3, 2), (5, 9, 6, 5, 3, 2)  # wider and two layers deeper
    X = _X(5)
    flat = _member(mother, activation)
    grown = _growth.hatch(flat, mother, member, activation, 0.0, torch.Generator().manual_seed(0))
    assert grown.shape == (Layout(member).n_params,)
    torch.testing.assert_close(_out(grown, member, X, activation),
                               _out(flat, mother, X, activation), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation", ["tanh", "logistic"])
def test_hatch_noise_free_tanh_logistic(activation):
    mother = (5, 4, 3, 2)
    X = _X(5)
    flat = _member(mother, activation)
    ref = _out(flat, mother, X, activation)
    g = torch.Generator().manual_seed(0)
    wider = _growth.hatch(flat, mother, (5, 8, 7, 2), activation, 0.0, g)
    torch.testing.assert_close(_out(wider, (5, 8, 7, 2), X, activation), ref,
                               rtol=1e-5, atol=1e-5)
    deeper = _growth.hatch(flat, mother, (5, 8, 7, 4, 2), activation, 0.0, g)
    d = (_out(deeper, (5, 8, 7, 4, 2), X, activation) - ref).norm() / ref.norm()
    assert d < 5e-3  # deepen's documented approximation at the default gain


def test_hatch_noise_perturbs_slightly_and_breaks_symmetry():
    mother, member = (5, 4, 3, 2), (5, 9, 6, 4, 2)
    X = _X(5)
    flat = _member(mother, "relu")
    ref = _out(flat, mother, X, "relu")
    exact = _growth.hatch(flat, mother, member, "relu", 0.0, torch.Generator().manual_seed(7))
    noisy = _growth.hatch(flat, mother, member, "relu", 0.01, torch.Generator().manual_seed(7))
    d = float((_out(noisy, member, X, "relu") - ref).norm() / ref.norm())
    assert 1e-4 < d < 0.1
    # the widening maps come first from the generator: same copies, now made different
    W0, Z0 = _growth._split(exact, member)[0][0], _growth._split(noisy, member)[0][0]
    copies = [(i, j) for i in range(9) for j in range(i + 1, 9) if torch.equal(W0[:, i], W0[:, j])]
    assert copies
    for i, j in copies:
        assert not torch.equal(Z0[:, i], Z0[:, j])
    # noise is relative to each layer's weight scale
    pairs = zip(_growth._split(exact, member), _growth._split(noisy, member), strict=True)
    for (W, _), (V, _) in pairs:
        assert float((V - W).std()) < 0.03 * float(W.std())
    # reproducible from the generator
    again = _growth.hatch(flat, mother, member, "relu", 0.01, torch.Generator().manual_seed(7))
    assert torch.equal(noisy, again)


def test_hatch_same_architecture_copies_and_rejects_impossible_members():
    mother = (5, 4, 3, 2)
    flat = _member(mother, "relu")
    same = _growth.hatch(flat, mother, mother, "relu", 0.0)
    assert torch.equal(same, flat) and same.data_ptr() != flat.data_ptr()
    for bad in [(5, 3, 3, 2), (5, 4, 2), (5, 4, 3, 2, 2), (5, 4, 3, 3), (4, 4, 3, 2)]:
        with pytest.raises(ValueError):
            _growth.hatch(flat, mother, bad, "relu", 0.0)
    with pytest.raises(ValueError, match="noise"):
        _growth.hatch(flat, mother, mother, "relu", -1.0)


def test_hatch_from_mother_architecture_of_every_member():
    archs = [(8,), (16, 4), (6, 12, 5), (7, 6)]
    mother = (3, *_growth.mother_architecture(archs), 2)
    X = _X(3)
    flat = _member(mother, "relu")
    ref = _out(flat, mother, X, "relu")
    g = torch.Generator().manual_seed(0)
    for a in archs:
        grown = _growth.hatch(flat, mother, (3, *a, 2), "relu", 0.0, g)
        torch.testing.assert_close(_out(grown, (3, *a, 2), X, "relu"), ref,
                                   rtol=1e-5, atol=1e-5)


# -------------------------------------------------------- mother and clusters
def test_mother_architecture_examples():
    ma = _growth.mother_architecture
    assert ma([(32,), (32,), (64, 32), (64, 32)]) == (32,)
    assert ma([(64, 32), (64, 32)]) == (64, 32)
    assert ma([(100, 50), (80, 60, 10)]) == (80, 10)  # last layer: narrowest of the tails
    assert ma([(64, 32), (32, 16, 8)]) == (32, 8)
    assert ma([(64, 8), (32,)]) == (8,)  # (32,) could not grow into the 8-wide layer
    assert ma([(10, 20, 30)]) == (10, 20, 30)
    assert ma([(5,), ()]) == ()
    with pytest.raises(ValueError):
        ma([])


def test_shared_fraction():
    sf = _growth.shared_fraction
    assert sf((32,), (32,), 10, 1) == 1.0
    # mother (32,): 10*32+32 + 32+1 = 385; (64, 32): 10*64+64 + 64*32+32 + 32+1 = 2817
    assert sf((32,), (64, 32), 10, 1) == pytest.approx(385 / 2817)
    assert sf((64, 32), (32,), 10, 1) == sf((32,), (64, 32), 10, 1)
    assert 0 < sf((8,), (100, 100), 4, 3) < sf((90, 100), (100, 100), 4, 3) < 1


def test_cluster_architectures():
    ca = _growth.cluster_architectures
    archs = [(32,), (32,), (64, 32), (64, 32)]
    assert ca(archs, 1, 10, 1).tolist() == [0, 0, 0, 0]
    assert ca(archs, 4, 10, 1).tolist() == [0, 1, 2, 3]  # identical, yet independent
    assert ca(archs, 2, 10, 1).tolist() == [0, 0, 1, 1]
    assert ca(archs[::-1], 2, 10, 1).tolist() == [0, 0, 1, 1]  # numbered by first appearance
    mixed = [(64, 32), (10,), (64, 32), (12,), (64, 30)]
    labels = ca(mixed, 2, 10, 1)
    assert labels.tolist() == [0, 1, 0, 1, 0] and labels.dtype == np.int64
    labels = ca(mixed, 3, 10, 1)
    assert labels[0] == labels[2] and len(set(labels.tolist())) == 3
    with pytest.raises(ValueError, match="n_clusters"):
        ca(archs, 5, 10, 1)
    with pytest.raises(ValueError, match="n_clusters"):
        ca(archs, 0, 10, 1)
