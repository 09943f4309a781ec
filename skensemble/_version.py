"""Package version, and the version of the fitted-model format pickles carry."""

__version__ = "0.1.0"

# Bumped whenever the meaning of fitted state changes (layouts, scaling, attributes):
# loading a model of another format raises instead of predicting wrongly.
FORMAT = 4  # 3: ensemble_weights_ (ensemble_selection); 4: one FittedEnsemble (_fitted)
