"""skensemble: ensembles of small neural networks trained as one vectorized computation."""

from ._classifier import NeuralBaggingClassifier
from ._regressor import NeuralBaggingRegressor
from ._version import __version__

__all__ = ["NeuralBaggingClassifier", "NeuralBaggingRegressor", "__version__"]
