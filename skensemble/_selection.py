"""Ensemble selection: greedy forward selection with replacement (Caruana et al., 2004).

Owns the choice of member weights from the members' predictions on their validation
rows, and the validation loss of a weighted ensemble on those rows. Pure numpy: no
torch, no scikit-learn; the facade (:mod:`._base`) runs the members and says which rows
validate which member, the task classes say what a member contributes to a row and the
loss of a row.

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


def greedy(entries, n_rounds, row_loss):
    """Greedy forward selection with replacement; never worse than the uniform average.

    Starts from the empty ensemble and, ``n_rounds`` times, adds (again) the member that
    lowers :func:`ensemble_loss` most. Keeps the ensemble of the best round (Caruana et
    al.'s advice: later rounds may only add noise), then compares it with the uniform
    average of all members on the same loss and keeps the uniform one unless the
    selection is better (by more than :data:`MARGIN`, relative).

    Parameters
    ----------
    entries : Entries
    n_rounds : int
    row_loss : callable
        ``row_loss(pred (n, D), rows (n,)) -> (n,)``: the loss of predictions of rows
        ``rows`` (indices into the ``N`` scored rows).

    Returns
    -------
    Selection
    """
    E, N = entries.n_members, entries.row_weight.size
    s, member, row, values = entries.row_weight, entries.member, entries.row, entries.values
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
    uniform = ensemble_loss(entries, np.ones(E), row_loss)
    # Running sums drift by rounding: score the chosen ensemble afresh, as the uniform one.
    score = np.inf if best_counts is None else ensemble_loss(entries, best_counts, row_loss)
    if not score < uniform - MARGIN * abs(uniform):
        return Selection(np.full(E, 1.0 / E), uniform, uniform)
    return Selection(best_counts / best_counts.sum(), score, uniform)
