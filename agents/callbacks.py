"""stable-baselines3 callbacks shared by every learner (the SB3 algorithms and the brain).

* :class:`PeriodicEvalCallback` evaluates on held-out episodes every ``eval_freq`` env steps and logs
  ``eval/mean_reward``, ``eval/mean_ep_length`` and ``eval/<metric>``.
* :class:`CheckpointEveryCallback` calls a checkpoint function every ``save_freq`` env steps.

They use only ``num_timesteps`` and the logger, so they work for every SB3 algorithm and the brain. (The
``rollout/<metric>`` curves come from :class:`encephagen_gym.agents.episode_metrics.EpisodeMetricsCallback`.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from encephagen_gym.agents.episode_metrics import EpisodeMetrics

__all__ = ["CheckpointEveryCallback", "EpisodeResult", "PeriodicEvalCallback", "log_evaluation", "mean_episode_metrics"]


def mean_episode_metrics(results: Iterable[EpisodeResult]) -> dict[str, float]:
    """Per metric key, the mean over ``results`` of its finite values (NaN when it is undefined in all, e.g.
    a hit rate over episodes without CS+ trials); the same averaging as ``rollout/<metric>``."""
    results = list(results)
    metrics = EpisodeMetrics(window=max(1, len(results)))
    metrics.update([{"metrics": r.metrics} for r in results])
    return metrics.means()


@dataclass(frozen=True)
class EpisodeResult:
    """One evaluation episode: the seed it was reset with, its return (sum of rewards), length (env steps)
    and the env's ``info["metrics"]`` at its end."""

    seed: int
    ret: float
    length: int
    metrics: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "return": self.ret, "length": self.length, "metrics": dict(self.metrics)}


class PeriodicEvalCallback(BaseCallback):
    """Evaluate every ``eval_freq`` env steps (and at the start of training unless resuming).

    ``evaluate()`` runs the episodes and returns their :class:`EpisodeResult`; the callback logs their means as
    ``eval/mean_reward``, ``eval/mean_ep_length`` and ``eval/<metric>`` (``prefix`` replaces ``eval/``), dumps
    the logger at the current step, and hands ``(num_timesteps, results)`` to ``on_evaluation`` (e.g. to append
    them to a CSV file).
    """

    def __init__(
        self,
        evaluate: Callable[[], list[EpisodeResult]],
        eval_freq: int,
        on_evaluation: Callable[[int, list[EpisodeResult]], None] | None = None,
        *,
        eval_at_start: bool = True,
        prefix: str = "eval/",
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if eval_freq < 1:
            raise ValueError(f"eval_freq must be a positive number of env steps, got {eval_freq!r}")
        self.evaluate = evaluate
        self.eval_freq = int(eval_freq)
        self.on_evaluation = on_evaluation
        self.eval_at_start = eval_at_start
        self.prefix = prefix
        self._last = 0

    def _on_training_start(self) -> None:
        self._last = self.num_timesteps
        if self.eval_at_start and self.num_timesteps == 0:
            self._run()

    def _on_step(self) -> bool:
        if self.num_timesteps - self._last >= self.eval_freq:
            self._run()
        return True

    def _run(self) -> None:
        results = self.evaluate()
        self._last = self.num_timesteps
        log_evaluation(self.logger, results, self.prefix)
        self.logger.dump(self.num_timesteps)
        if self.on_evaluation is not None:
            self.on_evaluation(self.num_timesteps, results)


def log_evaluation(logger: Any, results: Sequence[EpisodeResult], prefix: str = "eval/") -> None:
    """Record the mean return, length and each metric of ``results`` on an SB3 logger."""
    if not results:
        return
    logger.record(f"{prefix}mean_reward", float(np.mean([r.ret for r in results])))
    logger.record(f"{prefix}mean_ep_length", float(np.mean([r.length for r in results])))
    for key, value in mean_episode_metrics(results).items():
        if math.isfinite(value):
            logger.record(f"{prefix}{key}", value)


class CheckpointEveryCallback(BaseCallback):
    """Call ``save()`` every ``save_freq`` env steps (the function writes the checkpoint atomically)."""

    def __init__(self, save: Callable[[], None], save_freq: int, verbose: int = 0) -> None:
        super().__init__(verbose)
        if save_freq < 1:
            raise ValueError(f"save_freq must be a positive number of env steps, got {save_freq!r}")
        self.save = save
        self.save_freq = int(save_freq)
        self._last = 0

    def _on_training_start(self) -> None:
        self._last = self.num_timesteps

    def _on_step(self) -> bool:
        if self.num_timesteps - self._last >= self.save_freq:
            self.save()
            self._last = self.num_timesteps
        return True
