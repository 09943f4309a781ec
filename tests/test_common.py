"""scikit-learn's estimator checks: both estimators at their defaults, heterogeneous, MotherNets."""

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


HETERO = dict(n_estimators=4, hidden_layer_sizes=[(16,), (12, 8)], learning_rate_init=0.01)
MOTHER = dict(HETERO, init="mothernet", n_mothernets=2)


@parametrize_with_checks(
    [NeuralBaggingRegressor(), NeuralBaggingClassifier(),
     NeuralBaggingRegressor(**HETERO), NeuralBaggingClassifier(**HETERO),
     NeuralBaggingRegressor(**MOTHER), NeuralBaggingClassifier(**MOTHER)],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
