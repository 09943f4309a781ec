"""scikit-learn's estimator checks on both estimators at their default parameters."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skensemble import NeuralBaggingClassifier, NeuralBaggingRegressor

# Checks the algorithm cannot satisfy by design, each with its reason.
_XFAIL = {
    "check_sample_weight_equivalence_on_dense_data": (
        "members visit rows in a random order in batches; removing rows changes the "
        "batches and the random stream, so weight 0 equals removal only in distribution"
    ),
}


def _expected_failed_checks(estimator):
    return _XFAIL


@parametrize_with_checks(
    [NeuralBaggingRegressor(), NeuralBaggingClassifier()],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
