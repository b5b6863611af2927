"""Cross-validated decoding of a label from per-trial features, with its chance level and a shuffle control
(the statistics of the information probe, :mod:`encephagen_gym.agents.probe`).

Standardised features, multinomial logistic regression with a fixed L2 penalty (:data:`DEFAULT_C`), stratified
k-fold cross-validation; reported: the accuracy of the pooled out-of-fold predictions with its 95 % Wilson
interval, the majority-class rate (chance) and the accuracy of the same cross-validation on permuted labels.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Hashable, Sequence

import numpy as np
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

__all__ = [
    "DEFAULT_C",
    "DEFAULT_FOLDS",
    "Decoding",
    "cross_validated_predictions",
    "decode",
    "transfer_predictions",
    "wilson_interval",
]

#: Inverse L2 penalty of the logistic regression on standardised features (scikit-learn's default), fixed
#: rather than tuned on the data being reported. On a pilot (96×20 brain, seed 99, 200 trials; not a reported
#: seed) C from 0.01 to 10 moved no PatternRecognition accuracy by more than 0.04; C = 0.1 loses accuracy
#: when a few informative features sit among many silent ones.
DEFAULT_C = 1.0

#: Folds of the stratified cross-validation (fewer when a class has fewer trials, at least 2).
DEFAULT_FOLDS = 5

_CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class Decoding:
    """Cross-validated decoding of one label set from one feature matrix (see :func:`decode`).

    ``accuracy``: fraction of correct out-of-fold predictions; ``ci_low``/``ci_high``: its 95 % Wilson
    interval over the ``n_trials`` predictions; ``chance``: majority-class rate; ``shuffle_accuracy``: the same
    cross-validation with permuted labels."""

    accuracy: float
    ci_low: float
    ci_high: float
    chance: float
    shuffle_accuracy: float
    n_trials: int
    n_classes: int
    n_folds: int


def _sample_span(samples: np.ndarray) -> np.ndarray:
    """An orthonormal basis ``[F, ≤ T]`` of a space that holds every row of ``samples`` ``[T, F]``: the right
    singular vectors, or, where LAPACK's SVD does not converge (it happened on a PatternRecognition probe of a
    96×20 brain), Q of a QR factorisation of ``samplesᵀ`` (any extra directions are orthogonal to every sample,
    so the L2-penalised weights on them are zero and the model is the same)."""
    try:
        return np.linalg.svd(samples, full_matrices=False)[2].T
    except np.linalg.LinAlgError:
        return np.linalg.qr(samples.T)[0]


def _fit_predict(train: np.ndarray, labels: np.ndarray, test: np.ndarray, C: float) -> np.ndarray:
    """Labels predicted for ``test`` by the probe's model fitted on (``train``, ``labels``)."""
    scaler = StandardScaler().fit(train)
    fit_on, predict_on = scaler.transform(train), scaler.transform(test)
    if fit_on.shape[1] > fit_on.shape[0]:
        # The L2-penalised weights lie in the span of the training samples (the loss gradient does and the
        # penalty keeps nothing outside it), so fitting on the coordinates in an orthonormal basis of that span
        # is the same model — with at most n_train features instead of thousands.
        basis = _sample_span(fit_on)
        fit_on, predict_on = fit_on @ basis, predict_on @ basis
    return LogisticRegression(C=C, max_iter=1000).fit(fit_on, labels).predict(predict_on)


def _quiet():
    """One BLAS thread (these matrices are small, and threads on a shared CPU slow each fit ten-fold) and no
    convergence warnings (lbfgs stopping at max_iter on separable folds changes the fit by less than its
    tolerance)."""
    stack = contextlib.ExitStack()
    stack.enter_context(threadpool_limits(limits=1, user_api="blas"))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore", ConvergenceWarning)
    return stack


def cross_validated_predictions(
    features: np.ndarray, labels: np.ndarray, folds: int, C: float, seed: int
) -> np.ndarray:
    """Out-of-fold predictions ``[T]`` of stratified ``folds``-fold cross-validation (folds shuffled with
    ``seed``); ``labels`` are class indices."""
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    predictions = np.empty_like(labels)
    with _quiet():
        for train, test in splitter.split(features, labels):
            predictions[test] = _fit_predict(features[train], labels[train], features[test], C)
    return predictions


def _cross_validated_correct(features: np.ndarray, labels: np.ndarray, folds: int, C: float, seed: int) -> int:
    return int((cross_validated_predictions(features, labels, folds, C, seed) == labels).sum())


def wilson_interval(correct: int, n: int) -> tuple[float, float]:
    """95 % Wilson interval of ``correct`` successes in ``n`` trials."""
    interval = stats.binomtest(int(correct), int(n)).proportion_ci(confidence_level=_CONFIDENCE, method="wilson")
    return float(interval.low), float(interval.high)


def transfer_predictions(
    train_features: np.ndarray, train_labels: Sequence[Hashable], test_features: np.ndarray, *, C: float = DEFAULT_C
) -> np.ndarray:
    """Labels (as strings) predicted for ``test_features`` ``[T', F]`` by the probe's model (standardised
    features, L2-penalised logistic regression) fitted on all of (``train_features`` ``[T, F]``,
    ``train_labels``): decoding that generalises from one set of trials to another (e.g. from short to long
    delays). ValueError unless the training trials hold two classes and every feature is finite."""
    x, z = np.asarray(train_features, dtype=np.float64), np.asarray(test_features, dtype=np.float64)
    classes, y = np.unique(np.asarray(train_labels, dtype=object).astype(str), return_inverse=True)
    if x.ndim != 2 or z.ndim != 2 or x.shape[0] != y.size or z.shape[1] != x.shape[1]:
        raise ValueError(f"features must be [T, F] (T = {y.size} labels) and [T', F], got {x.shape} and {z.shape}")
    if not (np.isfinite(x).all() and np.isfinite(z).all()):
        raise ValueError("features contain NaN or infinite values")
    if classes.size < 2:
        raise ValueError(f"the training trials must hold >= 2 classes, got {classes.tolist()}")
    if not (math.isfinite(C) and C > 0):
        raise ValueError(f"C must be a positive number, got {C!r}")
    with _quiet():
        return classes[_fit_predict(x, y, z, C)]


def decode(
    features: np.ndarray, labels: Sequence[Hashable], *, folds: int = DEFAULT_FOLDS, C: float = DEFAULT_C, seed: int = 0
) -> Decoding:
    """Decode ``labels`` (``[T]``, ≥ 2 classes) from ``features`` (``[T, F]``, finite) by stratified k-fold
    cross-validated multinomial logistic regression on standardised features (see the module docstring).

    The folds are ``min(folds, smallest class size)`` (ValueError below 2). ``seed`` fixes the folds and the
    permutation of the shuffle control."""
    x = np.asarray(features, dtype=np.float64)
    classes, y = np.unique(np.asarray(labels, dtype=object).astype(str), return_inverse=True)
    if x.ndim != 2 or x.shape[0] != y.size:
        raise ValueError(f"features must be [T, F] with T = {y.size} labels, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or infinite values")
    if not (isinstance(folds, int) and folds >= 2):
        raise ValueError(f"folds must be an integer >= 2, got {folds!r}")
    if not (math.isfinite(C) and C > 0):
        raise ValueError(f"C must be a positive number, got {C!r}")
    counts = np.bincount(y)
    if classes.size < 2 or counts.min() < 2:
        raise ValueError(f"decoding needs >= 2 classes of >= 2 trials each, got class sizes {counts.tolist()}")
    n_folds = int(min(folds, counts.min()))
    correct = _cross_validated_correct(x, y, n_folds, C, seed)
    shuffled = np.random.default_rng(seed).permutation(y)
    shuffle_correct = _cross_validated_correct(x, shuffled, n_folds, C, seed)
    low, high = wilson_interval(correct, y.size)
    return Decoding(
        accuracy=correct / y.size, ci_low=low, ci_high=high,
        chance=float(counts.max() / y.size), shuffle_accuracy=shuffle_correct / y.size, n_trials=int(y.size),
        n_classes=int(classes.size), n_folds=n_folds,
    )  # fmt: skip
