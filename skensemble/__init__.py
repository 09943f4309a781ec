"""skensemble: ensembles of small neural networks trained as one vectorized computation."""

from ._classifier import NeuralBaggingClassifier
from ._regressor import NeuralBaggingRegressor

__version__ = "0.1.0"
__all__ = ["NeuralBaggingClassifier", "NeuralBaggingRegressor", "__version__"]
