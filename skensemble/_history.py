"""The per-epoch curves of a fit's members, and how histories of several fits combine.

Pure numpy. Owns :class:`History`: what the epoch loop (:mod:`._training`) records for a
group, combined over groups and chunks, set after an earlier fit's (a resumed fit) or
beside it (a warm start with more members). The estimators' fitted curves
(``loss_curve_``, ``validation_scores_``, ``stop_reason_``...) read from it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass
class History:
    """Per-epoch curves of the members (NaN once a member stopped).

    Attributes
    ----------
    loss : ndarray (T, E)
    n_iter : ndarray (E,) int64
    unconverged : int
        Members still improving when ``max_iter`` ended the loop.
    seconds : float
    val_loss, val_score : ndarray (T, E) or None
    best : ndarray (E,) or None
        Each member's best validation loss.
    stop_reason : ndarray (E,) of str or None
        Why each member stopped: ``"no improvement"`` (patience ran out), ``"pruned"``
        (``prune``), ``"max_iter"`` or ``"interrupted"``.
    """

    loss: np.ndarray
    n_iter: np.ndarray
    unconverged: int = 0
    seconds: float = 0.0
    val_loss: np.ndarray = None
    val_score: np.ndarray = None
    best: np.ndarray = None
    stop_reason: np.ndarray = None

    @classmethod
    def combine(cls, parts, n_members):
        """One history for members trained in groups: ``parts = [(positions, History)]``."""
        T = max(h.loss.shape[0] for _, h in parts)
        has_val = parts[0][1].val_loss is not None
        out = cls(loss=np.full((T, n_members), np.nan),
                  n_iter=np.zeros(n_members, dtype=np.int64),
                  unconverged=sum(h.unconverged for _, h in parts),
                  seconds=sum(h.seconds for _, h in parts))
        if has_val:
            out.val_loss = np.full((T, n_members), np.nan)
            out.val_score = np.full((T, n_members), np.nan)
            out.best = np.full(n_members, np.nan)
        if all(h.stop_reason is not None for _, h in parts):
            out.stop_reason = np.empty(n_members, dtype=object)
        for loc, h in parts:
            out.loss[: h.loss.shape[0], loc] = h.loss
            out.n_iter[loc] = h.n_iter
            if out.stop_reason is not None:
                out.stop_reason[loc] = h.stop_reason
            if has_val:
                out.val_loss[: h.val_loss.shape[0], loc] = h.val_loss
                out.val_score[: h.val_score.shape[0], loc] = h.val_score
                out.best[loc] = h.best
        return out

    def after(self, earlier):
        """The epochs of this history following ``earlier``'s (a resumed fit)."""
        def cat(a, b):
            return None if a is None or b is None else np.concatenate([a, b])

        return replace(self, loss=np.concatenate([earlier.loss, self.loss]),
                       n_iter=earlier.n_iter + self.n_iter,
                       val_loss=cat(earlier.val_loss, self.val_loss),
                       val_score=cat(earlier.val_score, self.val_score),
                       best=self.best if earlier.best is not None else None)

    def beside(self, earlier):
        """New members' curves next to ``earlier``'s (warm start with more members)."""
        def pad(old, fresh):
            if old is None or fresh is None:
                return None
            T = max(old.shape[0], fresh.shape[0])
            out = np.full((T, old.shape[1] + fresh.shape[1]), np.nan)
            out[: old.shape[0], : old.shape[1]] = old
            out[: fresh.shape[0], old.shape[1]:] = fresh
            return out

        best = None
        if earlier.best is not None and self.best is not None:
            best = np.concatenate([earlier.best, self.best])
        reason = None  # members with no reason (partial_fit only) get None beside the others
        if earlier.stop_reason is not None or self.stop_reason is not None:
            reason = np.concatenate([
                np.full(len(h.n_iter), None, dtype=object) if h.stop_reason is None
                else np.asarray(h.stop_reason, dtype=object) for h in (earlier, self)])
        return replace(self, stop_reason=reason, loss=pad(earlier.loss, self.loss),
                       n_iter=np.concatenate([earlier.n_iter, self.n_iter]),
                       val_loss=pad(earlier.val_loss, self.val_loss),
                       val_score=pad(earlier.val_score, self.val_score), best=best)
