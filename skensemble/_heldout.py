"""What the members' own validation rows say: out-of-bag scores and ensemble selection.

Owns ``oob_score_`` and the task's out-of-bag attribute (through the task hooks), and
``ensemble_weights_`` with ``selection_score_``/``uniform_score_``: uniform, or chosen by
:func:`skensemble._selection.greedy` on the rows each member held out or did not draw.
Members that ``prune`` stopped (``stop_reason_ == "pruned"``) are out of the ensemble:
weight 0, never selected, not in the out-of-bag average. Successive halving stops them
after a few epochs because they are worse there; averaging them in anyway cost 14% RMSE
on bikeshare and 48% log-loss on digits (``benchmarks/results/quality_hpo_prune.json``).
A mixin of :class:`skensemble._base.BaseNeuralBagging`: it runs the fitted members
(:mod:`._predict`) on the training rows once, after training, and must not train.

Shape legend: E members, N training rows, O outputs, D values per selection entry, Z
selection entries (member, row).
"""

import numpy as np
import torch

from . import _predict, _sampling, _selection, _warn


class HeldOutRows:
    """Out-of-bag scores and ensemble weights from the members' validation rows."""

    def _in_ensemble(self):
        """Boolean ``(E,)``: the members that may weigh in (all but the pruned ones)."""
        reason = getattr(self, "stop_reason_", None)
        if reason is None:
            return np.ones(len(self._seeds), dtype=bool)
        return np.asarray(reason) != "pruned"

    def _compute_oob(self, Xs, y):
        """Average, for each row, the members that neither trained nor stopped on it."""
        rows, held, _ = self._member_draws()
        N = Xs.shape[0]
        out_of_bag = ~_sampling.in_bag_mask(rows, N)  # (E, N)
        if held is not None:  # rows a member stopped on are not out-of-bag for it
            out_of_bag &= ~_sampling.held_mask(held, N)
        out_of_bag &= self._in_ensemble()[:, None]  # what predict averages

        def reduce(out, rows):  # (E, n, O) -> (n, O): sum over the members that qualify
            m = torch.from_numpy(out_of_bag[:, rows]).to(out.device, torch.float64)
            return (self._transform_outputs(out) * m.unsqueeze(-1)).sum(0)

        total = _predict.run_chunked(self._groups, self._columns(self._features),
                                     self.activation, Xs, self._predict_device(), reduce)
        count = out_of_bag.sum(0)  # (N,)
        has = count > 0
        if not has.all():
            _warn.warn(
                "Some inputs do not have OOB scores. This probably means too few "
                "estimators were used to compute any reliable oob estimates.")
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / count[:, None]
        mean[~has] = np.nan
        self._set_oob(mean, has, y)

    # -------------------------------------------------- ensemble selection
    def _no_validation_rows(self, why):
        return ValueError(
            f"ensemble_selection={self.ensemble_selection} weighs members by their loss on "
            f"their validation rows, but {why}. Set bootstrap=True (out-of-bag rows), "
            "early_stopping=True (held-out rows) or max_samples < 1, or set "
            "ensemble_selection=None."
        )

    def _check_selection(self, plan, n_draws=None):
        """Raise before training when ``ensemble_selection`` would find no validation row.

        ``n_draws``: each member's own number of rows, or None (``plan.n_draw``).
        """
        if isinstance(self.ensemble_selection, bool):  # an Integral to the constraints
            raise ValueError(
                f"ensemble_selection={self.ensemble_selection} is ambiguous: pass the number "
                "of selection rounds (e.g. 50), or None for no selection."
            )
        if (self.ensemble_selection is not None and plan.holdout is None
                and not plan.bootstrap
                and (plan.n_draw if n_draws is None else n_draws.min()) >= plan.n_samples):
            raise self._no_validation_rows(
                "no member has any: each trains on every row and holds none out")

    def _validation_mask(self):
        """Boolean ``(E, N)``: the rows each member validates on.

        The rows it held out to stop on (``early_stopping`` without bootstrap, or with
        ``oob_score``), otherwise the rows it did not draw (out-of-bag).
        """
        rows, held, _ = self._member_draws()
        if held is not None:
            return _sampling.held_mask(held, self._plan_.n_samples)
        return ~_sampling.in_bag_mask(rows, self._plan_.n_samples)

    def _set_uniform_weights(self):
        """Every member in the ensemble weighs the same (pruned ones 0); no selection scores."""
        keep = self._in_ensemble()  # (E,)
        self.ensemble_weights_ = keep / keep.sum()
        for name in ("selection_score_", "uniform_score_"):
            self.__dict__.pop(name, None)  # no stale scores from an earlier fit

    def _select_members(self, Xs, Y, sw):
        """Set ``ensemble_weights_`` (and, with ``ensemble_selection``, both scores).

        ``Xs (N, F)`` float32 standardised inputs, ``Y (N, O)`` encoded targets, ``sw
        (N,)`` or None: the data the members were fitted on.
        """
        if self.ensemble_selection is None:
            self._set_uniform_weights()
            return
        keep = self._in_ensemble()  # (E,): pruned members are not candidates
        mask = self._validation_mask() & keep[:, None]  # (E, N)
        if sw is not None:
            mask &= sw > 0  # rows of weight zero score nothing
        scored = mask.any(0)  # (N,)
        if not scored.any():
            raise self._no_validation_rows("no member has any (of positive sample_weight)")
        mask_t = np.ascontiguousarray(mask[:, scored].T)  # (Nv, E)
        row, member = np.nonzero(mask_t)  # (Z,) each, row-major like the masked gather below
        Yv = Y[scored]  # (Nv, O)
        Yt = torch.from_numpy(Yv)

        def reduce(out, rows):  # (E, n, O) -> (z, D): each member's values on its rows
            values = self._selection_values(self._transform_outputs(out),
                                            Yt[rows].to(out.device))  # (E, n, D)
            return values.transpose(0, 1)[torch.from_numpy(mask_t[rows]).to(out.device)]

        values = _predict.run_chunked(self._groups, self._columns(self._features),
                                      self.activation, Xs[scored], self._predict_device(),
                                      reduce)  # (Z, D)
        # the candidates renumbered 0..K-1, so that "uniform" means uniform over them
        entries = _selection.Entries(
            member=np.cumsum(keep)[member] - 1, row=row, values=values,
            row_weight=np.ones(Yv.shape[0]) if sw is None else sw[scored],
            n_members=int(keep.sum()))
        # the resampling's seed: from the members' seeds, so a fit is reproducible
        seed = np.random.SeedSequence([int(s) for s in self._seeds] + [3])
        result = _selection.greedy(entries, self.ensemble_selection,
                                   lambda mean, rows: self._selection_loss(mean, Yv[rows]),
                                   seed=seed)
        self.ensemble_weights_ = np.zeros(keep.size)
        self.ensemble_weights_[keep] = result.weights
        self.selection_score_ = result.score
        self.uniform_score_ = result.uniform_score
