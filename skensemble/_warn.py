"""Warnings attributed to the user's line, however deep inside the library they arise.

Owns one function. ``warnings.warn(..., stacklevel=k)`` needs the depth of the call
chain, which differs between ``fit``, ``partial_fit`` and scikit-learn's ``_fit_context``
wrapper; here it is counted instead: the warning goes to the first frame outside
skensemble and the scikit-learn / torch wrappers around its methods.
"""

import os
import sys
import warnings

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
# wrappers between a user's call and ours: sklearn's _fit_context and validation, torch's
# no_grad decorator
_WRAPPERS = tuple(os.path.join(*p) for p in (
    ("sklearn", "base.py"), ("sklearn", "utils", ""), ("torch", "utils", "_contextlib.py")))


def _internal(filename):
    return filename.startswith(_PACKAGE) or any(w in filename for w in _WRAPPERS)


def warn(message, category=UserWarning):
    """Issue ``message`` as ``category``, attributed to the first frame outside the library."""
    frame, level = sys._getframe(1), 1
    while frame is not None and _internal(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level + 1)  # +1: this function
