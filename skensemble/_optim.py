"""Solvers and learning-rate schedules, each declared once.

Pure torch and numpy, no scikit-learn (as scikit-learn's ``_stochastic_optimizers.py``
keeps its optimizers outside the estimator).

A :class:`Solver` declares its optimizer state (``n_state`` slots of the member's flat
parameter row) and its update, written for all members at once on stacked tensors: the
readable definition that the torch engines run and the compiled kernels reproduce. A
:class:`Schedule` declares how each member's learning rate moves from epoch to epoch and
what happens when its stopping criterion runs out of patience. Which solvers each engine
runs is declared with the engine (:mod:`._engines`); an engine never substitutes one
solver for another.

Adding a solver: declare it here (its state, its update) and list it in :data:`SOLVERS`;
the torch engines (reference, batched, graphed) run it at once, and a compiled kernel
runs it once its declaration lists it.

Shape legend (as in :mod:`._engine`): E members, P parameters of one member, S state slots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


# --------------------------------------------------------------------------- solvers
@dataclass(frozen=True)
class Solver:
    """One optimizer: its per-member state and its update.

    Attributes
    ----------
    name : str
        The ``solver`` parameter's value.
    n_state : int
        S: state slots per parameter (each a ``(E, P)`` slice of the state tensor).
    update : callable
        ``update(flat, grad, state, steps, lr, hyper, member)``: one step for all members,
        in place (``flat``, ``grad`` ``(E, P)``; ``state`` ``(S, E, P)``; ``steps``
        ``(E,)`` int64, incremented; ``lr`` a 0-dim or ``(E, 1)`` tensor; ``hyper`` the
        step's :class:`~skensemble._engine.Hyper`; ``member`` the members' own values,
        :class:`~skensemble._engine.Member`, or None).
    uses : tuple of str
        The :class:`~skensemble._engine.Hyper` fields the update reads (for docs and checks).
    """

    name: str
    n_state: int
    update: object
    uses: tuple = ()


def _adam(flat, grad, state, steps, lr, hyper, member=None):
    """Adam in scikit-learn's form: ``p -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)``."""
    steps += 1
    m, v = state[0], state[1]
    m.mul_(hyper.beta_1).add_(grad, alpha=1 - hyper.beta_1)
    v.mul_(hyper.beta_2).addcmul_(grad, grad, value=1 - hyper.beta_2)
    t = steps.to(flat.dtype).unsqueeze(1)  # (E, 1): each member's own step count
    lr_t = lr * torch.sqrt(1 - hyper.beta_2**t) / (1 - hyper.beta_1**t)  # (E, 1)
    flat.sub_(lr_t * m / (v.sqrt() + hyper.epsilon))


def _sgd(flat, grad, state, steps, lr, hyper, member=None):
    """Stochastic gradient descent with momentum, as scikit-learn's MLP.

    ``v = mu v - lr g``, then ``p += v`` or, with Nesterov, ``p += mu v - lr g``; ``mu``
    is ``hyper.momentum``, or each member's own (``member.momentum``).
    """
    steps += 1
    vel = state[0]
    if member is not None and member.momentum is not None:
        mu = member.momentum.view(-1, 1)  # (E, 1)
        vel.mul_(mu).addcmul_(grad, lr, value=-1)
        if hyper.nesterovs_momentum:
            flat.addcmul_(vel, mu).addcmul_(grad, lr, value=-1)
        else:
            flat.add_(vel)
        return
    vel.mul_(hyper.momentum).addcmul_(grad, lr, value=-1)
    if hyper.nesterovs_momentum:
        flat.add_(vel, alpha=hyper.momentum).addcmul_(grad, lr, value=-1)
    else:
        flat.add_(vel)


def _lion(flat, grad, state, steps, lr, hyper, member=None):
    """Lion (Chen et al., 2023): ``p -= lr sign(b1 m + (1 - b1) g)``; ``m = b2 m + (1 - b2) g``.

    The step's size is the rate itself in every coordinate, so Lion wants a rate 3-10
    times smaller than adam's; the paper's ``beta_2`` is 0.99.
    """
    steps += 1
    m = state[0]
    direction = torch.sign(m * hyper.beta_1 + grad * (1 - hyper.beta_1))  # (E, P)
    flat.sub_(lr * direction)
    m.mul_(hyper.beta_2).add_(grad, alpha=1 - hyper.beta_2)


ADAM = Solver("adam", 2, _adam, ("beta_1", "beta_2", "epsilon"))
SGD = Solver("sgd", 1, _sgd, ("momentum", "nesterovs_momentum"))
LION = Solver("lion", 1, _lion, ("beta_1", "beta_2"))

#: Every solver, by the ``solver`` parameter's value.
SOLVERS = {s.name: s for s in (ADAM, SGD, LION)}


def solver(name):
    """The :class:`Solver` called ``name``; a ValueError naming the choices otherwise."""
    try:
        return SOLVERS[name]
    except KeyError:
        raise ValueError(f"solver={name!r} is unknown; use one of {sorted(SOLVERS)}.") from None


# ------------------------------------------------------------------------- schedules
def warmup_cosine(epoch, max_iter):
    """Factor on the rate in epoch ``epoch`` (from 0) of ``max_iter``: linear warm-up, cosine.

    Over the first ``w = max(1, max_iter // 20)`` epochs ``(epoch + 1) / w``; then
    ``0.5 * (1 + cos(pi * (epoch - w) / (max_iter - w)))``, which falls from 1 to 0.
    """
    w = max(1, max_iter // 20)
    if epoch < w:
        return (epoch + 1) / w
    span = max(1, max_iter - w)
    return 0.5 * (1.0 + math.cos(math.pi * (epoch - w) / span))


@dataclass
class Rates:
    """Each member's learning rate over a fit, as the schedule moves it.

    Attributes
    ----------
    lr : ndarray (E,) float64
        The rate of the coming epoch (what the engines read).
    base : ndarray (E,) float64
        Each member's rate before the per-epoch schedule factor (plateau decays lower it).
    """

    lr: np.ndarray
    base: np.ndarray

    @classmethod
    def start(cls, lr):
        lr = np.asarray(lr, dtype=np.float64)
        return cls(lr=lr, base=lr.copy())


@dataclass(frozen=True)
class Schedule:
    """How members' rates move, declared once.

    Attributes
    ----------
    name : str
        The ``learning_rate`` parameter's value.
    solvers : frozenset of str or None
        Solvers it applies to (None: all); with another solver the rate stays constant,
        as in scikit-learn's MLP, whose schedules are for sgd.
    """

    name: str
    solvers: frozenset = None

    def applies(self, solver_name):
        return self.solvers is None or solver_name in self.solvers

    def before_epoch(self, rates, epoch, t_seen, config):
        """Set ``rates.lr`` for epoch ``epoch`` (from 0), ``t_seen`` rows seen before it."""
        if self.name == "invscaling":
            rates.lr[:] = config.learning_rate_init / (t_seen + 1) ** config.power_t
        elif self.name == "warmup_cosine":
            rates.lr[:] = rates.base * warmup_cosine(epoch, config.max_iter)

    def on_patience(self, out, rates):
        """Members whose patience ran out (``out (E,)`` bool) that still stop.

        ``"adaptive"`` divides the rate of such a member by 5 instead (and it goes on),
        until the rate would fall below 1e-6, as scikit-learn's MLP. The others stop.
        """
        if self.name != "adaptive":
            return out
        shrink = out & (rates.lr / 5.0 >= 1e-6)
        rates.lr[shrink] /= 5.0
        return out & ~shrink

    def after_fit(self, rates):
        """What a continued fit starts from: the rates before the per-epoch factor."""
        if self.name == "warmup_cosine":
            rates.lr[:] = rates.base


CONSTANT = Schedule("constant")
SCHEDULES = {s.name: s for s in (
    CONSTANT,
    Schedule("invscaling", frozenset({"sgd"})),
    Schedule("adaptive", frozenset({"sgd"})),
    Schedule("warmup_cosine"),
)}


def schedule(name, solver_name):
    """The schedule in force for ``learning_rate=name`` with ``solver_name`` (see Schedule)."""
    sched = SCHEDULES[name]
    return sched if sched.applies(solver_name) else CONSTANT


@dataclass(frozen=True)
class PlateauDecay:
    """``plateau_decays``: a member out of patience lowers its rate instead of stopping.

    Up to ``times`` times per member its rate (and base rate) is multiplied by ``factor``
    and, when it validates, it goes back to its best weights. Not combined with the
    ``"adaptive"`` schedule, which has its own rule.
    """

    times: int
    factor: float = 0.1

    def decay(self, out, n_decays, rates):
        """Members of ``out`` that decay now (bool ``(E,)``); rates and counts updated."""
        decay = out & (n_decays < self.times)
        if decay.any():
            rates.lr[decay] *= self.factor
            rates.base[decay] *= self.factor
            n_decays[decay] += 1
        return decay
