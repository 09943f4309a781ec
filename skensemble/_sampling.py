"""Per-member randomness: seeds, bootstrap rows, per-epoch orders.

Every member owns an integer seed (drawn once from ``random_state``, as scikit-learn's
bagging does). Its initial weights and its rows are functions of that seed alone, so
they can be recomputed on demand and do not depend on which engine or device trains.
Per-epoch shuffles come from one ``torch.Generator`` for the whole ensemble and are
drawn for all members at once.
"""

import numpy as np
import torch

MAX_SEED = np.iinfo(np.int32).max


def draw_seeds(rng, n):
    """``n`` member seeds from a ``numpy.random.RandomState``; int64 array ``(n,)``."""
    return rng.randint(MAX_SEED, size=n).astype(np.int64)


def init_seed(seed):
    """Seed of a member's weight initialisation, decorrelated from its sampling seed."""
    return int(np.random.SeedSequence([int(seed), 0]).generate_state(1)[0])


def member_rows(seeds, n_samples, n_draw, bootstrap):
    """Rows each member trains on, ``(E, n_draw)`` int64.

    ``bootstrap=True`` draws with replacement; otherwise a subsample without
    replacement (all rows, in index order, when ``n_draw == n_samples``).
    """
    rows = np.empty((len(seeds), n_draw), dtype=np.int64)
    for e, seed in enumerate(seeds):  # set-up only: E draws of n_draw integers
        rng = np.random.default_rng([int(seed), 1])
        if bootstrap:
            rows[e] = rng.integers(0, n_samples, size=n_draw)
        elif n_draw == n_samples:
            rows[e] = np.arange(n_samples)
        else:
            rows[e] = np.sort(rng.choice(n_samples, size=n_draw, replace=False))
    return rows


def epoch_order(rows, generator, shuffle):
    """This epoch's visiting order for every member.

    Parameters
    ----------
    rows : Tensor (E, M) int64
        Each member's rows (on the CPU).
    generator : torch.Generator (CPU)
    shuffle : bool

    Returns
    -------
    Tensor (E, M) int64: ``rows`` permuted independently within each member.
    """
    if not shuffle:
        return rows
    keys = torch.rand(rows.shape, generator=generator)  # (E, M) one key per visit
    return torch.gather(rows, 1, torch.argsort(keys, dim=1))  # (E, M)
