"""What a task (regression, classification) means for the ensemble, in one object each.

A :class:`Task` says how targets become the float matrix ``Y (N, O)`` the members fit
(and the fitted coding that maps outputs back), which loss trains the members, how a
member's raw outputs become what is averaged, how members are scored on their
validation rows, what ensemble selection averages and minimises, and what the
out-of-bag prediction sets. The estimators hold one (:mod:`._regressor`,
:mod:`._classifier`); the fit pipeline (:mod:`._pipeline`) and the held-out rows
(:mod:`._heldout`) call it. Label smoothing is not here: the members' targets are
smoothed where each group trains (:func:`skensemble._engine.smooth_labels`).

Shape legend: E members, N (n) rows, O outputs (classes K for classification), D values
per selection entry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import accuracy_score, d2_pinball_score, r2_score
from sklearn.utils.multiclass import check_classification_targets

from ._scaling import weighted_standardisation
from ._training import member_sum

# Probabilities are clipped to [LOG_LOSS_EPS, 1] in the selection's log-loss, so that one
# confidently wrong member costs a large but finite loss.
LOG_LOSS_EPS = 1e-15


@dataclass
class RegressionTargets:
    """The fitted coding of a regressor's targets (standardisation, unit-safe).

    Attributes
    ----------
    one_d : bool
        ``y`` was 1-D (predictions are 1-D).
    n_outputs : int
    mean, unit, div : ndarray (O,)
        Targets are ``(y / unit - mean / unit) / (div / unit)``.
    scale : ndarray (O,)
        What standardised outputs are multiplied by to return to ``y``'s units: ``div``,
        or 0 for a constant target (whose predictions are then exactly the constant).
    """

    one_d: bool
    n_outputs: int
    mean: np.ndarray
    unit: np.ndarray
    scale: np.ndarray
    div: np.ndarray

    def encode(self, y):
        Y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)  # (N, O)
        if Y.shape[1] != self.n_outputs:
            raise ValueError(f"y has {Y.shape[1]} outputs but the ensemble was fitted with "
                             f"{self.n_outputs}.")
        return (Y / self.unit - self.mean / self.unit) / (self.div / self.unit)

    def decode(self, standardised):
        """Standardised outputs ``(..., O)`` back in ``y``'s units."""
        return standardised * self.scale + self.mean

    def order(self, pred):
        """Predictions ``(..., O)`` as returned (:class:`QuantileTargets` sorts them)."""
        return pred


@dataclass
class QuantileTargets(RegressionTargets):
    """The coding of a quantile regressor's one target, fitted as one output per quantile.

    Attributes
    ----------
    quantiles : tuple of float
        The quantile levels, ascending: one member output each.

    ``one_d`` here says whether ``quantile`` was one float (predictions ``(n,)``) rather
    than a list (``(n, q)``); ``n_outputs`` is 1 (the target), and the members' targets
    are its standardised column repeated once per quantile.
    """

    quantiles: tuple = ()

    def encode(self, y):
        return np.repeat(super().encode(y), len(self.quantiles), axis=1)  # (N, q)

    def order(self, pred):
        """``pred (..., q)`` sorted along the quantiles: quantile predictions never cross.

        Averaged member quantiles can cross where members disagree; sorting each row
        (the rearrangement of Chernozhukov, Fernandez-Val and Galichon, 2010) never moves
        a prediction further from the true quantiles. Rows of NaN stay NaN.
        """
        return np.sort(pred, axis=-1)


@dataclass
class ClassLabels:
    """The fitted coding of a classifier's labels: the sorted classes."""

    classes: np.ndarray

    def encode(self, y):
        codes = np.searchsorted(self.classes, y)
        codes = np.clip(codes, 0, self.classes.size - 1)
        unknown = self.classes[codes] != y
        if np.any(unknown):
            raise ValueError(
                f"y contains labels not seen before: {np.unique(np.asarray(y)[unknown])[:5]}; "
                f"the ensemble knows {self.classes}. Pass every label in `classes` to the "
                "first partial_fit."
            )
        return np.eye(self.classes.size)[codes]  # (N, K) one-hot


def d2_pinball(y, pred, quantiles, sample_weight=None):
    """Mean over the quantiles of :func:`sklearn.metrics.d2_pinball_score`.

    ``y (n,)``, ``pred (n, q)`` (columns in the order of ``quantiles``): the fraction of
    the pinball loss of the best constant (the empirical quantile) that the predictions
    remove; 1 is perfect, 0 the constant's loss.
    """
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    pred = np.asarray(pred, dtype=np.float64).reshape(y.shape[0], -1)
    return float(np.mean([d2_pinball_score(y, pred[:, j], alpha=q, sample_weight=sample_weight)
                          for j, q in enumerate(quantiles)]))


class Regression:
    """Squared error on standardised targets; members averaged; R^2 to score them."""

    loss = "squared_error"
    multi_output = True
    label_smoothing = 0.0
    quantiles = ()

    def fit_targets(self, y, sample_weight):
        """The target coding fitted on ``y`` (:class:`RegressionTargets`)."""
        y = np.asarray(y, dtype=np.float64)
        Y = y.reshape(len(y), -1)  # (N, O)
        mean, scale, unit, constant = weighted_standardisation(Y, sample_weight)
        # Members learn constant columns as 0; mapping them back with scale 0 makes their
        # predictions exactly the constant, whatever small output a member has.
        return RegressionTargets(one_d=y.ndim == 1, n_outputs=Y.shape[1], mean=mean,
                                 unit=unit, scale=np.where(constant, 0.0, scale), div=scale)

    def encode(self, y, targets):
        """``Y (N, O)`` float64 the members fit, under the fitted coding ``targets``."""
        _same_loss(targets, self.quantiles)
        return targets.encode(y)

    def stratify(self, y):
        return None

    def transform_outputs(self, out):
        """Members' raw outputs ``(E, n, O)`` -> what is averaged (float64 tensor)."""
        return out.double()

    def member_scores(self, out, Y, weight):
        """Per-member weighted R^2 on standardised targets ``(E,)``, averaged over outputs.

        Sums run in order over the last axis (:func:`~._training.member_sum`): a member's
        score must not depend on the members trained beside it (``n_jobs`` chunks).
        """
        w = weight.unsqueeze(1)  # (E, 1, Nv)
        Yt = Y.transpose(1, 2)  # (E, O, Nv)
        denom = member_sum(w)  # (E, 1)
        Ybar = member_sum(w * Yt) / denom  # (E, O)
        sst = member_sum(w * (Yt - Ybar.unsqueeze(-1)) ** 2)  # (E, O)
        sse = member_sum(w * (out.transpose(1, 2) - Yt) ** 2)  # (E, O)
        return member_sum(1 - sse / sst) / sse.shape[-1]

    def selection_values(self, out, Y):
        """What members contribute to a row's average for selection: ``(E, n, D)``."""
        return out  # the members' standardised predictions

    def selection_loss(self, mean, Y):
        """Loss ``(n,)`` of averaged values ``mean (n, D)``: squared error, mean over outputs."""
        return ((mean - Y) ** 2).mean(-1)

    def oob(self, mean, has_oob, y, targets):
        """``oob_score_`` and ``oob_prediction_`` from the out-of-bag mean ``(N, O)``."""
        pred = targets.decode(mean)  # (N, O)
        y2 = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        score = r2_score(y2[has_oob], pred[has_oob]) if has_oob.sum() > 1 else np.nan
        return {"oob_score_": score,
                "oob_prediction_": pred[:, 0] if targets.one_d else pred}


def _same_loss(targets, quantiles):
    """Raise unless the fitted ``targets`` were coded for this loss and these quantiles."""
    fitted = getattr(targets, "quantiles", ())
    if tuple(fitted) != tuple(quantiles):
        def what(q):
            return f"loss='quantile' with quantiles {list(q)}" if q else "loss='squared_error'"
        raise ValueError(
            f"The ensemble was fitted with {what(fitted)}; warm_start and partial_fit keep "
            f"its outputs and cannot train it with {what(quantiles)}. Restore loss and "
            "quantile, or refit with warm_start=False.")


class QuantileRegression(Regression):
    """The pinball loss on standardised targets, one output per quantile.

    ``quantiles``: tuple of floats in (0, 1), ascending; ``single``: ``quantile`` was one
    float (predictions ``(n,)``). The members' quantiles are averaged (weighted by
    ``ensemble_weights_``), as the squared error's means are, then sorted per row
    (:meth:`QuantileTargets.order`); members are scored by the D^2 of their pinball loss.
    """

    loss = "quantile"

    def __init__(self, quantiles, single):
        self.quantiles = tuple(float(q) for q in quantiles)
        self.single = bool(single)

    def fit_targets(self, y, sample_weight):
        """The one target's coding, one output per quantile (:class:`QuantileTargets`)."""
        base = super().fit_targets(y, sample_weight)
        if base.n_outputs != 1:
            raise ValueError(
                f"loss='quantile' fits the quantiles of one target; y has {base.n_outputs} "
                "columns. Fit one estimator per target column.")
        fields = {**vars(base), "one_d": self.single}
        return QuantileTargets(**fields, quantiles=self.quantiles)

    def member_scores(self, out, Y, weight):
        """Per-member D^2 of the pinball loss on the validation rows ``(E,)``.

        ``1 - pinball(member) / pinball(c)`` per output, averaged over outputs, with ``c``
        the weighted empirical quantile of the member's validation targets (the constant
        of least weighted pinball loss); sums in order over the rows (:func:`member_sum`).
        """
        taus = torch.tensor(self.quantiles, dtype=out.dtype, device=out.device)  # (O,)
        Yt = Y.transpose(1, 2)  # (E, O, Nv)
        w = weight.unsqueeze(1).expand_as(Yt)  # (E, O, Nv)
        sorted_y, idx = torch.sort(Yt, dim=-1, stable=True)
        cum = torch.gather(w, -1, idx).cumsum(-1)  # (E, O, Nv)
        # first sorted row whose cumulative weight reaches tau of the total
        below = (cum < taus[None, :, None] * cum[..., -1:]).sum(-1, keepdim=True)
        const = torch.gather(sorted_y, -1, below.clamp(max=Yt.shape[-1] - 1))  # (E, O, 1)

        def pinball(pred):  # (E, O, Nv) or broadcast -> (E, O)
            r = pred - Yt
            return member_sum(w * r * ((r > 0).to(r.dtype) - taus[None, :, None]))

        num, den = pinball(out.transpose(1, 2)), pinball(const)
        return member_sum(1 - num / den) / num.shape[-1]

    def selection_loss(self, mean, Y):
        """Pinball loss ``(n,)`` of averaged quantiles ``mean (n, q)``, mean over quantiles."""
        r = mean - Y
        return (r * ((r > 0) - np.asarray(self.quantiles))).mean(-1)

    def oob(self, mean, has_oob, y, targets):
        """``oob_score_`` (D^2 of the pinball loss) and ``oob_prediction_`` (sorted rows)."""
        pred = targets.order(targets.decode(mean))  # (N, q)
        score = (d2_pinball(np.asarray(y)[has_oob], pred[has_oob], self.quantiles)
                 if has_oob.sum() > 1 else np.nan)
        return {"oob_score_": score,
                "oob_prediction_": pred[:, 0] if targets.one_d else pred}


class Classification:
    """Cross-entropy over softmax outputs; soft voting; accuracy to score members.

    ``label_smoothing``: the estimator's, applied where each group trains.
    """

    loss = "log_loss"
    multi_output = False
    quantiles = ()

    def __init__(self, label_smoothing=0.0):
        self.label_smoothing = float(label_smoothing)

    def fit_targets(self, y, sample_weight, classes=None):
        """The label coding (:class:`ClassLabels`) of ``y`` (or of ``classes``, given)."""
        check_classification_targets(y)
        return ClassLabels(np.unique(y if classes is None else classes))

    def encode(self, y, labels):
        """One-hot ``Y (N, K)`` of ``y`` under the fitted ``labels``; checks ``y`` first."""
        check_classification_targets(y)
        Y = labels.encode(y)
        if labels.classes.size < 2:
            raise ValueError(
                "NeuralBaggingClassifier needs samples of at least 2 classes in the data, "
                f"but the data contains only one class: {labels.classes[0]!r}."
            )
        return Y

    def stratify(self, y):
        """Labels to stratify hold-outs by, where every class has two rows; else None."""
        _, counts = np.unique(y, return_counts=True)
        return y if counts.min() >= 2 else None

    def transform_outputs(self, out):
        return torch.softmax(out.double(), dim=-1)

    def member_scores(self, out, Y, weight):
        """Per-member weighted accuracy on the validation rows ``(E,)``."""
        hit = (out.argmax(-1) == Y.argmax(-1)).to(weight.dtype)  # (E, Nv)
        # in order over the rows: the same bit for bit whichever members are beside it
        return member_sum(hit * weight) / member_sum(weight)

    def selection_values(self, out, Y):
        # Log-loss of an average needs only each member's probability of the true class.
        return (out * Y).sum(-1, keepdim=True)  # (E, n, 1)

    def selection_loss(self, mean, Y):
        return -np.log(np.clip(mean[:, 0], LOG_LOSS_EPS, 1.0))

    def oob(self, mean, has_oob, y, targets):
        """``oob_score_`` (accuracy) and ``oob_decision_function_`` from the mean ``(N, K)``."""
        pred = targets.classes[np.argmax(np.nan_to_num(mean[has_oob]), axis=1)]
        score = accuracy_score(np.asarray(y)[has_oob], pred) if has_oob.any() else np.nan
        return {"oob_score_": score, "oob_decision_function_": mean}
