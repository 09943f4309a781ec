"""What the members' own validation rows say: out-of-bag scores and ensemble selection.

Functions over a :class:`~skensemble._fitted.FittedEnsemble` and its task
(:mod:`._tasks`). Out-of-bag: each training row is predicted by the members that neither
trained nor stopped on it (``oob_score_`` and the task's out-of-bag attribute). Ensemble
weights: uniform, or chosen by :func:`skensemble._selection.greedy` on the rows each
member held out or did not draw (``ensemble_weights_``, ``selection_score_``,
``uniform_score_``). Members that ``prune`` stopped (``stop_reason_ == "pruned"``) are
out of the ensemble: weight 0, never selected, not in the out-of-bag average. Successive
halving stops them after a few epochs because they are worse there; averaging them in
anyway cost 14% RMSE on bikeshare and 48% log-loss on digits
(``benchmarks/results/quality_hpo_prune.json``).

They run the fitted members (:mod:`._predict`) on the training rows once, after
training, and must not train.

Shape legend: E members, N training rows, O outputs, D values per selection entry, Z
selection entries (member, row).
"""

from dataclasses import dataclass

import numpy as np
import torch

from . import _predict, _sampling, _selection, _warn


def oob(fitted, task, Xs, y, device):
    """The out-of-bag attributes (a dict: ``oob_score_`` and the task's prediction).

    ``Xs (N, F)``: the training rows as the members read them; ``y``: their targets.
    """
    rows, held, _ = fitted.member_draws()
    N = Xs.shape[0]
    out_of_bag = ~_sampling.in_bag_mask(rows, N)  # (E, N)
    if held is not None:  # rows a member stopped on are not out-of-bag for it
        out_of_bag &= ~_sampling.held_mask(held, N)
    out_of_bag &= fitted.in_ensemble()[:, None]  # what predict averages

    def reduce(out, rows):  # (E, n, O) -> (n, O): sum over the members that qualify
        m = torch.from_numpy(out_of_bag[:, rows]).to(out.device, torch.float64)
        return (task.transform_outputs(out) * m.unsqueeze(-1)).sum(0)

    total = _predict.run_chunked(fitted.groups, fitted.columns(fitted.features),
                                 fitted.encoding, fitted.activation, Xs, device, reduce)
    count = out_of_bag.sum(0)  # (N,)
    has = count > 0
    if not has.all():
        _warn.warn(
            "Some inputs do not have OOB scores. This probably means too few "
            "estimators were used to compute any reliable oob estimates.")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count[:, None]
    mean[~has] = np.nan
    return task.oob(mean, has, y, fitted.targets)


# -------------------------------------------------------- ensemble selection
def no_validation_rows(rounds, why):
    """The error for ``ensemble_selection`` without rows to select on."""
    return ValueError(
        f"ensemble_selection={rounds} weighs members by their loss on "
        f"their validation rows, but {why}. Set bootstrap=True (out-of-bag rows), "
        "early_stopping=True (held-out rows) or max_samples < 1, or set "
        "ensemble_selection=None."
    )


def check_selection(rounds, plan, n_draws=None):
    """Raise before training when ``ensemble_selection=rounds`` would find no validation row.

    ``n_draws``: each member's own number of rows, or None (``plan.n_draw``).
    """
    if isinstance(rounds, bool):  # an Integral to the constraints
        raise ValueError(
            f"ensemble_selection={rounds} is ambiguous: pass the number "
            "of selection rounds (e.g. 50), or None for no selection."
        )
    if (rounds is not None and plan.holdout is None and not plan.bootstrap
            and (plan.n_draw if n_draws is None else n_draws.min()) >= plan.n_samples):
        raise no_validation_rows(
            rounds, "no member has any: each trains on every row and holds none out")


@dataclass
class Weights:
    """Each member's weight in predictions, and selection's scores (None: no selection)."""

    weights: np.ndarray  # (E,) float64, summing to 1
    selection_score: float = None
    uniform_score: float = None


def uniform(fitted):
    """Every member in the ensemble weighs the same (pruned ones 0); no selection scores."""
    keep = fitted.in_ensemble()  # (E,)
    return Weights(keep / keep.sum())


def select(fitted, task, Xs, Y, sw, rounds, device):
    """Ensemble weights: uniform, or (``rounds``) bagged greedy selection on validation rows.

    ``Xs (N, F)`` float32 inputs as the members read them, ``Y (N, O)`` encoded targets,
    ``sw (N,)`` or None: the data the members were fitted on.
    """
    if rounds is None:
        return uniform(fitted)
    keep = fitted.in_ensemble()  # (E,): pruned members are not candidates
    mask = fitted.validation_mask() & keep[:, None]  # (E, N)
    if sw is not None:
        mask &= sw > 0  # rows of weight zero score nothing
    scored = mask.any(0)  # (N,)
    if not scored.any():
        raise no_validation_rows(rounds, "no member has any (of positive sample_weight)")
    mask_t = np.ascontiguousarray(mask[:, scored].T)  # (Nv, E)
    row, member = np.nonzero(mask_t)  # (Z,) each, row-major like the masked gather below
    Yv = Y[scored]  # (Nv, O)
    Yt = torch.from_numpy(Yv)

    def reduce(out, rows):  # (E, n, O) -> (z, D): each member's values on its rows
        values = task.selection_values(task.transform_outputs(out),
                                       Yt[rows].to(out.device))  # (E, n, D)
        return values.transpose(0, 1)[torch.from_numpy(mask_t[rows]).to(out.device)]

    values = _predict.run_chunked(fitted.groups, fitted.columns(fitted.features),
                                  fitted.encoding, fitted.activation, Xs[scored], device,
                                  reduce)  # (Z, D)
    # the candidates renumbered 0..K-1, so that "uniform" means uniform over them
    entries = _selection.Entries(
        member=np.cumsum(keep)[member] - 1, row=row, values=values,
        row_weight=np.ones(Yv.shape[0]) if sw is None else sw[scored],
        n_members=int(keep.sum()))
    # the resampling's seed: from the members' seeds, so a fit is reproducible
    seed = np.random.SeedSequence([int(s) for s in fitted.seeds] + [3])
    result = _selection.greedy(entries, rounds,
                               lambda mean, rows: task.selection_loss(mean, Yv[rows]),
                               seed=seed)
    weights = np.zeros(keep.size)
    weights[keep] = result.weights
    return Weights(weights, result.score, result.uniform_score)
