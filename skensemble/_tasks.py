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
from sklearn.metrics import accuracy_score, r2_score
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


class Regression:
    """Squared error on standardised targets; members averaged; R^2 to score them."""

    loss = "squared_error"
    multi_output = True
    label_smoothing = 0.0

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


class Classification:
    """Cross-entropy over softmax outputs; soft voting; accuracy to score members.

    ``label_smoothing``: the estimator's, applied where each group trains.
    """

    loss = "log_loss"
    multi_output = False

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
