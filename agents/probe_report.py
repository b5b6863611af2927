"""Reports of the information probe (:mod:`encephagen_gym.agents.probe`): a summary over brain seeds, Markdown
tables, CSV text and heatmap figures.

Over seeds, each cell is the mean accuracy ± the half-width of its 95 % Student-t interval
(:func:`encephagen_gym.stats.mean_ci`); with one seed, the 95 % Wilson interval of that seed's pooled
out-of-fold predictions. A cell is starred when the interval's lower end lies above the chance level
(the majority-class rate). matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from encephagen_gym.agents.probe import ProbeRow
from encephagen_gym.stats import format_mean_ci, mean_ci

__all__ = [
    "CSV_FIELDS",
    "ProbeSummary",
    "accuracy_text",
    "csv_text",
    "decodable",
    "markdown_tables",
    "number_text",
    "plot_probe_heatmap",
    "seed_interval",
    "summarise",
]

#: Columns of the probe's CSV (one row per seed × variable × feature × population × period).
CSV_FIELDS = tuple(field.name for field in dataclasses.fields(ProbeRow))


@dataclasses.dataclass(frozen=True)
class ProbeSummary:
    """One cell of the probe's tables: a variable decoded from one feature kind of a population in a period,
    over ``n_seeds`` seeds. ``accuracy ± accuracy_ci`` (t-interval half-width; NaN for one seed, when
    ``ci_low``/``ci_high`` are that seed's Wilson interval, else mean ∓ half-width); ``chance`` and
    ``shuffle_accuracy`` are means over the seeds; ``n_trials`` the mean number of trials decoded;
    ``n_classes`` the most classes any seed had."""

    variable: str
    feature: str
    population: str
    n_neurons: int
    period: str
    n_seeds: int
    accuracy: float
    accuracy_ci: float
    ci_low: float
    ci_high: float
    chance: float
    shuffle_accuracy: float
    shuffle_ci: float
    n_trials: float
    n_classes: int

    @property
    def above_chance(self) -> bool:
        """The interval's lower end lies above the chance level."""
        return math.isfinite(self.ci_low) and self.ci_low > self.chance


def seed_interval(rows: Sequence[Any], confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(mean accuracy, t-interval half-width, low, high) over the seeds' ``rows`` (anything with ``accuracy``,
    ``ci_low``, ``ci_high``): with one seed, NaN half-width and that seed's Wilson interval."""
    accuracy, half = mean_ci([row.accuracy for row in rows], confidence)
    if len(rows) == 1:
        return accuracy, half, rows[0].ci_low, rows[0].ci_high
    return accuracy, half, accuracy - half, accuracy + half


def accuracy_text(summary: Any) -> str:
    """A table cell for a summary over seeds (``accuracy``, ``accuracy_ci``, ``ci_low``, ``ci_high``,
    ``n_seeds``): ``"m ± h"`` over several seeds, ``"a [low, high]"`` for one, ``"n/a"`` for none."""
    if summary is None or not math.isfinite(summary.accuracy):
        return "n/a"
    if summary.n_seeds > 1:
        return format_mean_ci(summary.accuracy, summary.accuracy_ci)
    return f"{summary.accuracy:.2f} [{summary.ci_low:.2f}, {summary.ci_high:.2f}]"


def number_text(value: float, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals, ``"n/a"`` when not finite."""
    return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"


def summarise(rows: Sequence[ProbeRow], confidence: float = 0.95) -> list[ProbeSummary]:
    """One :class:`ProbeSummary` per (variable, feature, population, period), in the rows' order."""
    groups: dict[tuple, list[ProbeRow]] = {}
    for row in rows:
        groups.setdefault((row.variable, row.feature, row.population, row.period), []).append(row)
    summaries = []
    for (variable, feature, population, period), group in groups.items():
        accuracy, half, low, high = seed_interval(group, confidence)
        shuffle, shuffle_half = mean_ci([row.shuffle_accuracy for row in group], confidence)
        summaries.append(ProbeSummary(
            variable=variable, feature=feature, population=population, n_neurons=group[0].n_neurons, period=period,
            n_seeds=len(group), accuracy=accuracy, accuracy_ci=half, ci_low=low, ci_high=high,
            chance=float(np.mean([row.chance for row in group])), shuffle_accuracy=shuffle, shuffle_ci=shuffle_half,
            n_trials=float(np.mean([row.n_trials for row in group])), n_classes=max(row.n_classes for row in group),
        ))  # fmt: skip
    return summaries


def _ordered(values) -> list:
    return list(dict.fromkeys(values))


def _grid(summaries: Sequence[ProbeSummary], variable: str, feature: str):
    cells = {(s.population, s.period): s for s in summaries if s.variable == variable and s.feature == feature}
    populations = _ordered(population for population, _ in cells)
    periods = _ordered(period for _, period in cells)
    return cells, populations, periods


def _cell(summary: ProbeSummary | None) -> str:
    star = summary is not None and math.isfinite(summary.accuracy) and summary.above_chance
    return accuracy_text(summary) + ("*" if star else "")


def _feature_words(feature: str) -> str:
    if feature == "rate":
        return "spike rate of each neuron in the period"
    return f"leaky spike trace (τ = {feature.removeprefix('trace_')}) of each neuron at the period's start"


def markdown_tables(summaries: Sequence[ProbeSummary], descriptions: Mapping[str, str] | None = None) -> str:
    """One Markdown table per (variable, feature): rows = populations (neurons), columns = periods; then the
    chance level and the range of the shuffled-label control over the populations (see the module docstring
    for the cells)."""
    descriptions = dict(descriptions or {})
    blocks = []
    shown: dict[tuple, str] = {}  # a grid's numbers → the variable first shown with them
    for variable, feature in _ordered((s.variable, s.feature) for s in summaries):
        cells, populations, periods = _grid(summaries, variable, feature)
        any_cell = next(iter(cells.values()))
        seeds = any_cell.n_seeds
        about = f" — {descriptions[variable]}" if variable in descriptions else ""
        numbers = (feature, tuple((key, f"{s.accuracy:.9g} {s.chance:.9g} {s.shuffle_accuracy:.9g}")
                                  for key, s in cells.items()))  # fmt: skip
        if numbers in shown:  # e.g. gt = label + 1: the same split of the trials, the same decoding
            blocks.append(
                f"### `{variable}`{about}; from the {_feature_words(feature)}\n\n"
                f"Splits the trials exactly as `{shown[numbers]}` does: the same results as its table."
            )
            continue
        shown[numbers] = variable
        if not decodable(summaries, variable, feature):
            classes = max(s.n_classes for s in cells.values())
            blocks.append(f"### `{variable}`{about}; from the {_feature_words(feature)}\n\n"
                          f"Not decodable: {classes} class{'es' if classes != 1 else ''} over the trials "
                          "(decoding needs two, each in at least two trials).")  # fmt: skip
            continue
        interval = "mean ± 95 % t-interval over" if seeds > 1 else "accuracy [95 % Wilson interval],"
        lines = [
            f"### `{variable}`{about}; from the {_feature_words(feature)}",
            "",
            f"Cross-validated decoding accuracy ({interval} {seeds} seed{'s' if seeds > 1 else ''}; "
            f"* = interval above chance).",
            "",
            "| population (neurons) | " + " | ".join(periods) + " |",
            "|---|" + "---|" * len(periods),
        ]
        for population in populations:
            n_neurons = next(cells[(population, p)].n_neurons for p in periods if (population, p) in cells)
            row = [_cell(cells.get((population, period))) for period in periods]
            lines.append(f"| {population} ({n_neurons}) | " + " | ".join(row) + " |")
        chance = [_mean([cells[(pop, period)].chance for pop in populations if (pop, period) in cells])
                  for period in periods]  # fmt: skip
        lines.append("| chance (majority class) | " + " | ".join(number_text(c) for c in chance) + " |")
        shuffles = []
        for period in periods:
            values = [cells[(pop, period)].shuffle_accuracy for pop in populations if (pop, period) in cells]
            finite = [v for v in values if math.isfinite(v)]
            shuffles.append(f"{min(finite):.2f}–{max(finite):.2f}" if finite else "n/a")
        lines.append("| shuffled labels (range over populations) | " + " | ".join(shuffles) + " |")
        trials = [_mean([cells[(pop, period)].n_trials for pop in populations if (pop, period) in cells])
                  for period in periods]  # fmt: skip
        lines.append("| trials decoded (per seed) | " + " | ".join(number_text(t, 0) for t in trials) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def decodable(summaries: Sequence[ProbeSummary], variable: str, feature: str) -> bool:
    """Whether any cell of (``variable``, ``feature``) could be decoded (False e.g. for a variable that is
    constant over the trials, such as the delay bin with a fixed delay)."""
    return any(math.isfinite(s.accuracy) for s in summaries if s.variable == variable and s.feature == feature)


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def csv_text(rows: Sequence[Any]) -> str:
    """The rows (:class:`ProbeRow` s, or other dataclass rows such as the generalisation's) as CSV, one column
    per field (:data:`CSV_FIELDS` for probe rows and for no rows; floats with 6 significant digits)."""
    fields = [field.name for field in dataclasses.fields(rows[0])] if rows else list(CSV_FIELDS)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        record = dataclasses.asdict(row)
        writer.writerow({key: f"{value:.6g}" if isinstance(value, float) else value for key, value in record.items()})
    return buffer.getvalue()


def plot_probe_heatmap(
    summaries: Sequence[ProbeSummary], variable: str, feature: str, path: str | Path, title: str = ""
) -> None:
    """Draw the (population × period) heatmap of ``variable`` decoded from ``feature`` into the PNG ``path``.

    Colour: accuracy − chance (diverging, white at chance, the same scale for every figure: −0.5 to +1);
    each cell is annotated with the accuracy and its interval half-width (or Wilson interval); the chance
    level(s) are stated in the title."""
    cells, populations, periods = _grid(summaries, variable, feature)
    if not cells:
        raise ValueError(f"no results for variable {variable!r} and feature {feature!r}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    accuracy = np.full((len(populations), len(periods)), np.nan)
    excess = np.full_like(accuracy, np.nan)
    for (population, period), summary in cells.items():
        i, j = populations.index(population), periods.index(period)
        accuracy[i, j] = summary.accuracy
        excess[i, j] = summary.accuracy - summary.chance
    chances = sorted({round(s.chance, 2) for s in cells.values() if math.isfinite(s.chance)})
    chance_text = f"{chances[0]:.2f}" if len(chances) == 1 else f"{chances[0]:.2f}–{chances[-1]:.2f} by period"
    seeds = next(iter(cells.values())).n_seeds

    height = 1.6 + 0.38 * len(populations)
    fig, ax = plt.subplots(figsize=(max(7.0, 2.6 + 1.45 * len(periods)), height), layout="constrained")
    norm = TwoSlopeNorm(vmin=-0.5, vcenter=0.0, vmax=1.0)
    image = ax.imshow(np.ma.masked_invalid(excess), cmap="RdBu_r", norm=norm, aspect="auto")
    for (population, period), summary in cells.items():
        i, j = populations.index(population), periods.index(period)
        if not math.isfinite(summary.accuracy):
            ax.text(j, i, "n/a", ha="center", va="center", fontsize=8, color="grey")
            continue
        spread = (f"±{summary.accuracy_ci:.2f}" if math.isfinite(summary.accuracy_ci)
                  else f"[{summary.ci_low:.2f}, {summary.ci_high:.2f}]")  # fmt: skip
        colour = "white" if abs(norm(excess[i, j]) - 0.5) > 0.3 else "black"
        star = "*" if summary.above_chance else ""
        ax.text(j, i, f"{summary.accuracy:.2f}{star} {spread}", ha="center", va="center", fontsize=7.5, color=colour)
    labels = [f"{population} ({cells[next((population, p) for p in periods if (population, p) in cells)].n_neurons})"
              for population in populations]  # fmt: skip
    ax.set_yticks(range(len(populations)), labels, fontsize=8)
    ax.set_xticks(range(len(periods)), periods, fontsize=9)
    ax.set_xlabel("trial period")
    ax.set_ylabel("population (neurons)")
    interval = f"mean ± 95 % t-interval over {seeds} seeds" if seeds > 1 else "[95 % Wilson interval], 1 seed"
    heading = f"{title}: " if title else ""
    ax.set_title(f"{heading}decoding {variable!r} from {feature}\nchance (majority class) = {chance_text}\n"
                 f"cells: accuracy, {interval} (* above chance)", fontsize=9)  # fmt: skip
    fig.colorbar(image, ax=ax, label="accuracy − chance", shrink=0.9)
    fig.savefig(path, dpi=120)
    plt.close(fig)
