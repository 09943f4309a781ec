"""Pure-torch network growth: function-preserving widen/deepen, MotherNets hatching.

MotherNets (Wasay et al., MLSys 2020) trains one small "mother" network per group of
similar member architectures, then "hatches" every member from it with the
function-preserving transformations of Net2Net (Chen et al., ICLR 2016) and trains
each member further. The members start from a network that already fits the data,
and a little noise breaks the symmetry between copied units so that they can diverge.

Owns the network transformations and the clustering of architectures. Must not train
(:mod:`._mothernets` trains the MotherNets through :mod:`._training`) nor know about
estimators. Nothing here knows about scikit-learn (apart from the clustering call,
imported lazily). Every transformation acts on ONE member's flat parameter row ``(P,)`` in the
layout of :class:`skensemble._engine.Layout`: per affine layer a row-major weight
``(fan_in, fan_out)`` (``X @ W``) followed by its bias ``(fan_out,)``; the hidden
activation follows every layer but the last. ``sizes`` tuples are full
``(F, H_1, ..., H_k, O)``; hidden layer ``i`` (0-based) is the output of affine layer
``i`` and the input of affine layer ``i + 1``.

Shape legend
------------
E   members (architectures) being clustered
F   input features
H   hidden units of a layer: h before widening, h2 after
O   outputs
P   parameters of one member; P2 after a transformation
"""

from __future__ import annotations

import torch

from ._engine import ACTIVATIONS, Layout

DEFAULT_GAIN = 10.0


# --------------------------------------------------------------------- helpers
def _n_params(sizes):
    """Parameters of one member with full ``sizes (F, H..., O)``."""
    return Layout(tuple(sizes)).n_params


def _check_flat(flat, sizes):
    """Validate one member's row ``flat (P,)`` against ``sizes``; return sizes as ints."""
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes must be (F, H..., O) of positive ints, got {sizes}.")
    if flat.dim() != 1:
        raise ValueError(f"flat must be one member's row (P,), got shape {tuple(flat.shape)}.")
    if flat.numel() != _n_params(sizes):
        raise ValueError(f"flat has {flat.numel()} parameters, sizes {sizes} need "
                         f"{_n_params(sizes)}.")
    return sizes


def _split(flat, sizes):
    """Per affine layer ``(W (fan_in, fan_out), b (fan_out,))`` views of ``flat (P,)``."""
    layers = []
    for (w0, b0, end), fi, fo in zip(Layout(sizes).offsets, sizes[:-1], sizes[1:], strict=True):
        layers.append((flat[w0:b0].view(fi, fo), flat[b0:end]))
    return layers


def _join(layers):
    """Inverse of :func:`_split`: a fresh contiguous row ``(P,)``."""
    return torch.cat([t for W, b in layers for t in (W.reshape(-1), b)])


def _cpu_or(generator):
    """Device random numbers are drawn on: the generator's (CPU when none is given)."""
    return generator.device if generator is not None else torch.device("cpu")


# ----------------------------------------------------------- mother architecture
def mother_architecture(archs):
    """Largest hidden architecture every member of ``archs`` can be grown from.

    Parameters
    ----------
    archs : sequence of tuple of int
        Hidden-layer widths of each member (without input and output sizes).

    Returns
    -------
    tuple of int
        As many hidden layers as the shallowest member (depth ``d``). Layer ``i < d - 1``
        is the narrowest member's layer ``i``. The last layer ``d - 1`` is the narrowest
        of every member's layers ``d - 1, d, ...``: a member's extra layers are inserted
        as copies of the mother's last hidden layer (width ``H_{d-1}``) and widening can
        only add units, so ``H_{d-1}`` must not exceed any of them. E.g.
        ``[(64, 8), (32,)] -> (8,)``, ``[(64, 32), (32, 16, 8)] -> (32, 8)``.
    """
    archs = [tuple(int(h) for h in a) for a in archs]
    if not archs:
        raise ValueError("archs must hold at least one architecture.")
    d = min(len(a) for a in archs)
    if d == 0:
        return ()
    mother = [min(a[i] for a in archs) for i in range(d - 1)]
    mother.append(min(min(a[d - 1:]) for a in archs))
    return tuple(mother)


def shared_fraction(a, b, n_features, n_outputs):
    """Parameters of the MotherNet of ``a`` and ``b`` over those of the larger of the two.

    1 for identical architectures, smaller the less of the larger network the mother
    accounts for; ``1 - shared_fraction`` is the distance :func:`cluster_architectures`
    clusters on.
    """
    n_in, n_out = int(n_features), int(n_outputs)
    mother = _n_params((n_in, *mother_architecture([a, b]), n_out))
    larger = max(_n_params((n_in, *a, n_out)), _n_params((n_in, *b, n_out)))
    return mother / larger


def cluster_architectures(archs, n_clusters, n_features, n_outputs):
    """Group members whose architectures share most parameters (one MotherNet per group).

    Agglomerative clustering, average linkage, on the precomputed distance
    ``1 - shared_fraction``. Distance 0 only between identical architectures, so those
    merge before anything else.

    Parameters
    ----------
    archs : sequence of tuple of int, length E
        Hidden-layer widths of each member.
    n_clusters : int
        1: one mother for all; E: every member its own cluster (plain independent
        training, even for identical architectures).

    Returns
    -------
    labels : ndarray (E,) int64
        Cluster of each member, numbered by first appearance in member order.
    """
    import numpy as np

    archs = [tuple(int(h) for h in a) for a in archs]
    E, k = len(archs), int(n_clusters)
    if E == 0:
        raise ValueError("archs must hold at least one architecture.")
    if not 1 <= k <= E:
        raise ValueError(f"n_clusters must be in [1, {E}] (the number of members), got {k}.")
    if k == 1:
        return np.zeros(E, dtype=np.int64)
    if k == E:
        return np.arange(E, dtype=np.int64)
    from sklearn.cluster import AgglomerativeClustering

    dist = np.zeros((E, E))  # (E, E), symmetric, zero diagonal
    for i in range(E):
        for j in range(i + 1, E):
            dist[i, j] = dist[j, i] = 1.0 - shared_fraction(archs[i], archs[j],
                                                            n_features, n_outputs)
    raw = AgglomerativeClustering(n_clusters=k, metric="precomputed",
                                  linkage="average").fit(dist).labels_
    # sklearn's numbering is arbitrary; first appearance makes labels stable and readable.
    first = {}
    return np.array([first.setdefault(r, len(first)) for r in raw], dtype=np.int64)


# ------------------------------------------------------------ transformations
def widen(flat, sizes, layer, new_width, generator=None):
    """Net2WiderNet: grow hidden layer ``layer`` to ``new_width`` units, same function.

    Unit ``j`` of the wider layer copies unit ``g(j)``: ``g`` is the identity on the
    first ``h`` units, uniform over the original ``h`` for the others (drawn from
    ``generator``). Incoming weights and biases are copied; each outgoing weight row is
    divided by ``|g^{-1}(g(j))|``, the number of units copying the same original, so the
    next layer sees the same sum. Exact for any elementwise activation.

    Parameters
    ----------
    flat : Tensor (P,)
    sizes : tuple (F, H..., O)
    layer : int
        Hidden layer, 0-based.
    new_width : int
        ``h2 >= h``.
    generator : torch.Generator or None

    Returns
    -------
    flat2 : Tensor (P2,), same dtype and device
    sizes2 : tuple
    """
    sizes = _check_flat(flat, sizes)
    n_hidden = len(sizes) - 2
    if not 0 <= layer < n_hidden:
        raise ValueError(f"layer must be a hidden layer in [0, {n_hidden}), got {layer}.")
    h, h2 = sizes[layer + 1], int(new_width)
    if h2 < h:
        raise ValueError(f"new_width {h2} is narrower than the layer ({h}); cannot shrink.")
    extra = torch.randint(0, h, (h2 - h,), generator=generator, device=_cpu_or(generator))
    g = torch.cat([torch.arange(h, device=extra.device), extra]).to(flat.device)  # (h2,)
    counts = torch.bincount(g, minlength=h).to(flat.dtype)  # (h,) copies of each original
    layers = _split(flat, sizes)
    W_in, b_in = layers[layer]  # (fan_in, h), (h,)
    W_out, b_out = layers[layer + 1]  # (h, fan_out), (fan_out,)
    layers[layer] = (W_in[:, g], b_in[g])  # (fan_in, h2), (h2,)
    layers[layer + 1] = (W_out[g] / counts[g].unsqueeze(1), b_out)  # (h2, fan_out)
    sizes2 = sizes[: layer + 1] + (h2,) + sizes[layer + 2:]
    return _join(layers), sizes2


def deepen(flat, sizes, after_layer, activation, *, gain=DEFAULT_GAIN):
    """Net2DeeperNet: insert a hidden layer of the same width after hidden layer ``after_layer``.

    relu and identity: the new layer is the identity (``W = I``, ``b = 0``), exact
    because ``relu(a) = a`` for the already non-negative ``a``.

    tanh and logistic: no single elementwise tanh/logistic layer can be the identity,
    so the new layer works in the activation's linear regime and the next layer undoes
    its slope. With ``c = gain``:

    - tanh: ``W = I / c``, ``b = 0``; next layer's weights ``* c``. It carries
      ``c * tanh(a / c)`` instead of ``a``; error ``<= |a|^3 / (3 c^2) <= 1 / (3 c^2)``
      per unit. ``gain=1`` is plain identity insertion (error up to ``1 - tanh(1)``,
      0.24).
    - logistic: ``W = (4 / c) I``, ``b = -2 / c`` (pre-activation ``(4/c)(a - 1/2)``
      centred on the steepest point); next layer's weights ``* c`` and bias
      ``+ (1 - c) / 2 * colsum(W_next)``. It carries ``1/2 + (c/2) tanh((2/c)(a - 1/2))``
      instead of ``a``; error ``<= 4 |a - 1/2|^3 / (3 c^2) <= 1 / (6 c^2)`` per unit.

    The default ``c = 10`` bounds the per-unit error by 3.3e-3 (tanh) and 1.7e-3
    (logistic), typically far below (``|a|`` is rarely near 1), while scaling the next
    layer's weights by only 10; larger ``c`` is more exact but leaves a badly scaled
    pair of layers to train (tiny new weights, large next weights). Inserting again at
    the same place does not compound the scale: the earlier inserted layer absorbs the
    factor (its weights become ``I`` for tanh, ``4 I`` and bias ``-2`` for logistic).

    Parameters
    ----------
    flat : Tensor (P,)
    sizes : tuple (F, H..., O)
    after_layer : int
        Hidden layer, 0-based, that feeds the new layer.
    activation : {"identity", "logistic", "tanh", "relu"}
    gain : float, default=10.0
        ``c`` above; unused for relu and identity.

    Returns
    -------
    flat2 : Tensor (P2,), same dtype and device
    sizes2 : tuple, with ``H_{after_layer}`` repeated
    """
    sizes = _check_flat(flat, sizes)
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}.")
    n_hidden = len(sizes) - 2
    if not 0 <= after_layer < n_hidden:
        raise ValueError(f"after_layer must be a hidden layer in [0, {n_hidden}), got "
                         f"{after_layer} (a network without hidden layers cannot be deepened "
                         "function-preservingly).")
    c = float(gain)
    if not c > 0:
        raise ValueError(f"gain must be positive, got {gain}.")
    h = sizes[after_layer + 1]
    layers = _split(flat, sizes)
    eye = torch.eye(h, dtype=flat.dtype, device=flat.device)  # (h, h)
    zero = torch.zeros(h, dtype=flat.dtype, device=flat.device)  # (h,)
    W_next, b_next = layers[after_layer + 1]  # (h, fan_out), (fan_out,)
    if activation in ("relu", "identity"):
        new = (eye, zero)
    elif activation == "tanh":
        new = (eye / c, zero)
        W_next = W_next * c
    else:
        # s = sigmoid((4/c)(a - 1/2)) ~ 1/2 + (a - 1/2)/c, so a ~ c s + (1 - c)/2.
        new = (eye * (4.0 / c), zero - 2.0 / c)
        b_next = b_next + 0.5 * (1.0 - c) * W_next.sum(0)
        W_next = W_next * c
    layers[after_layer + 1] = (W_next, b_next)
    layers.insert(after_layer + 1, new)
    sizes2 = sizes[: after_layer + 2] + (h,) + sizes[after_layer + 2:]
    return _join(layers), sizes2


def hatch(mother_flat, mother_sizes, member_sizes, activation, noise, generator=None, *,
          gain=DEFAULT_GAIN):
    """Grow a member of architecture ``member_sizes`` from the trained mother.

    Deepen to the member's depth (new layers inserted after the mother's last hidden
    layer, see :func:`deepen`), widen every hidden layer to the member's width (see
    :func:`widen`), then add noise to break the symmetry between copied units: every
    parameter of affine layer ``l`` (weights and bias) gets ``N(0, (noise * std(W_l))^2)``,
    ``std(W_l)`` the standard deviation of that grown layer's weights, so the noise is
    relative to each layer's own scale. ``noise=0`` returns the mother's function
    (exactly for relu and identity; for tanh and logistic exactly when no layer is
    inserted, otherwise up to :func:`deepen`'s bound).

    Parameters
    ----------
    mother_flat : Tensor (P,)
    mother_sizes, member_sizes : tuple (F, H..., O)
        Same F and O; the member at least as deep, and every hidden layer at least as
        wide as the mother layer it grows from (its extra layers from the mother's last).
    activation : {"identity", "logistic", "tanh", "relu"}
    noise : float
    generator : torch.Generator or None
        Draws the widening maps, then the noise.
    gain : float, default=10.0

    Returns
    -------
    member_flat : Tensor (P_member,), same dtype and device
    """
    sizes = _check_flat(mother_flat, mother_sizes)
    target = tuple(int(s) for s in member_sizes)
    if len(target) < 2 or target[0] != sizes[0] or target[-1] != sizes[-1]:
        raise ValueError(f"member sizes {target} must share input and output sizes with the "
                         f"mother {sizes}.")
    d, D = len(sizes) - 2, len(target) - 2
    if D < d:
        raise ValueError(f"member {target} is shallower than the mother {sizes}.")
    if d == 0 and D > 0:
        raise ValueError("a mother without hidden layers cannot be deepened "
                         "function-preservingly.")
    grown_from = list(sizes[1:-1]) + [sizes[-2]] * (D - d)  # mother width behind each layer
    if any(t < m for t, m in zip(target[1:-1], grown_from, strict=True)):
        raise ValueError(f"member {target} is narrower than the mother {sizes} somewhere; "
                         "use mother_architecture to build a mother every member can grow from.")
    if noise < 0:
        raise ValueError(f"noise must be non-negative, got {noise}.")

    flat = mother_flat
    for _ in range(D - d):
        # Same place every time: the previously inserted layer absorbs the new gain.
        flat, sizes = deepen(flat, sizes, d - 1, activation, gain=gain)
    for i in range(D):
        if target[i + 1] > sizes[i + 1]:
            flat, sizes = widen(flat, sizes, i, target[i + 1], generator)
    flat = flat.clone() if flat is mother_flat else flat
    if noise > 0:
        scale = torch.empty_like(flat)  # (P2,) noise std of each parameter
        for (w0, _, end), (W, _) in zip(Layout(sizes).offsets, _split(flat, sizes), strict=True):
            scale[w0:end] = noise * (W.std() if W.numel() > 1 else W.abs().reshape(()))
        eps = torch.randn(flat.shape, generator=generator, dtype=flat.dtype,
                          device=_cpu_or(generator))
        flat = flat + scale * eps.to(flat.device)
    return flat
