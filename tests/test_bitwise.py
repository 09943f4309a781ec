"""Predictions of a grid of configurations are bit for bit those stored at commit 0f0dba2.

The grid and how the stored predictions were made: ``tests/bitwise_grid.py``. A change
that only reorganises code must leave every entry exactly equal on the CPU.
"""

import numpy as np
import pytest
from bitwise_grid import FIXTURE, GRID, run

STORED = np.load(FIXTURE)


@pytest.mark.parametrize("name", sorted(GRID))
def test_predictions_are_bit_for_bit_as_stored(name):
    got = run(name)
    want = STORED[name]
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
