"""NeuralBaggingClassifier: the classification facade (its documentation and its predictions).

Owns the estimator's numpydoc, ``label_smoothing``, ``class_weight`` (each row's weight),
soft voting (``predict_proba``, ``predict_log_proba``) and ``oob_decision_function_``.
What classification means for training (labels, cross-entropy, stratified hold-outs,
the members' accuracy on their validation rows) is :class:`._tasks.Classification`;
everything else is inherited from :mod:`._base`. This module must not grow training or
prediction mechanics.
"""

from numbers import Real

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.validation import check_is_fitted

from . import _dask
from ._attributes import FittedAttribute
from ._base import BaseNeuralBagging
from ._tasks import Classification


class NeuralBaggingClassifier(ClassifierMixin, BaseNeuralBagging):
    """Bagged ensemble of small MLP classifiers, all trained at once as one computation.

    Every member is a multi-layer perceptron with a softmax output, trained on its own
    cross-entropy from its own random initialisation and, with ``bootstrap=True`` or
    ``max_samples < 1``, on its own random rows. The members' parameters are stacked
    along an ensemble dimension, so one training step is one batched matrix product
    per layer for all members (or, for small batches on the CPU, one compiled
    member-major kernel). ``predict_proba`` averages the members' probabilities (soft
    voting). Labels may be of any kind (strings, objects, any integers).

    Inputs are scaled internally (by default robustly, with smooth clipping:
    ``input_scaling``) and each numeric feature is also encoded over quantile bins
    (``numeric_encoding``).

    Parameters
    ----------
    n_estimators : int, default=10
        Number of members.

    hidden_layer_sizes : int, tuple of int, or list of tuples, default=(100,)
        Width of each hidden layer. An int or a tuple of ints is one architecture for
        every member, as in :class:`~sklearn.neural_network.MLPClassifier`. A list of tuples
        gives each member its own architecture
        (cycled when shorter than ``n_estimators``), e.g. ``[(32,), (64, 32)]``;
        members of equal depth train as one stacked computation, narrower layers padded
        with units that stay exactly zero.

    activation : {"relu", "tanh", "logistic", "identity"}, default="relu"
        Activation of the hidden layers.

    solver : {"adam", "sgd", "lion"}, default="adam"
        Optimizer; every member keeps its own state. ``"adam"`` and ``"sgd"`` follow
        scikit-learn's update rules; ``"lion"`` (Chen et al., 2023) steps by the sign of
        an interpolated momentum, so it wants a learning rate 3-10 times smaller than
        adam's and ``beta_2=0.99``; it runs on the torch engines (``engine="auto"`` picks
        them for it).

    alpha : float, default=1e-4
        L2 penalty on the weights (not the biases), scaled by the batch length as in
        scikit-learn's MLP.

    weight_decay : float, default=0.0
        Decoupled weight decay (AdamW, Loshchilov and Hutter, ICLR 2019; with sgd,
        SGDW): before each step every weight (not the biases) is multiplied by
        ``1 - lr * weight_decay``, with ``lr`` the member's current learning rate,
        whatever the gradient. Unlike ``alpha``, which adds to the gradient and is
        rescaled by adam's normalisation, its strength does not depend on the
        gradients' size. 0 turns it off.

    batch_size : int or "auto", default="auto"
        Rows per step per member; ``"auto"`` is ``min(64, n_rows)`` (scikit-learn's MLP
        uses 200: smaller batches trained better ensembles in
        ``benchmarks/bench_quality.py`` and keep the compiled member-major kernel in use),
        and 256 when each member trains on 40,000 rows or more (see ``learning_rate``;
        the user guide's "Defaults and data size" gives the measurements). Any int >= 1,
        including 1, is supported.

    learning_rate : {"auto", "constant", "invscaling", "adaptive", "warmup_cosine"}, \
            default="auto"
        Schedule of the step size. ``"auto"`` follows the data's size, with ``n`` the rows
        each member trains on: ``"constant"`` with early stopping in general;
        ``"warmup_cosine"`` with a peak rate of ``learning_rate_init * sqrt(batch_size /
        64)`` when ``n >= 40,000`` (large data: a bounded budget of epochs, see
        ``max_iter``, instead of epochs until the loss stalls); ``"warmup_cosine"`` when
        ``early_stopping="auto"`` finds too few rows to validate on (small data: the
        annealing ends the fit, so it does not warn that members ran out of epochs);
        ``"constant"`` in ``partial_fit``. The other values
        apply at every size. The first three are scikit-learn's MLP schedules for
        sgd (ignored by adam); ``"adaptive"`` divides a member's rate by 5 each time its
        loss stalls. ``"warmup_cosine"`` (both solvers) raises the rate linearly from
        ``learning_rate_init / w`` to ``learning_rate_init`` over the first ``w`` epochs,
        ``w = max(1, max_iter // 20)``, then lowers it along a half cosine to 0 at epoch
        ``max_iter``; the rate is set once per epoch.

    learning_rate_init : float, default=2e-3
        Initial step size. Twice scikit-learn's MLP default: with per-member early
        stopping it ranked best of a sweep on the benchmark's tuning half and won 4 of 6
        held-out data sets against 1e-3, in about 0.7 of the fit time
        (``benchmarks/results/quality_ablation_sweep.json``).

    power_t : float, default=0.5
        Exponent of ``"invscaling"``.

    max_iter : int or "auto", default="auto"
        Maximum number of epochs of each member. ``"auto"``: 200 (scikit-learn's MLP
        default), except where ``learning_rate="auto"`` anneals: when each member
        trains on ``n >= 40,000`` rows, ``2,700,000 / n`` epochs (a budget of rows
        visited) within [15, 60]; 50 on data too small to validate on. An int is kept
        as given, also as the length of an annealing schedule.

    shuffle : bool, default=True
        Whether each member visits its rows in a new random order every epoch.

    tol : float, default=1e-4
        A member stops when its loss (validation loss with ``early_stopping``) has not
        improved by at least ``tol`` for ``n_iter_no_change`` consecutive epochs.

    n_iter_no_change : int, default=10
        Patience of the stopping rule, in epochs.

    plateau_decays : int, default=0
        How many times a member whose stopping criterion ran out of patience goes on
        instead, with its learning rate divided by 10 and, when it validates, from its
        best weights so far. 0 stops at the first plateau, as scikit-learn's MLP does.
        Not used with ``solver="sgd", learning_rate="adaptive"``, whose own rule
        divides the rate by 5 on a plateau.

    prune : {None, "halving"}, default=None
        ``"halving"``: successive halving during training. At epochs
        ``n_iter_no_change``, twice that, four times that and so on, the members still
        training whose best validation loss is in the worse half stop there, so the
        epochs go to the promising ones; meant for ``member_params``. Halving stops once
        only ``prune_keep`` of the members are left unpruned. Pruned members leave the
        ensemble: their ``ensemble_weights_`` are 0 (``predict`` and ``to_torch()`` skip
        them), selection and the out-of-bag score leave them out, and
        ``predict_members`` still returns them. Members compete, and ``prune_keep``
        applies, within their training group (the members that share architecture, on
        CUDA only depth, activation, weight decay and label smoothing) and, with
        ``n_jobs``, within their chunk. ``stop_reason_`` records ``"pruned"``. Needs
        early stopping.

    prune_keep : float in (0, 1], default=0.5
        With ``prune="halving"``, the fraction of each training group's ``n`` members
        that halving leaves unpruned: it stops no more once ``ceil(prune_keep * n)``
        (at least 1) remain, counting members that stopped on their own. A tiny value
        halves until one member per group is left; 1 prunes nothing. With 70 members and
        ``member_params="auto"`` on the benchmark's tuning half, 0.5 ranked above 0.25
        and halving down to one (``benchmarks/results/quality_hpo_prune.json``): at the
        default ``n_iter_no_change=10``, the worse half stops at epoch 10.

    early_stopping : bool or "auto", default="auto"
        Whether each member stops on its own validation loss and ends with its best
        weights. ``"auto"`` stops when each member's validation set would hold at least
        20 rows (200 training rows at ``validation_fraction=0.1``); ``early_stopping_``
        says what it resolved to. It validates on its out-of-bag rows when
        ``bootstrap=True``, otherwise on a held-out ``validation_fraction`` of the training
        data. With
        ``oob_score=True`` too, each member instead holds out its own
        ``validation_fraction`` before drawing its bootstrap sample and stops on those
        rows, which ``oob_score_`` never uses: a score on the rows that chose each
        member's weights would be optimistic.

    validation_fraction : float, default=0.1
        Held-out fraction for ``early_stopping`` without bootstrap, or with
        ``oob_score=True``.

    momentum : float, default=0.9
        Momentum of sgd.

    nesterovs_momentum : bool, default=True
        Whether sgd uses Nesterov's momentum.

    beta_1 : float, default=0.9
        Decay of adam's first-moment estimate; lion's interpolation of its momentum
        and the gradient.

    beta_2 : float, default=0.999
        Decay of adam's second-moment estimate; of lion's momentum.

    epsilon : float, default=1e-8
        Adam's numerical-stability constant.

    bootstrap : bool, default=False
        Whether each member draws its rows with replacement. The default trains every
        member on all rows, differing only by initialisation and order, which usually
        gives the more accurate neural ensemble.

    max_samples : int or float, default=1.0
        Rows drawn per member: a count, or a fraction of the training rows.

    max_features : int or float, default=1.0
        Features each member sees: a count, or a fraction of the features (at least
        one), as in scikit-learn's bagging. Each member's first layer reads only its own
        features, so a member is blind to changes in the others.

    bootstrap_features : bool, default=False
        Whether each member draws its features with replacement.

    input_scaling : {"standard", "robust"}, default="robust"
        How inputs are scaled before the members read them. ``"standard"``: each
        column to zero mean and unit variance. ``"robust"``: then centred on its median,
        divided by its interquartile range (as a standard deviation) and smoothly
        clipped, ``r / sqrt(1 + (r / 3)^2)``, so heavy tails and outliers stop dominating
        (as in RealMLP, Holzmüller et al. 2024); from 40,000 training rows on the tails
        are compressed as ``3 asinh(r / 3)`` instead, which keeps far values apart where
        the clipping makes them equal (a feature whose tail predicts linearly, such as a
        departure delay, needs that, and large data can learn it). Fitted on the
        training data (weighted by ``sample_weight``); ``to_torch()`` applies it too.

    numeric_encoding : {"none", "piecewise_linear"}, default="piecewise_linear"
        ``"piecewise_linear"`` gives the members, next to each scaled feature, its
        piecewise-linear encoding over ``n_bins`` quantile bins of the training data
        (Gorishniy et al., "On Embeddings for Numerical Features", NeurIPS 2022): the
        first layer then reads ``n_features * (1 + n_bins)`` columns.

    n_bins : int, default=24
        Quantile bins per feature for ``numeric_encoding="piecewise_linear"`` (fewer
        where a feature has fewer distinct values). 24 ranked ahead of 8 and 16 on the
        benchmark's tuning half and on the large data sets of
        ``benchmarks/bench_scale.py`` (``benchmarks/results/quality_ablation_bins.json``;
        the user guide's "Defaults and data size"); the first layer reads a value's bins
        from their structure, so more bins cost little time.

    categorical_features : "from_dtype", array-like of int, str or bool, or None, \
            default="from_dtype"
        Which columns are categorical. ``"from_dtype"``: the columns of a pandas or polars
        DataFrame whose dtype is ``category``, ``object`` or a string dtype (as
        :class:`~sklearn.ensemble.HistGradientBoostingRegressor`); a list of column indices
        or names, or a boolean mask, names them (the only way for an array, whose columns
        are otherwise numbers); None: none. Boolean columns are numbers (0/1).
        Categorical columns need no
        preprocessing: each reaches the first layer as one input per level (a one-hot), so
        each member learns a row of weights per level, its embedding of that level. A
        level unseen in training, or kept by neither ``max_categories`` nor
        ``min_frequency``, shares one "infrequent" row; a missing value has its own. Numeric
        columns may hold missing values (NaN, None): they are imputed with the column's
        training median and flagged by an extra input (for the columns that had missing
        values in training). A column with no value at all, or mixing strings and numbers,
        raises a ``ValueError`` that names it.

    max_categories : int, default=64
        Most levels a categorical column keeps (the most frequent ones).

    min_frequency : int, default=5
        Fewest rows (total ``sample_weight``, in units of its mean) a level needs to keep
        its own row; rarer levels share the "infrequent" one.

    oob_score : bool, default=False
        Whether to score the ensemble on out-of-bag rows: each training row predicted
        only by the members that did not draw it (nor, with ``early_stopping``, hold
        it out to stop on). Requires ``bootstrap=True``. It scores the unweighted
        average of those members, whatever ``ensemble_selection``: the selection may
        have chosen its weights on these very rows.

    ensemble_selection : int or None, default=None
        Weigh the members by greedy forward selection with replacement (Caruana et
        al., 2004) for this many rounds. Each member is judged on its validation rows:
        the rows it held out to stop on (``early_stopping`` without bootstrap, or with
        ``oob_score=True``), otherwise the rows it did not draw (out-of-bag rows, with
        ``bootstrap=True`` or ``max_samples < 1``). Each round adds, possibly again,
        the member that most lowers the ensemble's validation log-loss (of the averaged
        probabilities); the ensemble of the best round is that run's result. The
        selection runs on 20 bootstrap resamples of the validation rows and
        ``ensemble_weights_`` is the mean of their weights (bagged selection), kept
        only if the runs beat the uniform average on the rows their resamples left
        out, and if the weights beat it on all validation rows; otherwise every member
        weighs the same (one selection on all rows overfits them). Members that
        ``prune`` stopped are not candidates and weigh 0. ``predict_proba`` then takes
        the weighted mean of the probabilities and skips members of weight 0, as does
        ``to_torch()``. How rows that only some members validate on are scored: see
        Notes. A warm start selects again among all members not pruned. ``None``:
        every member weighs the same (pruned ones 0). Needs validation rows: without
        bootstrap, ``early_stopping`` or ``max_samples < 1`` it raises a ``ValueError``;
        ``partial_fit`` cannot select.

    member_params : None, "auto" or dict, default=None
        Hyperparameters each member draws for itself, like ``RandomizedSearchCV``'s
        ``param_distributions``: a dict mapping ``"learning_rate_init"``, ``"alpha"``,
        ``"momentum"`` (sgd), ``"hidden_layer_sizes"``, ``"activation"``,
        ``"label_smoothing"``, ``"weight_decay"``, ``"max_samples"``, ``"numeric_encoding"``
        or ``"n_bins"`` to a list of values (one drawn uniformly) or a ``scipy.stats``
        distribution (one value drawn with its ``rvs``). Each member draws from its own
        seed, so a warm start that adds members draws what one fit of all of them would.
        Members that differ only in rates, L2 strengths, momentum or ``max_samples`` train
        as one stacked computation with per-member vectors in the optimizer; members of
        different depths (of different architectures on the CPU), activations, label
        smoothings, weight decays or (on the CPU) input widths train as separate groups
        (draw those from short lists). A member's ``max_samples`` is its own number of rows;
        a member that draws fewer rows than the largest passes over them more than once per
        epoch (its rows repeated), so that every member takes the same steps per epoch. A
        member's ``numeric_encoding`` and ``n_bins`` choose the columns it reads: the values
        alone, or the values and the bins of its own count; the bins of every count in the
        ``"n_bins"`` list are computed once for all, so those two take lists only; a member
        whose encoding is ``"none"`` (drawn, or the estimator's) reads the values alone
        whatever its ``n_bins``. The values override the estimator's parameters of those
        names. ``"auto"``: log-uniform ``learning_rate_init`` in [5e-4, 2e-3] and ``alpha``
        in [1e-5, 1e-3], and ``activation`` ``"relu"`` or ``"tanh"``; members keep
        ``hidden_layer_sizes``. ``ensemble_selection`` can then weigh the members (with
        ``"auto"`` and 10 members it made the accuracy benchmark's held-out half worse).
        With ``init="mothernet"`` members cannot draw ``"activation"``,
        ``"numeric_encoding"`` or ``"n_bins"``. None: every member uses the estimator's
        values.

    warm_start : bool, default=False
        When True and ``n_estimators`` has been raised, ``fit`` trains only the new
        members and keeps the existing ones unchanged (scikit-learn's bagging meaning).

    init : {"random", "mothernet"}, default="random"
        How members start. ``"mothernet"`` (MotherNets, Wasay et al. 2020) first trains
        one small network per cluster of member architectures, with early stopping on a
        held-out ``validation_fraction``, then grows every member from its cluster's
        network by function-preserving widening (Net2WiderNet) and deepening
        (Net2DeeperNet: identity layers, exact for relu and identity; for tanh and
        logistic a near-linear layer whose error is about ``1 / (3 * 10**2)`` per unit),
        adds ``mothernet_noise``, and trains the members as usual, typically for far
        fewer epochs. Needs ``max_features=1.0``.

    n_mothernets : int, default=1
        Clusters of member architectures, one MotherNet each: 1 is cheapest;
        ``n_estimators`` gives every member its own.

    mothernet_noise : float, default=0.01
        Standard deviation of the noise added to hatched members, relative to each
        layer's weight scale, so that copied units and members diverge.

    n_jobs : int, default=None
        Number of jobs that train the members in parallel: the members are split into
        ``n_jobs`` contiguous chunks, trained through joblib (worker processes, with
        joblib's default loky backend) and merged into one ensemble. ``None`` means 1
        unless in a ``joblib.parallel_backend`` context, ``-1`` all processors.
        Inside ``joblib.parallel_backend("dask")`` the chunks run on the Dask cluster
        (``None``: one per worker thread), the training data sent to each worker once.
        The cores are shared out between the chunks; with ``device="cuda"`` and several
        visible GPUs, chunk ``i`` trains on ``cuda:(i mod n_gpus)``. With the numba
        engine on the CPU the members are the ones ``n_jobs=1`` trains, bit for bit
        (see Notes).

    random_state : int, RandomState instance or None, default=None
        Seeds every member's initialisation, rows and order. An int makes fits
        reproducible (identical predictions on the CPU).

    device : str, default="auto"
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. Fitted
        weights are kept on the CPU, so a model fitted on a GPU loads anywhere.

    engine : {"auto", "reference", "batched", "numba", "triton"}, default="auto"
        Implementation of the training epoch. All compute the same updates; ``"auto"``
        picks the fastest for the device and batch size. See ``engine_``.

    verbose : int, default=0
        Print the mean loss and the number of members still training every epoch.

    label_smoothing : float in [0, 1), default=0.0
        Members fit ``(1 - label_smoothing) * onehot + label_smoothing / n_classes``
        instead of the one-hot labels; early stopping and every score still use the true
        labels. Smoothing keeps members from pushing their probabilities to 0 and 1.

    class_weight : dict, "balanced" or None, default=None
        Weights of the classes, as in scikit-learn
        (:func:`~sklearn.utils.class_weight.compute_sample_weight`): a dict
        ``{class_label: weight}`` (classes it does not name weigh 1), or ``"balanced"``,
        ``n_samples / (n_classes * np.bincount(y))`` over the rows passed to ``fit``;
        None: every class weighs 1. Each row's weight is multiplied into its
        ``sample_weight``, and everything then reads the product as it reads
        ``sample_weight`` (see Notes): fitting with ``class_weight`` gives the
        predictions that passing the product as ``sample_weight`` gives. A dict that
        names a label the data does not have, or a weight that is negative or not
        finite, raises a ``ValueError``. ``partial_fit`` takes a dict (each call's rows
        weighed by it) but refuses ``"balanced"``, as
        :class:`~sklearn.linear_model.SGDClassifier` does: a batch's class counts are
        not the data's.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels.

    n_features_in_ : int
        Number of features seen during fit.

    early_stopping_ : bool
        Whether members stopped on validation rows (``early_stopping`` resolved).

    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of the features, when ``X`` has string column names.

    coefs_ : list of ndarray
        ``coefs_[i]`` has shape ``(n_estimators, fan_in, fan_out)``: layer ``i``'s weights of
        every member (in the internally standardised units); the last layer has one
        output per class.

    intercepts_ : list of ndarray
        ``intercepts_[i]`` has shape ``(n_estimators, fan_out)``.

    estimators_samples_ : list of ndarray
        Rows each member trained on (repeats under bootstrap), recomputed from the
        members' seeds.

    estimators_features_ : list of ndarray
        Features each member sees.

    oob_score_ : float
        Accuracy of ``oob_decision_function_`` over the rows that have one (with
        ``oob_score=True``).

    ensemble_weights_ : ndarray of shape (n_estimators,)
        Each member's weight in the prediction; sums to 1. Without
        ``ensemble_selection`` (and after ``partial_fit``) every member weighs the same,
        except those ``prune`` stopped, which weigh 0.
        ``predict_proba_members`` returns all members, unweighted.

    stop_reason_ : ndarray of shape (n_estimators,), dtype=object
        Why each member stopped training in ``fit``: ``"no improvement"`` (its stopping
        criterion ran out of patience), ``"pruned"`` (``prune``), ``"max_iter"`` or
        ``"interrupted"``; the epoch is in ``n_iter_per_member_``. None for members
        only ``partial_fit`` trained, when a warm start adds members to them.

    member_params_ : list of dict
        With ``member_params``: the values each member drew, in member order.

    selection_score_ : float
        With ``ensemble_selection``: validation loss of the weighted ensemble, the
        log-loss of its averaged probabilities; lower is better.

    uniform_score_ : float
        With ``ensemble_selection``: the same loss of the uniform average of all
        members (but those ``prune`` stopped) on the same rows; never below
        ``selection_score_``.

    oob_decision_function_ : ndarray of shape (n_samples, n_classes)
        Mean class probabilities of the members that did not draw each training row
        (but those ``prune`` stopped); NaN for rows every member drew (a warning says
        so).

    hidden_layer_sizes_ : list of tuple
        Each member's hidden-layer widths.

    mothernet_hidden_layer_sizes_ : list of tuple
        With ``init="mothernet"``: each MotherNet's architecture.

    mothernet_labels_ : ndarray of shape (n_estimators,)
        With ``init="mothernet"``: the MotherNet (cluster) each member grew from.

    mothernet_n_iter_ : ndarray of shape (n_mothernets,)
        With ``init="mothernet"``: epochs each MotherNet trained.

    mothernet_fit_time_ : float
        With ``init="mothernet"``: seconds spent training the MotherNets (not included
        in ``fit_time_``, which covers the members).

    n_iter_ : int
        Most epochs any member ran.

    n_iter_per_member_ : ndarray of shape (n_estimators,)
        Epochs each member ran.

    t_ : int
        Rows seen by the longest-training member (``n_iter_`` epochs of its rows).

    loss_curve_ : ndarray of shape (``n_iter_``, n_estimators)
        Each member's mean training cross-entropy per epoch (without the L2 penalty);
        NaN after a member stopped.

    validation_loss_curve_ : ndarray of shape (``n_iter_``, n_estimators)
        With ``early_stopping``: each member's validation cross-entropy per epoch.

    validation_scores_ : ndarray of shape (``n_iter_``, n_estimators)
        With ``early_stopping``: each member's validation accuracy per epoch.

    best_validation_loss_ : ndarray of shape (n_estimators,)
        With ``early_stopping``: the loss of the weights each member kept.

    engine_ : str or tuple of str
        The engine that trained the members (one per group when groups differed). With
        ``engine="auto"`` on CUDA, if the Triton kernel failed to compile or launch on
        the device, training went on with the graphed engine, a ``RuntimeWarning`` said
        why, and this reads ``"graphed (triton failed: <error type>)"``.

    device_ : str or tuple of str
        The device they were trained on; with ``n_jobs`` on several GPUs, each device
        the chunks used, in chunk order.

    fit_time_ : float
        Seconds spent in the training loop; with ``n_jobs > 1``, the wall-clock time of
        the parallel training, sending the data and merging included.

    See Also
    --------
    NeuralBaggingRegressor : The regression counterpart.
    sklearn.neural_network.MLPClassifier : One network.
    sklearn.ensemble.BaggingClassifier : Bagging of any estimator, one member at a time.

    Notes
    -----
    Binary problems use two softmax outputs, so every problem has one code path.
    Members never interact during training, so each keeps its own optimizer state and
    stopping rule. A diverging member (non-finite loss) raises a ``ValueError`` that
    names the remedy instead of producing NaN probabilities.

    With ``ensemble_selection``, most validation rows belong to some members only (a
    member's held-out or out-of-bag rows). Every row that some member validates on is
    scored; on it, a weighted ensemble's prediction takes each member that does not
    validate on the row to predict the row's validation average ``m_i`` (the plain
    mean of the members that do, i.e. the out-of-bag prediction): ``p_i = m_i +
    sum(w_e * (v_ei - m_i))`` over the members ``e`` that validate on row ``i``. The
    validation loss is the mean of the rows' losses (weighted by ``sample_weight``), so
    ``uniform_score_`` is the loss of the out-of-bag (or held-out) average, and where
    members share their validation rows it is the plain loss of the weighted
    ensemble. Members with no validation row are never selected. Selection weighs
    members by rows that also stopped them (with ``early_stopping``) and by as few rows
    as each member validates on: with members that differ only by their seeds it
    rarely beats the uniform average on new data; it pays off when some members are
    clearly worse than others (other architectures or hyperparameters).

    ``class_weight`` acts through the rows' weights, ``class_weight[y_i] *
    sample_weight_i`` (scaled to mean 1). They weigh the rows in the input scaling's
    statistics, in each member's training loss and, with ``early_stopping``, in its
    validation loss and validation accuracy (``validation_scores_``, the rows the
    members stop on weighed like the training rows), and in ``ensemble_selection``'s
    loss. With ``bootstrap=True`` members draw their rows with probabilities
    proportional to them instead of weighing the loss (scikit-learn's bagging reads
    ``sample_weight`` so), so rare classes are drawn more often. ``"balanced"`` is
    computed once, over all the rows passed to ``fit``, before any member draws or holds
    out its rows. ``oob_score_`` and :meth:`score` are plain accuracies, unweighted unless
    ``score`` is given ``sample_weight``.

    With ``n_jobs``, each member trains as it would in one process: its rows, features,
    hold-out rows, initial weights and visiting orders come from its own seed and
    position, and the OOB score and ensemble selection are computed after the merge,
    over all members; a warm start trains only the new members, in chunks. On the CPU the
    numba engine (what ``engine="auto"`` runs up to ``batch_size=64``) gives the same
    members, bit for bit, for any ``n_jobs``, processes or Dask cluster; the torch
    engines (``"batched"``, ``"reference"``) do too with MKL's reproducible mode on in
    every process (``MKL_CBWR=AUTO,STRICT`` set before Python starts), and otherwise
    agree to float32 rounding: MKL picks its matrix-product code by the number of
    stacked members. If a worker raises or dies, or ``KeyboardInterrupt`` arrives,
    ``fit`` stops the outstanding chunks (Dask tasks are cancelled, and one already
    running finishes unseen; loky's worker processes are killed) and raises. A
    ``fit`` that raises leaves the estimator as it was before the call; with
    ``n_jobs=1`` an interrupt instead stops training and keeps the weights learnt so
    far, as scikit-learn's MLP does.

    References
    ----------
    .. [1] Leo Breiman, "Bagging predictors", Machine Learning 24(2), 1996.
    .. [2] B. Lakshminarayanan, A. Pritzel, C. Blundell, "Simple and scalable predictive
       uncertainty estimation using deep ensembles", NeurIPS 2017.
    .. [3] R. Caruana, A. Niculescu-Mizil, G. Crew, A. Ksikes, "Ensemble selection from
       libraries of models", ICML 2004.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from skensemble import NeuralBaggingClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = NeuralBaggingClassifier(n_estimators=5, random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 3)
    >>> bool(clf.score(X, y) > 0.9)
    True
    """

    _parameter_constraints = {
        **BaseNeuralBagging._parameter_constraints,
        "label_smoothing": [Interval(Real, 0.0, 1.0, closed="left")],
        "class_weight": [StrOptions({"balanced"}), dict, None],
    }

    def __init__(
        self,
        n_estimators=10,
        *,
        hidden_layer_sizes=(100,),
        activation="relu",
        solver="adam",
        alpha=1e-4,
        weight_decay=0.0,
        batch_size="auto",
        learning_rate="auto",
        learning_rate_init=2e-3,
        power_t=0.5,
        max_iter="auto",
        shuffle=True,
        tol=1e-4,
        n_iter_no_change=10,
        plateau_decays=0,
        prune=None,
        prune_keep=0.5,
        early_stopping="auto",
        validation_fraction=0.1,
        momentum=0.9,
        nesterovs_momentum=True,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        bootstrap=False,
        max_samples=1.0,
        max_features=1.0,
        bootstrap_features=False,
        input_scaling="robust",
        numeric_encoding="piecewise_linear",
        n_bins=24,
        categorical_features="from_dtype",
        max_categories=64,
        min_frequency=5,
        oob_score=False,
        ensemble_selection=None,
        member_params=None,
        warm_start=False,
        init="random",
        n_mothernets=1,
        mothernet_noise=0.01,
        n_jobs=None,
        random_state=None,
        device="auto",
        engine="auto",
        verbose=0,
        label_smoothing=0.0,
        class_weight=None,
    ):
        super().__init__(
            n_estimators=n_estimators,
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            solver=solver,
            alpha=alpha,
            weight_decay=weight_decay,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            shuffle=shuffle,
            tol=tol,
            n_iter_no_change=n_iter_no_change,
            plateau_decays=plateau_decays,
            prune=prune,
            prune_keep=prune_keep,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            bootstrap=bootstrap,
            max_samples=max_samples,
            max_features=max_features,
            bootstrap_features=bootstrap_features,
            input_scaling=input_scaling,
            numeric_encoding=numeric_encoding,
            n_bins=n_bins,
            categorical_features=categorical_features,
            max_categories=max_categories,
            min_frequency=min_frequency,
            oob_score=oob_score,
            ensemble_selection=ensemble_selection,
            member_params=member_params,
            warm_start=warm_start,
            init=init,
            n_mothernets=n_mothernets,
            mothernet_noise=mothernet_noise,
            n_jobs=n_jobs,
            random_state=random_state,
            device=device,
            engine=engine,
            verbose=verbose,
        )
        self.label_smoothing = label_smoothing
        self.class_weight = class_weight

    def _task(self):
        return Classification(self.label_smoothing)

    def _row_weights(self, y, classes, previous):
        """``class_weight`` of each row's class ``(N,)`` float64, or None without one.

        The labels a dict may name: ``classes`` (``partial_fit``'s first call), the
        fitted ``classes_`` (later calls), or those of ``y``.
        """
        cw = self.class_weight
        if cw is None:
            return None
        if isinstance(cw, dict):
            if classes is not None:
                known = np.unique(classes)
            elif previous is not None:
                known = previous.targets.classes
            else:
                known = np.unique(y)
            known_set = set(known.tolist())
            unknown = [k for k in cw if k not in known_set]
            if unknown:
                raise ValueError(
                    f"class_weight names {unknown}, which are not classes of the data; "
                    f"the classes are {known.tolist()}. Name only these (a class left out "
                    "weighs 1).")
            bad = {k: v for k, v in cw.items()
                   if isinstance(v, (bool, np.bool_)) or not isinstance(v, (Real, np.number))
                   or not np.isfinite(v) or v < 0}
            if bad:
                raise ValueError(
                    f"class_weight must map classes to finite non-negative numbers; got "
                    f"{bad}.")
            # scikit-learn's mapping; compute_sample_weight would also refuse a dict that
            # names a class a partial_fit batch lacks
            y = np.asarray(y)
            weights = np.ones(y.shape[0])
            for label, weight in cw.items():
                weights[y == label] = float(weight)
            return weights
        return compute_sample_weight("balanced", y)

    classes_ = FittedAttribute(lambda f: f.targets.classes)
    oob_decision_function_ = FittedAttribute(
        lambda f: None if f.oob is None else f.oob["oob_decision_function_"],
        "it is set by fit with oob_score=True")

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Run one more epoch for every member on ``(X, y)``.

        The first call initialises the members and the internal scaling from this data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows.
        y : array-like of shape (n_samples,)
            Labels.
        classes : array-like of shape (n_classes,), default=None
            Every label the ensemble will ever see: required on the first call, as
            for :class:`~sklearn.neural_network.MLPClassifier` (ignored afterwards).
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights, as in :meth:`fit`.

        Returns
        -------
        self : object
            The updated estimator.
        """
        if self.class_weight == "balanced":  # as SGDClassifier
            raise ValueError(
                "class_weight='balanced' is computed from the class counts of all the "
                "training rows, which partial_fit never sees at once. Pass a dict, e.g. "
                "dict(zip(classes, sklearn.utils.class_weight.compute_class_weight("
                "'balanced', classes=classes, y=y_all))), or use fit.")
        if "_fitted" not in self.__dict__:
            self._validate_params()
            if classes is None:  # as MLPClassifier: a batch may not show every label
                raise ValueError("classes must be passed on the first call to partial_fit.")
        return self._partial_fit(X, y, sample_weight, classes=classes)

    @_dask.per_partition
    def predict_proba(self, X):
        """Class probabilities: the mean of the members' softmax outputs.

        Weighted by ``ensemble_weights_``; members of weight 0 are not computed.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input rows. A Dask array or DataFrame gives a lazy Dask array, computed
            partition by partition on the workers (:ref:`dask_input`).

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Float64 probabilities in the order of ``classes_``; rows sum to 1.
        """
        def reduce(p, w):  # (E, n, K) -> (n, K)
            return p.mean(0) if w is None else (w[:, None, None] * p).sum(0)

        proba = self._member_outputs(X, reduce, weighted=True)  # (n, K)
        self._check_finite(proba)
        return proba / proba.sum(axis=1, keepdims=True)

    @_dask.per_partition
    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input rows. A Dask array or DataFrame gives a lazy Dask array, computed
            partition by partition on the workers (:ref:`dask_input`).

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Log-probabilities, computed in log space (finite even where every member's
            probability underflows).
        """
        check_is_fitted(self)
        E = self._fitted.n_members

        def reduce(out, w):  # raw (E, n, K): log of the (weighted) mean of softmaxes
            logp = torch.log_softmax(out, dim=-1)  # (E, n, K)
            if w is None:
                return torch.logsumexp(logp, dim=0) - np.log(E)
            return torch.logsumexp(logp + w.log()[:, None, None], dim=0)

        logp = self._member_outputs(X, reduce, transform=False, weighted=True)  # (n, K)
        self._check_finite(logp)
        return logp

    @_dask.per_partition
    def predict(self, X):
        """Most probable class under the averaged probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input rows. A Dask array or DataFrame gives a lazy Dask array, computed
            partition by partition on the workers (:ref:`dask_input`).

        Returns
        -------
        ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        proba = self.predict_proba(X)  # checks fitted before classes_ is touched
        return self.classes_[np.argmax(proba, axis=1)]

    def score(self, X, y, sample_weight=None):
        """Mean accuracy of :meth:`predict` on ``(X, y)`` (scikit-learn's ``ClassifierMixin``).

        With Dask collections (``X``, ``y`` and, if given, ``sample_weight`` with the same
        partitions), the predictions are computed on the workers, and they, ``y`` and
        ``sample_weight`` come to this process, one value per row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Test rows.
        y : array-like of shape (n_samples,)
            True labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights.

        Returns
        -------
        float
            The (weighted) share of rows whose label :meth:`predict` gets right.
        """
        if not _dask.is_dask(X, y, sample_weight):
            return super().score(X, y, sample_weight=sample_weight)
        pred, y, sample_weight = _dask.gather_scored(X, self.predict(X), y, sample_weight)
        return float(accuracy_score(y, pred, sample_weight=sample_weight))

    @_dask.per_partition(axis=1)
    def predict_proba_members(self, X):
        """Every member's class probabilities.

        All members, also those that ``ensemble_selection`` or ``prune`` gave weight 0;
        the weights are in ``ensemble_weights_``, and ``np.tensordot(ensemble_weights_,
        predict_proba_members(X), 1)`` is :meth:`predict_proba` (up to rounding).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input rows. A Dask array or DataFrame gives a lazy Dask array, computed
            partition by partition on the workers (:ref:`dask_input`).

        Returns
        -------
        ndarray of shape (n_estimators, n_samples, n_classes)
            Float64 probabilities of each member.
        """
        res = self._member_outputs(X, lambda p: p.transpose(0, 1))  # (n, E, K)
        self._check_finite(res)
        return res.transpose(1, 0, 2)
