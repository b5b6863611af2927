"""Cross-validated decoding of a label from per-trial features, with its chance level and a shuffle control
(the statistics of the information probe, :mod:`encephagen_gym.agents.probe`).

Standardised features, multinomial logistic regression with a fixed L2 penalty (:data:`DEFAULT_C`), stratified
k-fold cross-validation; reported: the accuracy of the pooled out-of-fold predictions with its 95 % Wilson
interval, the majority-class rate (chance) and the accuracy of the same cross-validation on permuted labels.
"""

from __future__ import annotations

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

__all__ = ["DEFAULT_C", "DEFAULT_FOLDS", "Decoding", "decode"]

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


def _cross_validated_correct(features: np.ndarray, labels: np.ndarray, folds: int, C: float, seed: int) -> int:
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    correct = 0
    # one BLAS thread: these matrices are small, and threads on a shared CPU slow each fit ten-fold
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        # lbfgs stopping at max_iter on separable folds changes the fit by less than its tolerance
        warnings.simplefilter("ignore", ConvergenceWarning)
        for train, test in splitter.split(features, labels):
            scaler = StandardScaler().fit(features[train])
            fit_on, predict_on = scaler.transform(features[train]), scaler.transform(features[test])
            if fit_on.shape[1] > fit_on.shape[0]:
                # The L2-penalised weights lie in the span of the training samples (the loss gradient does and
                # the penalty keeps nothing outside it), so fitting on the coordinates in an orthonormal basis
                # of that span is the same model — with at most n_train features instead of thousands.
                basis = _sample_span(fit_on)
                fit_on, predict_on = fit_on @ basis, predict_on @ basis
            model = LogisticRegression(C=C, max_iter=1000).fit(fit_on, labels[train])
            correct += int((model.predict(predict_on) == labels[test]).sum())
    return correct


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
    interval = stats.binomtest(correct, y.size).proportion_ci(confidence_level=_CONFIDENCE, method="wilson")
    return Decoding(
        accuracy=correct / y.size, ci_low=float(interval.low), ci_high=float(interval.high),
        chance=float(counts.max() / y.size), shuffle_accuracy=shuffle_correct / y.size, n_trials=int(y.size),
        n_classes=int(classes.size), n_folds=n_folds,
    )  # fmt: skip
