"""Ensemble selection: bagged greedy forward selection with replacement (Caruana et al.).

:func:`greedy` runs plain forward selection (Caruana et al., 2004) on bootstrap
resamples of the validation rows and averages the weights. Owns the choice of member
weights from the members' predictions on their validation rows, and the validation loss
of a weighted ensemble on those rows. Pure numpy: no torch, no scikit-learn; the
estimators' :class:`~skensemble._heldout.HeldOutRows` mixin runs the members and says
which rows validate which member, the task classes say what a
member contributes to a row and the loss of a row.

Every member has its own validation rows (the rows it held out to stop on, or its
out-of-bag rows), so most rows are predicted by some members only. A weighted ensemble
with member weights ``w`` (summing to 1) is scored on every row that some member
validates on; on each row, the members that do not validate on it are replaced by the
row's validation average ``m_i`` (the plain mean of the members that do: bagging's
out-of-bag prediction)::

    W_i    = sum(w[e] for e in A_i)
    p_i(w) = sum(w[e] * v[e, i] for e in A_i) + (1 - W_i) * m_i
    L(w)   = sum_i s_i loss(p_i(w), y_i) / sum_i s_i

with ``A_i`` the members validating on row ``i``, ``v[e, i]`` their predictions and
``s_i`` the sample weights. So ``p_i = m_i + sum(w[e] * (v[e, i] - m_i) for e in
A_i)``: weight on a member moves the rows it validates on from their validation average
towards its own prediction, and is judged by whether that helps. The uniform average
scores exactly the out-of-bag (or held-out) average's loss; where every member validates
on every row, ``L`` is the plain loss of the weighted ensemble. (Scoring each row by the
weighted mean of its validating members alone judges thinned ensembles, a member or
two per row under a 10% hold-out: it preferred single members and lost to the uniform
average on new data by up to 40% in our trials; this rule did not collapse so.)
Members with no validation row are never selected.

Shape legend: E members, N rows (the rows some member validates on), D values per
entry (a regression's outputs; 1 for a classifier's probability of the true class),
Z validation entries (member, row) in all.
"""

from dataclasses import dataclass

import numpy as np

# The selection replaces the uniform average only when better by more than rounding: its
# loss must be below uniform's by this relative margin (ties, e.g. identical members,
# keep every member).
MARGIN = 1e-9
#: Bootstrap resamples of the validation rows that the selection runs on (see :func:`greedy`).
N_BAGS = 20


@dataclass(frozen=True)
class Entries:
    """Members' predictions on their own validation rows, as a sparse (member, row) list.

    Attributes
    ----------
    member, row : ndarray (Z,) int64
        Which member predicted which row (``row`` indexes the ``N`` scored rows).
    values : ndarray (Z, D) float64
        What the member contributes to the row's average.
    row_weight : ndarray (N,) float64
        Each row's sample weight.
    n_members : int
        E: members with no entry are never selected.
    """

    member: np.ndarray
    row: np.ndarray
    values: np.ndarray
    row_weight: np.ndarray
    n_members: int


@dataclass(frozen=True)
class Selection:
    """The result: member weights ``(E,)`` summing to 1, and both validation losses."""

    weights: np.ndarray
    score: float
    uniform_score: float


def validation_means(entries):
    """Each row's plain mean of the values of the members validating on it: ``(N, D)``."""
    N, D = entries.row_weight.size, entries.values.shape[1]
    total = np.zeros((N, D))
    np.add.at(total, entries.row, entries.values)
    count = np.bincount(entries.row, minlength=N)  # (N,) >= 1: every row has an entry
    return total / count[:, None]


def ensemble_loss(entries, weights, row_loss):
    """Validation loss ``L(w)`` of the ensemble weighted ``weights (E,)`` (any scale)."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    N = entries.row_weight.size
    mean = validation_means(entries)  # (N, D)
    W = np.bincount(entries.row, w[entries.member], minlength=N)  # (N,)
    pred = (1 - W)[:, None] * mean  # (N, D)
    np.add.at(pred, entries.row, w[entries.member, None] * entries.values)
    loss = row_loss(pred, np.arange(N))  # (N,)
    return float((entries.row_weight * loss).sum() / entries.row_weight.sum())


def forward(entries, n_rounds, row_loss):
    """Plain greedy forward selection with replacement: the counts of its best round.

    Starts from the empty ensemble and, ``n_rounds`` times, adds (again) the member that
    lowers :func:`ensemble_loss` most. Returns the counts ``(E,)`` of the round with the
    lowest loss (Caruana et al.'s advice: later rounds may only add noise), or None when
    no member has a row of positive weight.

    Parameters
    ----------
    entries : Entries
    n_rounds : int
    row_loss : callable
        ``row_loss(pred (n, D), rows (n,)) -> (n,)``: the loss of predictions of rows
        ``rows`` (indices into the ``N`` scored rows).
    """
    E, N = entries.n_members, entries.row_weight.size
    s, member, row, values = entries.row_weight, entries.member, entries.row, entries.values
    if not s.sum() > 0:
        return None
    mean = validation_means(entries)  # (N, D)
    away = values - mean[row]  # (Z, D): what a member changes on its rows, per unit weight
    all_rows = np.arange(N)
    # With counts c summing to T, every row's prediction is Q_i / T, where
    # Q_i = sum(c[e] * v[e, i] for e in A_i) + (T - C_i) * m_i (C_i: counts on the row).
    # One more of member e makes it (Q_i + m_i + [i in A_e] * (v[e, i] - m_i)) / (T + 1):
    # a shared base, plus a change on e's rows only.
    Q = np.zeros_like(mean)  # (N, D)
    counts = np.zeros(E, dtype=np.int64)
    can = np.bincount(member, s[row], minlength=E) > 0  # members with a (weighted) row
    best, best_counts = np.inf, None
    for T in range(int(n_rounds)):
        base = (Q + mean) / (T + 1)  # (N, D)
        base_loss = row_loss(base, all_rows)  # (N,)
        trial_loss = row_loss(base[row] + away / (T + 1), row)  # (Z,)
        change = np.bincount(member, s[row] * (trial_loss - base_loss[row]),
                             minlength=E)  # (E,)
        trial = np.where(can, (s @ base_loss + change) / s.sum(), np.inf)  # (E,)
        e = int(np.argmin(trial))  # ties: the lowest index, so the result is deterministic
        if not np.isfinite(trial[e]):
            break
        counts[e] += 1
        Q += mean
        mine = member == e
        Q[row[mine]] += away[mine]
        if trial[e] < best:
            best, best_counts = trial[e], counts.copy()
    return best_counts


def _subset(entries, factor, row_loss):
    """The rows of positive ``factor (N,)``, their weights multiplied by it.

    Returns the entries of those rows (renumbered ``0..n-1``) and the row loss that
    maps the new row numbers back to the old ones.
    """
    keep = np.flatnonzero(factor > 0)  # (n,)
    renumber = np.full(factor.size, -1, dtype=np.int64)
    renumber[keep] = np.arange(keep.size)
    z = factor[entries.row] > 0  # (Z,)
    sub = Entries(entries.member[z], renumber[entries.row[z]], entries.values[z],
                  entries.row_weight[keep] * factor[keep], entries.n_members)
    return sub, lambda pred, rows: row_loss(pred, keep[rows])


def greedy(entries, n_rounds, row_loss, n_bags=N_BAGS, seed=0):
    """Ensemble selection, bagged over rows and checked on rows it did not see.

    Plain :func:`forward` selection on one validation set overfits it: in our trials
    on ten members it kept one to three of them and lost to the uniform average on new
    data, by up to 10% log-loss (``benchmarks/bench_selection.py``). So it runs
    ``n_bags`` times, each time on the rows resampled with Poisson(1) counts (a
    bootstrap), and the member weights are the mean of the runs' weights (bagged
    ensemble selection). Each run is also scored on the rows its resample left out,
    against the uniform average on the same rows; unless the runs win there in total,
    the uniform average is kept. Last, the bagged weights must beat the uniform average
    on all validation rows (by more than :data:`MARGIN`, relative), so the result is
    never worse than uniform on them.

    ``n_bags=0`` is plain forward selection on all rows, with the last check only.

    Parameters
    ----------
    entries : Entries
    n_rounds : int
        Rounds of each forward selection.
    row_loss : callable
        ``row_loss(pred (n, D), rows (n,)) -> (n,)``, as for :func:`forward`.
    n_bags : int
    seed : int or numpy SeedSequence
        Seeds the resampling, so the result is reproducible.

    Returns
    -------
    Selection
    """
    E, N = entries.n_members, entries.row_weight.size
    uniform_w = np.full(E, 1.0 / E)
    uniform = ensemble_loss(entries, uniform_w, row_loss)
    keep_uniform = Selection(uniform_w, uniform, uniform)
    if n_bags == 0:
        counts = forward(entries, n_rounds, row_loss)
        weights = None if counts is None else counts / counts.sum()
    else:
        rng = np.random.default_rng(seed)
        total, runs, gain = np.zeros(E), 0, 0.0
        for _ in range(int(n_bags)):
            draw = rng.poisson(1.0, N).astype(np.float64)  # (N,) bootstrap counts
            bag, bag_loss = _subset(entries, draw, row_loss)
            counts = forward(bag, n_rounds, bag_loss)
            if counts is None:
                continue
            w = counts / counts.sum()
            total += w
            runs += 1
            left_out, out_loss = _subset(entries, (draw == 0).astype(np.float64), row_loss)
            if left_out.row_weight.sum() > 0:
                gain += (ensemble_loss(left_out, uniform_w, out_loss)
                         - ensemble_loss(left_out, w, out_loss))
        weights = total / runs if runs and gain > 0 else None
    if weights is None:
        return keep_uniform
    score = ensemble_loss(entries, weights, row_loss)
    if not score < uniform - MARGIN * abs(uniform):
        return keep_uniform
    return Selection(weights, score, uniform)
