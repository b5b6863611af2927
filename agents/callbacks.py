"""stable-baselines3 callbacks shared by every learner (the SB3 algorithms and the brain).

* :class:`EpisodeMetricsCallback` logs each key of the envs' per-episode ``info["metrics"]`` as
  ``rollout/<metric>``, averaged over recent episodes, so discrimination, accuracy, time upright or distance
  appear in TensorBoard next to ``rollout/ep_rew_mean``.
* :class:`PeriodicEvalCallback` evaluates on held-out episodes every ``eval_freq`` env steps and logs
  ``eval/mean_reward``, ``eval/mean_ep_length`` and ``eval/<metric>``.
* :class:`CheckpointEveryCallback` calls a checkpoint function every ``save_freq`` env steps.

They read only SB3's callback locals (``infos``, ``dones``) and ``num_timesteps``, so any algorithm that calls
``callback.update_locals(locals())`` and ``callback.on_step()`` with SB3's names works with them.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

__all__ = [
    "CheckpointEveryCallback",
    "EpisodeMetricsCallback",
    "EpisodeResult",
    "PeriodicEvalCallback",
    "finished_episode_metrics",
    "mean_metrics",
]


def finished_episode_metrics(infos: Sequence[Mapping[str, Any]], dones: Iterable[bool]) -> list[dict[str, float]]:
    """The ``info["metrics"]`` dictionaries of the sub-envs whose episode ended on this step."""
    return [dict(info["metrics"]) for info, done in zip(infos, dones, strict=False) if done and "metrics" in info]


def mean_metrics(episodes: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Per key, the mean over episodes of the finite values (keys with no finite value are left out; a task
    metric is NaN in an episode where it is undefined, e.g. a hit rate without CS+ trials)."""
    values: dict[str, list[float]] = {}
    for episode in episodes:
        for key, value in episode.items():
            values.setdefault(key, []).append(float(value))
    means = {}
    for key, vals in values.items():
        finite = [v for v in vals if math.isfinite(v)]
        if finite:
            means[key] = float(np.mean(finite))
    return means


class EpisodeMetricsCallback(BaseCallback):
    """Log ``rollout/<metric>`` for every key of ``info["metrics"]``: the mean over the last ``window`` finished
    episodes (default: the model's ``stats_window_size``, as for ``rollout/ep_rew_mean``).

    Values are recorded when an episode ends and again at each rollout's end, so every logger dump (on-policy:
    after each rollout; off-policy: every ``log_interval`` episodes) carries them once an episode has ended.
    """

    def __init__(self, window: int | None = None, prefix: str = "rollout/", verbose: int = 0) -> None:
        super().__init__(verbose)
        if window is not None and window < 1:
            raise ValueError(f"window must be a positive number of episodes, got {window!r}")
        self.window = window
        self.prefix = prefix
        self.episodes: deque[dict[str, float]] = deque(maxlen=window or 100)

    def _init_callback(self) -> None:
        size = self.window or int(getattr(self.model, "_stats_window_size", 100))
        self.episodes = deque(self.episodes, maxlen=size)

    def _record(self) -> None:
        for key, value in mean_metrics(self.episodes).items():
            self.logger.record(f"{self.prefix}{key}", value)

    def _on_step(self) -> bool:
        finished = finished_episode_metrics(self.locals.get("infos", ()), self.locals.get("dones", ()))
        if finished:
            self.episodes.extend(finished)
            self._record()
        return True

    def _on_rollout_end(self) -> None:
        self._record()


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
    ``eval/mean_reward``, ``eval/mean_ep_length`` and ``eval/<metric>``, dumps the logger at the current step,
    and hands ``(num_timesteps, results)`` to ``on_evaluation`` (e.g. to append them to a CSV file).
    """

    def __init__(
        self,
        evaluate: Callable[[], list[EpisodeResult]],
        eval_freq: int,
        on_evaluation: Callable[[int, list[EpisodeResult]], None] | None = None,
        *,
        eval_at_start: bool = True,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if eval_freq < 1:
            raise ValueError(f"eval_freq must be a positive number of env steps, got {eval_freq!r}")
        self.evaluate = evaluate
        self.eval_freq = int(eval_freq)
        self.on_evaluation = on_evaluation
        self.eval_at_start = eval_at_start
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
        log_evaluation(self.logger, results)
        self.logger.dump(self.num_timesteps)
        if self.on_evaluation is not None:
            self.on_evaluation(self.num_timesteps, results)


def log_evaluation(logger: Any, results: Sequence[EpisodeResult], prefix: str = "eval/") -> None:
    """Record the mean return, length and each metric of ``results`` on an SB3 logger."""
    if not results:
        return
    logger.record(f"{prefix}mean_reward", float(np.mean([r.ret for r in results])))
    logger.record(f"{prefix}mean_ep_length", float(np.mean([r.length for r in results])))
    for key, value in mean_metrics(r.metrics for r in results).items():
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
