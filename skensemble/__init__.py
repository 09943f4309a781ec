"""skensemble: ensembles of small neural networks trained as one vectorized computation.

The estimators are imported on first use, so that the pure-torch modules
(``skensemble._engine``, ``skensemble._training``) import without scikit-learn.
"""

from ._version import __version__

__all__ = ["NeuralBaggingClassifier", "NeuralBaggingRegressor", "__version__"]


def __getattr__(name):
    if name == "NeuralBaggingClassifier":
        from ._classifier import NeuralBaggingClassifier

        return NeuralBaggingClassifier
    if name == "NeuralBaggingRegressor":
        from ._regressor import NeuralBaggingRegressor

        return NeuralBaggingRegressor
    raise AttributeError(f"module 'skensemble' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
