"""Docstrings stay true: documented parameters match __init__, examples run."""

import doctest
import inspect
import re

import pytest

import skensemble
from skensemble import NeuralBaggingClassifier, NeuralBaggingRegressor, _classifier, _regressor


def _documented_parameters(cls):
    doc = inspect.getdoc(cls)
    section = doc.split("Parameters\n----------\n", 1)[1].split("\nAttributes\n", 1)[0]
    return re.findall(r"^(\w+) : ", section, flags=re.M)


@pytest.mark.parametrize("cls", [NeuralBaggingRegressor, NeuralBaggingClassifier])
def test_parameters_documented_in_order(cls):
    signature = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    assert _documented_parameters(cls) == signature


@pytest.mark.parametrize("cls", [NeuralBaggingRegressor, NeuralBaggingClassifier])
def test_public_methods_have_docstrings(cls):
    for name, member in inspect.getmembers(cls, predicate=inspect.isfunction):
        if not name.startswith("_"):
            assert inspect.getdoc(member), f"{cls.__name__}.{name} has no docstring"


@pytest.mark.parametrize("module", [_regressor, _classifier])
def test_doctests(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_public_names():
    assert sorted(skensemble.__all__) == [
        "NeuralBaggingClassifier", "NeuralBaggingRegressor", "__version__"]
