"""MotherNets: train one small network per cluster of architectures, hatch every member.

Owns: clustering the members' architectures, training the MotherNets (through
:func:`skensemble._training.train_group`, with early stopping on a held-out fraction) and
growing every member from its MotherNet by function-preserving widening and deepening
(:mod:`._growth`). Must not validate user input or touch the estimator: it receives the
standardised data and returns initial parameters plus a record of what it did.

Reference: Wasay et al., "MotherNets: Rapid Deep Ensemble Learning", MLSys 2020.
"""

from dataclasses import dataclass, replace

import numpy as np
import torch

from . import _groups, _growth, _sampling, _training


@dataclass
class Hatching:
    """What MotherNets training did (stored on the estimator as ``mothernet_*_``)."""

    hidden_layer_sizes: list  # architecture of each MotherNet
    labels: np.ndarray  # (E,) cluster of each member
    n_iter: np.ndarray  # (K,) epochs each MotherNet trained
    fit_time: float


def hatch(Xs, Y, sw, archs, seeds, encoding, *, n_mothernets, noise, validation_fraction,
          stratify, activation, hyper, config, device, member_score=None):
    """Initial parameters of every member, grown from trained MotherNets.

    Parameters
    ----------
    Xs : ndarray (N, F) float32
        Scaled training values (all features: MotherNets see every feature).
    Y : ndarray (N, O) float32
        Encoded targets.
    sw : ndarray (N,) or None
        Row weights (they weight the MotherNets' losses).
    archs : list of tuple
        Hidden widths of each member to hatch.
    seeds : ndarray (E,) int64
        The members' seeds; the first also seeds the MotherNets, the rest the noise.
    encoding : skensemble._inputs.Encoding
        The encoded space the first layers read (every column: values and bins).
    n_mothernets : int
        Number of clusters (MotherNets).
    noise : float
        Relative noise added to hatched weights (breaks symmetry between members).
    validation_fraction : float
        Held-out fraction for the MotherNets' early stopping (when >= 2 rows).
    stratify : ndarray (N,) or None
        Labels to stratify the hold-out by.
    hyper, config, device
        How the MotherNets train (``config.stop`` is honoured; no bootstrap).

    Returns
    -------
    rows : list of ndarray (P_e,)
        Each member's initial parameters at its own layout.
    hatching : Hatching
    """
    N = Xs.shape[0]
    F = encoding.n_columns  # first-layer inputs: every value and bin
    O = Y.shape[1]
    if n_mothernets > len(archs):
        raise ValueError(
            f"n_mothernets={n_mothernets} is larger than the number of members to "
            f"train ({len(archs)})."
        )
    labels = _growth.cluster_architectures(archs, n_mothernets, F, O)
    mothers = [
        _growth.mother_architecture([a for a, lab in zip(archs, labels) if lab == k])
        for k in range(n_mothernets)
    ]
    if any(len(m) == 0 for m in mothers):
        raise ValueError("init='mothernet' needs members with at least one hidden layer.")

    # The MotherNets' own seeds and hold-out, from the first member's seed.
    rng = np.random.RandomState(int(seeds[0]) ^ 0x5EED)
    mother_seeds = _sampling.draw_seeds(rng, n_mothernets)
    order_seed = int(rng.randint(_sampling.MAX_SEED))
    holdout = validation_fraction if N * validation_fraction >= 2 else None
    n_held = int(np.ceil(holdout * N)) if holdout else 0
    plan = _sampling.Plan(N, Xs.shape[1], N - n_held, Xs.shape[1], bootstrap=False,
                          bootstrap_features=False, holdout=holdout)
    rows, held, _ = _sampling.member_samples(mother_seeds, plan, None, stratify)
    val_mask = None if held is None else _sampling.held_mask(held, N)
    init = _groups.random_rows(mothers, [_sampling.init_seed(s) for s in mother_seeds],
                                 F, O, activation)
    groups = _groups.make_groups(init, mothers, np.arange(n_mothernets), F, O, activation)
    # Every MotherNet hatches members: successive halving (``prune``) is for the members.
    config = replace(config, prune=False)
    trained, n_iter, seconds = [], np.zeros(n_mothernets, dtype=np.int64), 0.0
    for k, g in enumerate(groups):
        data = _training.Data(
            X=Xs, Y=Y, rows=rows[g.members], loss_weight=sw, encoding=encoding,
            val_mask=None if val_mask is None else val_mask[g.members], val_weight=sw,
        )
        group, history, _ = _training.train_group(g, data, hyper, config, device,
                                                  seed=order_seed + k, member_score=member_score)
        trained.append(group)
        n_iter[g.members] = history.n_iter
        seconds += history.seconds

    out = []
    for arch, lab, seed in zip(archs, labels, seeds):  # set-up: one hatch per member
        mother_sizes = (F, *mothers[lab], O)
        row = next(r for r in (g.member_row(int(lab), mother_sizes) for g in trained)
                   if r is not None)
        gen = torch.Generator().manual_seed(_sampling.init_seed(seed))
        out.append(_growth.hatch(torch.from_numpy(row), mother_sizes, (F, *arch, O),
                                 activation, noise, gen).numpy())
    return out, Hatching(mothers, labels, n_iter, seconds)

