"""The engines and what each declares it supports; the dispatcher reads only this.

Every engine runs one epoch for all members with the contract of
:func:`skensemble._engine.epoch_reference`. What it can run is declared here, once, as
:class:`Capabilities`: devices, solvers, activations, losses, the per-member values it
reads, batch sizes, depth and width. :func:`skensemble._dispatch.select_engine` checks a
request against these declarations: ``engine="auto"`` picks among the engines that
support it, and a named engine that does not support it raises a ``ValueError`` that
says what it supports and which engines would run the request. No engine ever runs a
substitute (another solver, another activation) for what was asked.

The torch engines (reference, batched, graphed) run whatever :mod:`._optim` declares,
so a new solver is theirs at once; a compiled kernel lists what it implements.

Compiled kernels are imported lazily (:func:`epoch_function`), so that reading these
declarations never imports numba or triton.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import _optim

ACTIVATIONS = frozenset({"identity", "logistic", "tanh", "relu"})
LOSSES = frozenset({"squared_error", "log_loss", "quantile"})


@dataclass(frozen=True)
class Capabilities:
    """What one engine runs.

    Attributes
    ----------
    devices : frozenset of str
        Device types (``"cpu"``, ``"cuda"``).
    solvers, activations, losses : frozenset of str
    member_values : frozenset of str
        Per-member values (fields of :class:`skensemble._engine.Member`) it reads; a
        member value it does not list cannot differ between members of one group.
    max_batch : int or None
        Largest batch size (None: any).
    hidden_layers : tuple (int, int or None)
        Fewest and most hidden layers.
    max_width : int or None
        Widest hidden or output layer (None: any).
    mapped_inputs : bool
        Whether members' first layers may read a map of the rows (their own columns,
        ``max_features``; the bins of the encoding) rather than the rows themselves.
    requires : str or None
        The optional module it needs (``numba``, ``triton``).
    """

    devices: frozenset
    solvers: frozenset
    activations: frozenset = ACTIVATIONS
    losses: frozenset = LOSSES
    member_values: frozenset = frozenset({"lr", "alpha"})
    max_batch: int = None
    hidden_layers: tuple = (0, None)
    max_width: int = None
    mapped_inputs: bool = True
    requires: str = None

    def refusal(self, request):
        """Why this engine cannot run ``request`` (a phrase), or None if it can.

        ``request`` is a :class:`Request`; device and dependencies are not checked here
        (see :func:`skensemble._dispatch.available_engines`).
        """
        hyper, sizes = request.hyper, request.sizes
        checks = (
            ("solver", hyper.solver, self.solvers),
            ("activation", hyper.activation, self.activations),
            ("loss", hyper.loss, self.losses),
        )
        for name, value, allowed in checks:
            if value not in allowed:
                return f"{name}={value!r} (it runs {name} in {sorted(allowed)})"
        extra = sorted(set(request.member_values) - self.member_values)
        if extra:
            return (f"per-member {', '.join(extra)} (it reads per member only "
                    f"{sorted(self.member_values)})")
        if self.max_batch is not None and hyper.batch_size > self.max_batch:
            return f"batch_size={hyper.batch_size} (it runs batches up to {self.max_batch})"
        n_hidden = len(sizes) - 2
        lo, hi = self.hidden_layers
        if n_hidden < lo or (hi is not None and n_hidden > hi):
            return (f"{n_hidden} hidden layers (it runs {lo} to "
                    f"{'any number' if hi is None else hi})")
        if self.max_width is not None and max(sizes[1:]) > self.max_width:
            return f"layers wider than {self.max_width} units ({max(sizes[1:])})"
        if request.mapped_inputs and not self.mapped_inputs:
            return "first layers that read a map of the rows (their own columns, or bins)"
        return None


@dataclass(frozen=True)
class Request:
    """What one group's training asks of an engine.

    Attributes
    ----------
    hyper : skensemble._engine.Hyper
    sizes : tuple of int
        The group's layout ``(F, H_1, ..., O)``.
    mapped_inputs : bool
        Whether members' first layers read a map of the rows (columns, bins).
    member_values : frozenset of str
        Per-member values that differ between members (beyond the learning rate, which
        every engine reads per member).
    """

    hyper: object
    sizes: tuple
    mapped_inputs: bool = False
    member_values: frozenset = frozenset()


_ALL_SOLVERS = frozenset(_optim.SOLVERS)
# the torch engines read every per-member value the solvers in _optim read
_TORCH_VALUES = frozenset({"lr", "alpha", "momentum"})

#: Every engine by name, with what it declares it supports.
ENGINES = {
    # autograd on the stacked parameters: the readable definition of the mathematics
    "reference": Capabilities(devices=frozenset({"cpu", "cuda"}), solvers=_ALL_SOLVERS,
                              member_values=_TORCH_VALUES),
    # forward and backward written out, one baddbmm per layer for all members
    "batched": Capabilities(devices=frozenset({"cpu", "cuda"}), solvers=_ALL_SOLVERS,
                            member_values=_TORCH_VALUES),
    # the batched steps replayed from CUDA graphs (eager on the CPU only in tests)
    "graphed": Capabilities(devices=frozenset({"cuda"}), solvers=_ALL_SOLVERS,
                            member_values=_TORCH_VALUES),
    # member-major compiled CPU kernel (skensemble._kernels.numba_cpu)
    "numba": Capabilities(devices=frozenset({"cpu"}), solvers=frozenset({"adam", "sgd"}),
                          requires="numba"),
    # member-major persistent Triton kernel (skensemble._kernels.triton_gpu): scalars
    # and blocks sized for small members
    # (no pinball loss: loss="quantile" trains on CUDA with the graphed engine)
    "triton": Capabilities(devices=frozenset({"cuda"}), solvers=frozenset({"adam", "sgd"}),
                           losses=frozenset({"squared_error", "log_loss"}), max_batch=64,
                           hidden_layers=(1, 3), max_width=1024, requires="triton"),
}

#: The engines' names, in the order they are listed to users.
NAMES = tuple(ENGINES)


def epoch_function(name):
    """The epoch function of engine ``name`` (compiled kernels imported lazily)."""
    if name == "reference":
        from ._engine import epoch_reference

        return epoch_reference
    if name == "batched":
        from ._engine import epoch_batched

        return epoch_batched
    if name == "graphed":
        from ._schedule import epoch_graphed

        return epoch_graphed
    if name == "numba":
        from ._kernels.numba_cpu import epoch_numba

        return epoch_numba
    if name == "triton":
        from ._kernels.triton_gpu import epoch_triton

        return epoch_triton
    raise ValueError(f"unknown engine {name!r}; choose from {list(NAMES)}")
