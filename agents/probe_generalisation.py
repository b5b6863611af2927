"""Cross-condition generalisation for the information probe: does a decoder of a task variable fitted on one
kind of trial read the variable on another kind?

The probe's tables (:mod:`encephagen_gym.agents.probe`) say whether a population carries a variable. A linear
readout that must serve every trial also needs the *same* code in every trial. On WorkingMemory, for example,
adaptive neurons hold the sample through a long delay as the inverse of what they showed it at a short one
(the cells that fired for the sample are the ones adapted), so one readout cannot serve both. This module
measures that with a generalisation matrix over a *condition* (a task variable that splits the trials, such as
``delay_bin``), for one variable, feature kind, period and population:

- **diagonal** (train = test = condition c): cross-validated within c's trials (pooled out-of-fold predictions,
  stratified folds, as :func:`~encephagen_gym.agents.probe_decoding.decode`);
- **off the diagonal** (train a, test b): fitted on every trial of a, scored on every trial of b;
- **row "all"**: cross-validated over the trials of every condition together, its held-out predictions scored
  per condition: what one decoder of the whole mixture reads in each kind of trial.

Each cell: accuracy, its 95 % Wilson interval over the test trials, and the chance level (the majority-class
rate of the test trials). A cell is NaN where nothing can be fitted (a condition whose trials hold fewer than
two classes of at least two trials each). The model is the probe's (standardised features, L2-penalised
logistic regression, :data:`~encephagen_gym.agents.probe_decoding.DEFAULT_C`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence

import numpy as np

from encephagen_gym.agents.probe import ProbeRecording, TaskVariable, decodable_trials
from encephagen_gym.agents.probe_decoding import (
    DEFAULT_C,
    DEFAULT_FOLDS,
    cross_validated_predictions,
    transfer_predictions,
    wilson_interval,
)
from encephagen_gym.agents.probe_report import accuracy_text, number_text, seed_interval

__all__ = [
    "ALL_CONDITIONS",
    "DEFAULT_MIN_TRIALS",
    "GeneralisationRow",
    "GeneralisationSummary",
    "generalisation_tables",
    "probe_generalisation",
    "summarise_generalisation",
]

#: Conditions with fewer trials than this are left out of a generalisation matrix.
DEFAULT_MIN_TRIALS = 10

#: The ``train`` value of the row whose decoder is fitted on the trials of every condition (cross-validated).
ALL_CONDITIONS = "all"


@dataclasses.dataclass(frozen=True)
class GeneralisationRow:
    """One cell of a generalisation matrix, for one seed: ``variable`` decoded from ``feature`` of
    ``population`` in ``period``, fitted on the trials whose ``condition`` is ``train`` (or
    :data:`ALL_CONDITIONS`) and scored on those whose condition is ``test`` (see the module docstring)."""

    seed: int
    variable: str
    condition: str
    feature: str
    population: str
    n_neurons: int
    period: str
    train: str
    test: str
    accuracy: float
    ci_low: float
    ci_high: float
    chance: float
    n_train: int
    n_test: int


def _natural_key(value: str) -> tuple[float, str]:
    """Conditions in numeric order where they start with a number (``"500_1000ms"`` after ``"0_500ms"``)."""
    match = re.match(r"-?\d+(\.\d+)?", value)
    return (float(match.group()) if match else math.inf, value)


def _score(predicted: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """(accuracy, Wilson low, high) of ``predicted`` against ``labels``; NaN for no trials."""
    if labels.size == 0:
        return math.nan, math.nan, math.nan
    correct = int((predicted == labels).sum())
    return (correct / labels.size, *wilson_interval(correct, labels.size))


def _chance(labels: np.ndarray) -> float:
    """The majority-class rate of ``labels`` (NaN for none)."""
    return float(np.unique(labels, return_counts=True)[1].max() / labels.size) if labels.size else math.nan


def probe_generalisation(
    recording: ProbeRecording,
    populations: Mapping[str, np.ndarray],
    variable: TaskVariable,
    condition: TaskVariable,
    *,
    feature: str | None = None,
    period: str | None = None,
    folds: int = DEFAULT_FOLDS,
    C: float = DEFAULT_C,
    seed: int | None = None,
    min_trials: int = DEFAULT_MIN_TRIALS,
) -> list[GeneralisationRow]:
    """The generalisation matrix of ``variable`` across the values of ``condition`` for each population of
    ``recording`` (rows in order: population, train, test; see the module docstring).

    ``feature``: a feature kind of the recording (default: its leaky trace when it has one, else ``"rate"``);
    ``period``: a trial period (default: the trial's last, e.g. the decision period); ``seed`` (default: the
    recording's) fixes the folds. Trials without the period, the variable or the condition are left out, and so
    are the conditions with fewer than ``min_trials`` trials (e.g. the few delays of exactly 1000 ms that fall
    into the 1000–1500 ms bin when the delays are drawn from 0–1000 ms)."""
    seed = recording.seed if seed is None else seed
    feature = recording.features[-1] if feature is None else feature
    period = recording.periods[-1] if period is None else period
    if feature not in recording.features:
        raise ValueError(f"feature must be one of {recording.features}, got {feature!r}")
    if period not in recording.periods:
        raise ValueError(f"period must be one of {recording.periods}, got {period!r}")
    if variable.name == condition.name:
        raise ValueError(f"the condition must be another variable than the one decoded ({variable.name!r})")
    if not (isinstance(folds, int) and folds >= 2):
        raise ValueError(f"folds must be an integer >= 2, got {folds!r}")
    if not (isinstance(min_trials, int) and min_trials >= 1):
        raise ValueError(f"min_trials must be a positive integer, got {min_trials!r}")
    labels = [variable.extract(outcome) for outcome in recording.outcomes]
    groups = [condition.extract(outcome) for outcome in recording.outcomes]
    known = np.array([label is not None and group is not None for label, group in zip(labels, groups, strict=True)])
    use = recording.present(period) & known
    kept_groups = [str(group) for group, kept in zip(groups, use, strict=True) if kept]
    values, counts = np.unique(kept_groups, return_counts=True)
    values = sorted(values[counts >= min_trials].tolist(), key=_natural_key)
    use &= np.array([str(group) in values for group in groups])
    y = np.array([str(label) for label, kept in zip(labels, use, strict=True) if kept], dtype=object)
    g = np.array([str(group) for group, kept in zip(groups, use, strict=True) if kept], dtype=object)
    rows: list[GeneralisationRow] = []
    for name, neurons in populations.items():
        ids = np.asarray(neurons, dtype=np.int64)
        x = recording.feature_matrix(feature, period, ids)[use].astype(np.float64)
        common = dict(seed=recording.seed, variable=variable.name, condition=condition.name, feature=feature,
                      population=name, n_neurons=int(ids.size), period=period)  # fmt: skip
        for train in [*values, ALL_CONDITIONS]:
            predictions = _predictions(x, y, g, train, folds, C, seed)
            predicted = np.array([p is not None for p in predictions])
            n_train = int(y.size) if train == ALL_CONDITIONS else int((g == train).sum())
            for test in values:
                tested = (g == test) & predicted
                accuracy, low, high = _score(predictions[tested], y[tested])
                rows.append(GeneralisationRow(
                    train=train, test=test, accuracy=accuracy, ci_low=low, ci_high=high, chance=_chance(y[g == test]),
                    n_train=n_train, n_test=int(tested.sum()), **common,
                ))  # fmt: skip
    return rows


def _predictions(x, y, g, train, folds, C, seed) -> np.ndarray:
    """Predicted labels ``[T]`` (None where a trial is not predicted) of the decoder fitted on ``train``'s
    trials: out of fold for its own trials (every trial for :data:`ALL_CONDITIONS`), fitted on all of them for
    the others."""
    predictions = np.full(y.size, None, dtype=object)
    own = np.ones(y.size, dtype=bool) if train == ALL_CONDITIONS else g == train
    fit = decodable_trials(y, own)  # stratified folds need two trials per class
    classes = np.unique(y[fit])
    if classes.size < 2:
        return predictions
    _, index = np.unique(y[fit], return_inverse=True)
    n_folds = int(min(folds, np.bincount(index).min()))
    predictions[fit] = classes[cross_validated_predictions(x[fit], index, n_folds, C, seed)]
    if train != ALL_CONDITIONS:
        others = ~own
        if others.any():
            predictions[others] = transfer_predictions(x[fit], y[fit], x[others], C=C)
    return predictions


@dataclasses.dataclass(frozen=True)
class GeneralisationSummary:
    """One cell over ``n_seeds`` seeds: mean accuracy ± the half-width of its 95 % t-interval (with one seed,
    that seed's Wilson interval in ``ci_low``/``ci_high`` and NaN half-width); mean chance and trial counts."""

    variable: str
    condition: str
    feature: str
    population: str
    n_neurons: int
    period: str
    train: str
    test: str
    n_seeds: int
    accuracy: float
    accuracy_ci: float
    ci_low: float
    ci_high: float
    chance: float
    n_test: float


def summarise_generalisation(
    rows: Sequence[GeneralisationRow], confidence: float = 0.95
) -> list[GeneralisationSummary]:
    """One :class:`GeneralisationSummary` per (variable, condition, feature, population, period, train, test)."""
    groups: dict[tuple, list[GeneralisationRow]] = {}
    for row in rows:
        key = (row.variable, row.condition, row.feature, row.population, row.period, row.train, row.test)
        groups.setdefault(key, []).append(row)
    summaries = []
    for (variable, condition, feature, population, period, train, test), group in groups.items():
        accuracy, half, low, high = seed_interval(group, confidence)
        summaries.append(GeneralisationSummary(
            variable=variable, condition=condition, feature=feature, population=population,
            n_neurons=group[0].n_neurons, period=period, train=train, test=test, n_seeds=len(group),
            accuracy=accuracy, accuracy_ci=half, ci_low=low, ci_high=high,
            chance=float(np.mean([row.chance for row in group])), n_test=float(np.mean([row.n_test for row in group])),
        ))  # fmt: skip
    return summaries


def generalisation_tables(summaries: Sequence[GeneralisationSummary]) -> str:
    """One Markdown table per (variable, condition, feature, population, period): rows = the condition the
    decoder was fitted on (then ``all``), columns = the condition it was scored on; then the chance level and
    the trials scored per column."""
    blocks = []
    keys = list(dict.fromkeys((s.variable, s.condition, s.feature, s.population, s.period) for s in summaries))
    for variable, condition, feature, population, period in keys:
        cells = {(s.train, s.test): s for s in summaries
                 if (s.variable, s.condition, s.feature, s.population, s.period)
                 == (variable, condition, feature, population, period)}  # fmt: skip
        tests = list(dict.fromkeys(test for _, test in cells))
        trains = list(dict.fromkeys(train for train, _ in cells))
        some = next(iter(cells.values()))
        seeds = some.n_seeds
        interval = "mean ± 95 % t-interval over" if seeds > 1 else "accuracy [95 % Wilson interval],"
        lines = [
            f"### `{variable}` across `{condition}`: {population} ({some.n_neurons} neurons), {feature}, {period}",
            "",
            f"Rows: trials the decoder was fitted on; columns: trials it was scored on ({interval} {seeds} "
            f"seed{'s' if seeds > 1 else ''}; the diagonal and `{ALL_CONDITIONS}` cross-validated).",
            "",
            "| fitted on \\ scored on | " + " | ".join(tests) + " |",
            "|---|" + "---|" * len(tests),
        ]
        for train in trains:
            lines.append(f"| {train} | " + " | ".join(accuracy_text(cells.get((train, test))) for test in tests) + " |")
        chance = [cells[(trains[0], test)].chance for test in tests]
        lines.append("| chance (majority class) | " + " | ".join(number_text(c) for c in chance) + " |")
        counts = [cells[(trains[0], test)].n_test for test in tests]
        lines.append("| trials scored (per seed) | " + " | ".join(number_text(n, 0) for n in counts) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
