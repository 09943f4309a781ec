"""Per-member randomness: seeds, rows, features, hold-out rows.

Every member owns an integer seed (drawn once from ``random_state``, as scikit-learn's
bagging does). Its initial weights, its rows, its features and its validation rows are
functions of that seed alone, so they are recomputed on demand (``estimators_samples_``)
and do not depend on which engine or device trains, nor on the other members (warm
start adds members without disturbing the old ones).

Owns: member seeds, each member's rows, hold-out rows and features, and the masks derived
from them; the keyed per-member permutation (:func:`keyed_order`) that the training loop
draws each epoch's visiting order with on a CUDA device. Must not train or decide when
to shuffle (per-epoch orders belong to the training loop,
:func:`skensemble._training.epoch_order`).
"""

from dataclasses import dataclass, replace
from numbers import Integral

import numpy as np
import torch

MAX_SEED = np.iinfo(np.int32).max


def draw_seeds(rng, n):
    """``n`` member seeds from a ``numpy.random.RandomState``; int64 array ``(n,)``."""
    return rng.randint(MAX_SEED, size=n).astype(np.int64)


def init_seed(seed):
    """Seed of a member's weight initialisation, decorrelated from its sampling seed."""
    return int(np.random.SeedSequence([int(seed), 0]).generate_state(1)[0])


def count(value, total, name):
    """``max_samples``/``max_features`` (a count or a fraction) as a count out of ``total``."""
    if isinstance(value, Integral) and not isinstance(value, bool):
        if value > total:
            raise ValueError(
                f"{name}={value} is larger than the {total} available; pass a fraction "
                "in (0, 1] or a smaller count."
            )
        return int(value)
    return max(1, int(value * total))


@dataclass(frozen=True)
class Plan:
    """How members sample, fixed for a fit.

    Attributes
    ----------
    n_samples, n_features : int
        Size of the training data.
    n_draw : int
        Rows per member (M).
    n_feat : int
        Features per member (k).
    bootstrap, bootstrap_features : bool
        Draw rows / features with replacement.
    holdout : float or None
        Fraction of rows each member holds out for early stopping (no bootstrap).
    """

    n_samples: int
    n_features: int
    n_draw: int
    n_feat: int
    bootstrap: bool
    bootstrap_features: bool
    holdout: float = None

    @property
    def n_pool(self):
        """Rows a member may draw from: all but the rows it holds out."""
        if self.holdout is None:
            return self.n_samples
        # as train_test_split rounds a fractional test_size: up
        return self.n_samples - int(np.ceil(self.holdout * self.n_samples))

    @property
    def all_features(self):
        """Whether every member reads every feature, in order (no feature subsets)."""
        return self.n_feat == self.n_features and not self.bootstrap_features


def _holdout(seed, n_samples, fraction, stratify):
    """Rows member ``seed`` holds out for validation (stratified where possible)."""
    idx = np.arange(n_samples)
    if stratify is not None:
        classes, counts = np.unique(stratify, return_counts=True)
        n_held = int(np.ceil(fraction * n_samples))
        # Stratifying needs two rows of every class, and room for each class on both sides.
        if counts.min() < 2 or n_held < classes.size or n_samples - n_held < classes.size:
            stratify = None
    # imported here: the training loop reads keyed_order and runs without scikit-learn
    from sklearn.model_selection import train_test_split

    _, held = train_test_split(
        idx, test_size=fraction, random_state=int(seed) % MAX_SEED, stratify=stratify
    )
    return np.sort(held)


def member_sample(seed, plan, weight=None, stratify=None):
    """One member's rows ``(M,)``, hold-out rows (or None) and features ``(k,)``.

    Parameters
    ----------
    seed : int
    plan : Plan
    weight : ndarray (n_samples,) or None
        With bootstrap, rows are drawn with probability proportional to ``weight``
        (scikit-learn's frequency semantics); otherwise it is not used here.
    stratify : ndarray or None
        Labels to stratify the hold-out split by (classification).
    """
    rng = np.random.default_rng([int(seed), 1])
    pool = np.arange(plan.n_samples)
    held = None
    if plan.holdout is not None:
        held = _holdout(rng.integers(MAX_SEED), plan.n_samples, plan.holdout, stratify)
        pool = np.setdiff1d(pool, held, assume_unique=True)
    if plan.bootstrap:
        p = None
        if weight is not None:
            p = weight[pool] / weight[pool].sum()
        rows = pool[rng.choice(pool.size, size=plan.n_draw, replace=True, p=p)]
    elif plan.n_draw >= pool.size:
        rows = pool
    else:
        rows = np.sort(rng.choice(pool, size=plan.n_draw, replace=False))
    frng = np.random.default_rng([int(seed), 2])
    if plan.bootstrap_features:
        feats = frng.integers(0, plan.n_features, size=plan.n_feat)
    elif plan.n_feat >= plan.n_features:
        feats = np.arange(plan.n_features)
    else:
        feats = np.sort(frng.choice(plan.n_features, size=plan.n_feat, replace=False))
    return rows.astype(np.int64), held, feats.astype(np.int64)


def member_samples(seeds, plan, weight=None, stratify=None, n_draws=None):
    """Stacked :func:`member_sample` of every seed.

    Parameters
    ----------
    n_draws : array-like (E,) of int or None
        Each member's own number of rows (``member_params['max_samples']``), at most
        ``plan.n_draw``; None: ``plan.n_draw`` for all. A member that draws fewer rows
        has them repeated, in order, up to ``plan.n_draw``: every member's row array
        has the same length M, so that all train as one stacked computation, and a
        member with a smaller sample passes over it more than once per epoch. Its first
        ``n_draws[e]`` entries are its sample.

    Returns
    -------
    rows : ndarray (E, M) int64
    held : list of ndarray or None
    feats : ndarray (E, k) int64
    """
    # Set-up only: E draws, each of M integers, before any training.
    if n_draws is None:
        out = [member_sample(s, plan, weight, stratify) for s in seeds]
        rows = np.stack([o[0] for o in out])
    else:
        out = [member_sample(s, replace(plan, n_draw=int(n)), weight, stratify)
               for s, n in zip(seeds, n_draws)]
        rows = np.stack([np.resize(o[0], plan.n_draw) for o in out])  # repeated to M
    feats = np.stack([o[2] for o in out])
    held = None if plan.holdout is None else [o[1] for o in out]
    return rows, held, feats


def in_bag_mask(rows, n_samples):
    """Boolean ``(E, n_samples)``: whether member e trained on row i."""
    mask = np.zeros((rows.shape[0], n_samples), dtype=bool)
    mask[np.arange(rows.shape[0])[:, None], rows] = True
    return mask


def held_mask(held, n_samples):
    """Boolean ``(E, n_samples)``: whether member e holds row i out (its validation rows)."""
    mask = np.zeros((len(held), n_samples), dtype=bool)
    for e, h in enumerate(held):  # set-up: one assignment per member
        mask[e, h] = True
    return mask


def call_seeds(seeds, call):
    """Per-member seeds of the ``call``-th partial_fit: independent streams, no ``hash()``."""
    return np.array([np.random.SeedSequence([int(s), int(call)]).generate_state(1)[0]
                     % MAX_SEED for s in seeds], dtype=np.int64)


# ------------------------------------------------------------- keyed visiting orders
def _signed(c):
    """A 64-bit constant as the int64 with the same bits."""
    return c - (1 << 64) if c >= 1 << 63 else c


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_M1, _M2 = _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB)


def _shr(z, k):
    """Logical right shift of int64 ``z`` by ``k`` (torch's ``>>`` is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _mix(z):
    """SplitMix64's finalizer on an int64 tensor: a bijection of 64-bit words.

    Integer products wrap modulo 2**64 on the CPU and on CUDA alike, so it gives the same
    bits on every device.
    """
    z = (z ^ _shr(z, 30)) * _M1
    z = (z ^ _shr(z, 27)) * _M2
    return z ^ _shr(z, 31)


def order_keys(seed, members):
    """Each member's key for :func:`keyed_order`: int64 ``(E,)``.

    Seeded by ``(seed, members[e])`` alone (``members``: positions in the ensemble), so a
    member's orders do not depend on which others train beside it (``n_jobs`` chunks).
    """
    return np.array([np.random.SeedSequence([int(seed), int(m), 1]).generate_state(
        1, dtype=np.uint64)[0] for m in members], dtype=np.uint64).view(np.int64)


def keyed_order(rows, keys, epoch):
    """Epoch ``epoch``'s visiting order of every member, drawn where ``rows`` lives.

    Member e's stream is SplitMix64 keyed by ``keys[e]`` and the epoch: visit j gets the
    random 64-bit word ``mix(mix(keys[e] ^ mix(epoch)) + (j + 1) * golden)`` and the
    visits are sorted by their words (stably). Every permutation of a member's visits is
    equally likely (up to ties of 64-bit words), as with the CPU's order, and a member's
    order depends on its key, the epoch and its rows only. It is a pure function of
    integers, so the order drawn on a CUDA device equals the order drawn by this
    function on the CPU bit for bit; it is *not* the CPU engines' order
    (:func:`skensemble._training.epoch_order`, from each member's ``torch.Generator``),
    which a device cannot draw without a host sort per epoch, so a fit on CUDA visits
    the rows in another order than the same fit on the CPU.

    Parameters
    ----------
    rows : Tensor (E, M) int64
    keys : Tensor (E,) int64 on ``rows``' device (:func:`order_keys`)
    epoch : int

    Returns
    -------
    Tensor (E, M) int64 on ``rows``' device: ``rows`` permuted within each member.
    """
    E, M = rows.shape
    stream = _mix(keys ^ _mix(torch.tensor(int(epoch), dtype=torch.int64))).view(E, 1)  # (E, 1)
    visit = torch.arange(1, M + 1, dtype=torch.int64, device=rows.device) * _GOLDEN  # (M,)
    words = _mix(stream + visit)  # (E, M) one random word per visit
    return torch.gather(rows, 1, torch.argsort(words, dim=1, stable=True))  # (E, M)
