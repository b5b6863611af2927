"""Per-episode task metrics (``info["metrics"]``) as rolling averages, for TensorBoard next to the return.

Every encephagen env puts its episode's task metrics (accuracy, discrimination, seconds upright, distance …)
in ``info["metrics"]`` on the episode's last step. :class:`EpisodeMetrics` keeps the last ``window``
values of each key and writes their mean as ``rollout/<key>`` to an SB3 logger, the way SB3 writes
``rollout/ep_rew_mean`` from its ``Monitor`` buffer, so that the task metric appears as a learning curve
for every algorithm. :class:`EpisodeMetricsCallback` does it for any SB3 algorithm; ``BrainAgent`` uses the
buffer directly.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger

__all__ = ["EpisodeMetrics", "EpisodeMetricsCallback"]


class EpisodeMetrics:
    """Rolling buffers of the numeric ``info["metrics"]`` values of finished episodes (``window`` each)."""

    def __init__(self, window: int = 100) -> None:
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive integer, got {window!r}")
        self.window = window
        self.buffers: dict[str, deque[float]] = {}

    def update(self, infos: Sequence[Mapping[str, Any]], dones: Iterable[bool] | None = None) -> int:
        """Add the metrics of the infos of finished episodes; returns how many episodes had metrics."""
        flags = [True] * len(infos) if dones is None else list(dones)
        found = 0
        for info, done in zip(infos, flags, strict=True):
            metrics = info.get("metrics") if done else None
            if not isinstance(metrics, Mapping):
                continue
            found += 1
            for key, value in metrics.items():
                if isinstance(value, bool | int | float | np.number):
                    self.buffers.setdefault(key, deque(maxlen=self.window)).append(float(value))
        return found

    def means(self) -> dict[str, float]:
        """Mean of each key over its buffer, ignoring NaN (a metric undefined in an episode); NaN if all are."""
        out = {}
        for key, values in self.buffers.items():
            finite = [v for v in values if math.isfinite(v)]
            out[key] = float(np.mean(finite)) if finite else float("nan")
        return out

    def record(self, logger: Logger, prefix: str = "rollout") -> None:
        """Write ``<prefix>/<key>`` for every key seen so far."""
        for key, value in self.means().items():
            logger.record(f"{prefix}/{key}", value)


class EpisodeMetricsCallback(BaseCallback):
    """Records ``rollout/<metric>`` for any SB3 algorithm: the mean of the last ``window`` episodes' metrics,
    written each time the algorithm dumps its logs (recorded every step; SB3 writes what was recorded last)."""

    def __init__(self, window: int = 100, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.metrics = EpisodeMetrics(window)

    def _on_step(self) -> bool:
        infos, dones = self.locals.get("infos"), self.locals.get("dones")
        if infos is not None and self.metrics.update(infos, dones):
            self.metrics.record(self.logger)
        return True
