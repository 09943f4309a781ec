"""Compiled epoch kernels, each bound to :mod:`skensemble._engine`'s epoch contract.

Each kernel module imports its optional dependency (numba, triton) at module level, so
this package imports nothing itself: the dispatcher imports a kernel module only when
that engine is chosen.
"""
