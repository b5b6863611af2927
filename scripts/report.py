"""Tables and figures of a comparison directory (used by ``encephagen-compare`` and ``--summarize DIR``).

Reads every run directory under DIR (``spec.json``, ``status.json``, ``eval.json``, ``evaluations.csv``) and
writes:

* ``results.csv``: one row per finished run × held-out evaluation episode: ``env, algo, seed, model`` (``final``,
  or ``best`` when the run scored its best checkpoint on validation episodes), ``episode, eval_seed, return,
  length`` and one column per task metric;
* ``summary.md``: per env, per algorithm: seeds, final held-out return and every task metric as mean ± 95 %
  t-interval over seeds (each seed's value is its mean over evaluation episodes), env steps to reach 90 % of
  the reference's return and stay there (where reached), and failed runs with their errors;
* ``curves_<env>.png``: held-out return and the env's main metric against env steps, mean over seeds with a
  95 % CI band per learning algorithm, the reference and random controls as horizontal lines.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from encephagen_gym.agents.files import atomic_write, atomic_write_text, read_json
from encephagen_gym.scripts.train import EVAL, EVALUATIONS, SPEC, STATUS, read_rows_csv, write_rows_csv
from encephagen_gym.stats import format_mean_ci, mean_ci

__all__ = ["MAIN_METRICS", "RunRecord", "collect_runs", "summarize"]

MAIN_METRICS: dict[str, tuple[str, str]] = {
    "Encephagen-Conditioning-v0": ("discrimination", "discrimination (hit rate − false-alarm rate)"),
    "Encephagen-PatternRecognition-v0": ("accuracy", "accuracy (fraction of trials correct)"),
    "Encephagen-WorkingMemory-v0": ("accuracy", "accuracy (fraction of trials correct)"),
    "Encephagen-Walker2dBalance-v0": ("time_upright_s", "time upright (s of 8 s)"),
    "Encephagen-CPGGait-v0": ("speed_error", "speed error (m/s; lower is better)"),
    "Encephagen-WormCrawl-v0": ("forward_distance_m", "forward distance in 10 s (m)"),
}
"""Per env: the task metric the curves show, and its axis label with units."""

REFERENCE_FRACTION = 0.9
_CONTROLS = ("reference", "random", "zero")


@dataclass
class RunRecord:
    """One run directory as the report sees it."""

    path: Path
    env: str
    algo: str
    seed: int
    status: str
    error: str | None = None
    evaluation: dict[str, Any] | None = None
    curve: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = math.nan

    @property
    def finished(self) -> bool:
        return self.status == "finished" and self.evaluation is not None

    def episode_returns(self) -> list[float]:
        return [float(e["return"]) for e in (self.evaluation or {}).get("episodes", [])]

    def mean_return(self) -> float:
        returns = self.episode_returns()
        return float(np.mean(returns)) if returns else math.nan

    def mean_metric(self, key: str) -> float:
        values = [e["metrics"].get(key, math.nan) for e in (self.evaluation or {}).get("episodes", [])]
        finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
        return float(np.mean(finite)) if finite else math.nan

    def curve_points(self, key: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(env steps, mean over that evaluation's episodes) of the return (``key=None``) or a metric."""
        by_step: dict[float, list[float]] = defaultdict(list)
        for row in self.curve:
            value = row.get("return" if key is None else key, math.nan)
            if isinstance(value, float) and math.isfinite(value):
                by_step[float(row["timesteps"])].append(value)
        steps = np.array(sorted(by_step))
        return steps, np.array([np.mean(by_step[s]) for s in steps])


def collect_runs(directory: str | Path) -> list[RunRecord]:
    """Every run directory directly under ``directory`` (those with a ``spec.json``), sorted by env, algo, seed."""
    runs = []
    for spec_path in sorted(Path(directory).glob(f"*/{SPEC}")):
        run_dir = spec_path.parent
        spec = read_json(spec_path)
        try:
            status = read_json(run_dir / STATUS)
        except (OSError, ValueError):
            status = {"status": "unknown"}
        evaluation = read_json(run_dir / EVAL) if (run_dir / EVAL).exists() else None
        runs.append(
            RunRecord(
                path=run_dir,
                env=spec["env_id"],
                algo=spec["algo"],
                seed=int(spec["seed"]),
                status=status.get("status", "unknown"),
                error=status.get("error"),
                evaluation=evaluation,
                curve=read_rows_csv(run_dir / EVALUATIONS),
                wall_s=float(status.get("wall_s", math.nan)),
            )
        )
    return sorted(runs, key=lambda r: (r.env, r.algo, r.seed))


def _metric_keys(runs: Iterable[RunRecord]) -> list[str]:
    keys: list[str] = []
    for run in runs:
        for episode in (run.evaluation or {}).get("episodes", []):
            keys.extend(k for k in episode["metrics"] if k not in keys)
    return keys


def write_results_csv(directory: Path, runs: Sequence[RunRecord]) -> Path:
    """``results.csv``: one row per finished run × evaluation episode."""
    rows = []
    for run in runs:
        if not run.finished:
            continue
        for i, episode in enumerate(run.evaluation["episodes"]):
            rows.append(
                {
                    "env": run.env,
                    "algo": run.algo,
                    "seed": run.seed,
                    "model": _selection(run),
                    "episode": i,
                    "eval_seed": episode["seed"],
                    "return": episode["return"],
                    "length": episode["length"],
                    **episode["metrics"],
                }
            )
    path = directory / "results.csv"
    if rows:
        write_rows_csv(path, rows)
    else:
        atomic_write_text(path, "env,algo,seed,model,episode,eval_seed,return,length\n")
    return path


def _ordered_algos(algos: Iterable[str]) -> list[str]:
    """Learners in table order, then the controls (reference, random, zero)."""
    from encephagen_gym.agents.algorithms import ALGORITHMS

    present = set(algos)
    order = [a for a in ALGORITHMS if a not in _CONTROLS] + list(_CONTROLS)
    return [a for a in order if a in present] + sorted(present - set(order))


def reference_threshold(runs: Sequence[RunRecord]) -> float | None:
    """90 % of the reference's mean held-out return (``r − 0.1·|r|``, so it also works for negative returns);
    None when the directory has no finished reference run for the env."""
    returns = [r.mean_return() for r in runs if r.algo == "reference" and r.finished]
    if not returns:
        return None
    ref = float(np.mean(returns))
    return ref - (1.0 - REFERENCE_FRACTION) * abs(ref)


def steps_to_threshold(run: RunRecord, threshold: float) -> float:
    """Env steps at which the run's held-out mean return reached ``threshold`` and stayed there: the first
    evaluation from which every later one, the final included, is at or above it (NaN: not reached, or lost
    again by the end — an untrained policy that happens to start above it and then falls does not count)."""
    steps, values = run.curve_points()
    below = np.nonzero(values < threshold)[0]
    first_kept = below[-1] + 1 if below.size else 0
    return float(steps[first_kept]) if first_kept < steps.size else math.nan


def _steps_cell(runs: Sequence[RunRecord], threshold: float | None) -> str:
    if threshold is None:
        return "n/a (no reference run)"
    if runs[0].algo in _CONTROLS:
        return "—"
    steps = [steps_to_threshold(r, threshold) for r in runs]
    reached = [s for s in steps if math.isfinite(s)]
    if not reached:
        return f"not reached (0/{len(steps)})"
    mean, half = mean_ci(reached)
    return f"{format_mean_ci(mean, half, digits=0)} ({len(reached)}/{len(steps)})"


def _selection(run: RunRecord) -> str:
    """Which model a run's eval.json scored: ``final`` or ``best`` (on validation episodes)."""
    return run.evaluation.get("model_selection", {}).get("mode", "final")


def _summary_row(label: str, group: Sequence[RunRecord], keys: Sequence[str], threshold: float | None) -> str:
    steps = sorted({int(r.evaluation.get("timesteps", 0)) for r in group})
    cells = [
        label,
        str(len(group)),
        "/".join(f"{s:,}" for s in steps),
        format_mean_ci(*mean_ci(r.mean_return() for r in group)),
        *(format_mean_ci(*mean_ci(r.mean_metric(k) for r in group), digits=3) for k in keys),
        _steps_cell(group, threshold),
        f"{np.nanmean([r.wall_s for r in group]) / 60:.1f}",
    ]
    return "| " + " | ".join(cells) + " |"


def summary_markdown(runs: Sequence[RunRecord]) -> str:
    """The Markdown summary of all runs (see the module docstring)."""
    lines = ["# Comparison summary", ""]
    lines.append(
        "Held-out evaluation of each run's final model (episodes reset with seeds 2·10⁹ + i, which no training "
        "episode used; the same episodes for every run); in rows marked '(best)', of the checkpoint with the "
        "highest mean return on validation episodes (seeds 1.5·10⁹ + i) instead. Each cell is the mean over "
        "seeds ± the 95 % Student-t interval over seeds, each seed's value being its mean over evaluation episodes. "
        f"'steps to {REFERENCE_FRACTION:.0%} ref.' is the first evaluation (env steps) from which a run's held-out "
        "return stayed at or above 90 % of the reference policy's return to the end of training, averaged over "
        "the seeds that got there (k/n)."
    )
    by_env: dict[str, list[RunRecord]] = defaultdict(list)
    for run in runs:
        by_env[run.env].append(run)
    for env, env_runs in sorted(by_env.items()):
        finished = [r for r in env_runs if r.finished]
        keys = _metric_keys(finished)
        main = MAIN_METRICS.get(env, (None, None))[0]
        if main in keys:
            keys.remove(main)
            keys.insert(0, main)
        threshold = reference_threshold(finished)
        lines += ["", f"## {env}", ""]
        header = ["algo", "seeds", "env steps", "return", *keys, f"steps to {REFERENCE_FRACTION:.0%} ref.", "wall min"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for algo in _ordered_algos(r.algo for r in finished):
            for selection in sorted({_selection(r) for r in finished if r.algo == algo}, key=lambda m: m != "final"):
                group = [r for r in finished if r.algo == algo and _selection(r) == selection]
                lines.append(_summary_row(algo if selection == "final" else f"{algo} (best)", group, keys, threshold))
    failed = [r for r in runs if not r.finished]
    if failed:
        lines += [
            "",
            "## Runs that did not finish",
            "",
            "| env | algo | seed | status | error | run |",
            "|---|---|---|---|---|---|",
        ]
        for run in failed:
            error = (run.error or "").splitlines()[0][:200] if run.error else ""
            lines.append(f"| {run.env} | {run.algo} | {run.seed} | {run.status} | {error} | {run.path.name} |")
    return "\n".join(lines) + "\n"


def _band(runs: Sequence[RunRecord], key: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and CI half-width over runs of their curves, interpolated onto the union of evaluation steps."""
    curves = [r.curve_points(key) for r in runs]
    curves = [(s, v) for s, v in curves if s.size]
    if not curves:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    grid = np.unique(np.concatenate([s for s, _ in curves]))
    values = np.full((len(curves), grid.size), np.nan)
    for i, (steps, vals) in enumerate(curves):
        inside = (grid >= steps[0]) & (grid <= steps[-1])
        values[i, inside] = np.interp(grid[inside], steps, vals)
    stats = [mean_ci(values[:, j]) for j in range(grid.size)]
    return grid, np.array([m for m, _ in stats]), np.array([h for _, h in stats])


def plot_curves(directory: Path, env: str, runs: Sequence[RunRecord]) -> Path:
    """``curves_<env>.png``: held-out return (and the main metric) vs env steps, CI bands over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finished = [r for r in runs if r.finished]
    metric, metric_label = MAIN_METRICS.get(env, (None, None))
    if metric is not None and metric not in _metric_keys(finished):
        metric = None
    panels = [(None, "held-out return (sum of rewards per episode)")]
    if metric is not None:
        panels.append((metric, metric_label))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.4), squeeze=False)
    learners = [a for a in _ordered_algos(r.algo for r in finished) if a not in _CONTROLS]
    colours = plt.get_cmap("tab10")
    for ax, (key, label) in zip(axes[0], panels, strict=True):
        for i, algo in enumerate(learners):
            group = [r for r in finished if r.algo == algo]
            grid, mean, half = _band(group, key)
            if not grid.size:
                continue
            colour = colours(i % 10)
            ax.plot(grid, mean, color=colour, label=f"{algo} (n={len(group)})")
            ok = np.isfinite(half)
            ax.fill_between(grid[ok], (mean - half)[ok], (mean + half)[ok], color=colour, alpha=0.2, linewidth=0)
        for algo, style, colour in (("reference", "--", "black"), ("random", ":", "grey")):
            group = [r for r in finished if r.algo == algo]
            values = [r.mean_return() if key is None else r.mean_metric(key) for r in group]
            finite = [v for v in values if math.isfinite(v)]
            if finite:
                ax.axhline(float(np.mean(finite)), linestyle=style, color=colour, label=algo)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0][0].legend(loc="best", fontsize=8)
    fig.suptitle(f"{env}: mean over seeds, band = 95 % CI (Student t)")
    fig.tight_layout()
    path = directory / f"curves_{env}.png"
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"), suffix=".png")
    plt.close(fig)
    return path


def summarize(directory: str | Path) -> str:
    """Write ``results.csv``, ``summary.md`` and the ``curves_<env>.png`` of ``directory``; return the
    summary's Markdown. ``ValueError`` when the directory holds no runs."""
    directory = Path(directory)
    runs = collect_runs(directory)
    if not runs:
        raise ValueError(f"{directory} holds no run directories (with {SPEC})")
    write_results_csv(directory, runs)
    text = summary_markdown(runs)
    atomic_write_text(directory / "summary.md", text)
    by_env: dict[str, list[RunRecord]] = defaultdict(list)
    for run in runs:
        by_env[run.env].append(run)
    for env, env_runs in by_env.items():
        if any(r.finished for r in env_runs):
            plot_curves(directory, env, env_runs)
    return text
