"""Shared trial machinery for the cognitive tasks.

A task is a sequence of trials; a trial is a sequence of named periods (fixation, stimulus, delay, decision …)
whose durations are given in ms, fixed or sampled from the env's ``np_random``. One env step lasts ``dt`` ms.
Each trial's observations are laid out in advance as a ``[n_steps, obs_dim]`` table, so a step is a table
look-up plus the task's judgement of the action.

Conventions every trial task follows (and that ``info`` reports):

* ``info["period"]``: name of the period the judged action fell in; ``info["trial"]``: its trial index.
* ``info["gt"]``: ground truth (the correct action) of that trial.
* ``info["new_trial"]``: True when that trial ended on this step, so the returned observation is the first of
  the next trial; ``info["trial_outcome"]`` then describes the finished trial.
* ``info["reward_terms"]``: the reward's terms, which sum to the reward.
* An episode is ``trials_per_episode`` trials and ends with ``terminated=True`` after the last one, whose step
  also carries the block's ``info["metrics"]``.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from encephagen_gym.envs import layout_from_sizes
from encephagen_gym.envs.stimuli import RETINA_SHAPE

_PLAIN_INTEGERS = frozenset({int, np.int64, np.int32})

Duration = float | tuple[float, float]
"""A period's duration in ms: fixed, or a ``(low, high)`` range sampled uniformly per trial."""


def validate_duration(name: str, duration: Duration) -> Duration:
    """Check a period duration (ms) and return it unchanged; raise ``ValueError`` naming the period if bad."""
    if isinstance(duration, Sequence) and not isinstance(duration, str):
        if len(duration) != 2:
            raise ValueError(f"duration of {name!r} must be a number or a (low, high) pair, got {duration!r}")
        low, high = (float(d) for d in duration)
        if not (np.isfinite(low) and np.isfinite(high)) or low < 0 or high < low:
            raise ValueError(f"duration range of {name!r} must satisfy 0 <= low <= high, got {duration!r}")
        return (low, high)
    value = float(duration)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"duration of {name!r} must be a non-negative number of ms, got {duration!r}")
    return value


@dataclass
class Trial:
    """One trial: its periods (as step ranges), ground truth, observation table and descriptive extras."""

    gt: int
    period_names: tuple[str, ...]
    period_starts: tuple[int, ...]  # step at which each period starts; one more entry at the end = trial length
    observations: np.ndarray  # [n_steps, obs_dim] float32
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def n_steps(self) -> int:
        return self.period_starts[-1]

    def period_slice(self, name: str) -> slice:
        """Steps of the period ``name`` within the trial."""
        i = self.period_names.index(name)
        return slice(self.period_starts[i], self.period_starts[i + 1])

    def period_at(self, t: int) -> str:
        """Name of the period in effect at step ``t`` of the trial."""
        return self.period_names[bisect.bisect_right(self.period_starts, t) - 1]


@dataclass(frozen=True)
class TrialEnd:
    """How a trial ended: a short outcome label, whether it counts as correct, and the choice made."""

    outcome: str
    correct: bool
    choice: int | None = None


class TrialEnv(gym.Env[np.ndarray, np.int64]):
    """Base class of the trial-based cognitive tasks (see the module docstring for the conventions).

    Subclasses set :attr:`observation_layout`, :attr:`action_space`, :attr:`reward_term_names` and implement
    :meth:`_sample_trial`, :meth:`_judge` and :meth:`_end_of_trial`; they may extend :meth:`_episode_metrics`.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 25}
    reward_term_names: ClassVar[tuple[str, ...]] = ()
    withhold_action: ClassVar[int] = 0
    """The action that means "do nothing" (withhold, fixate, no choice): agents may make it their default."""

    def __init__(
        self,
        *,
        observation_layout: Mapping[str, int],
        dt: float = 10.0,
        trials_per_episode: int = 20,
        render_mode: str | None = None,
    ) -> None:
        dt = float(dt)
        if not np.isfinite(dt) or dt <= 0:
            raise ValueError(f"dt must be a positive number of ms, got {dt!r}")
        if int(trials_per_episode) != trials_per_episode or trials_per_episode < 1:
            raise ValueError(f"trials_per_episode must be a positive integer, got {trials_per_episode!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.dt = dt
        self.trials_per_episode = int(trials_per_episode)
        self.render_mode = render_mode

        self.observation_layout = layout_from_sizes(observation_layout)
        self.obs_dim = sum(observation_layout.values())
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.obs_dim,), dtype=np.float32)

        self._trial: Trial | None = None
        self._t = 0
        self._trial_index = 0
        self._outcomes: list[dict[str, Any]] = []

    # ----------------------------------------------------------------------------------------- subclass API
    def _sample_trial(self, index: int) -> Trial:
        """Draw trial number ``index`` of the episode from ``self.np_random``."""
        raise NotImplementedError

    def _judge(self, action: int, period: str, terms: dict[str, float]) -> TrialEnd | None:
        """Judge ``action`` taken in ``period``: add reward to ``terms``; return a :class:`TrialEnd` to end
        the trial now, or None to go on."""
        raise NotImplementedError

    def _end_of_trial(self) -> TrialEnd:
        """Outcome when the trial runs to its last step without :meth:`_judge` ending it."""
        raise NotImplementedError

    def _episode_metrics(self, outcomes: list[dict[str, Any]]) -> dict[str, float]:
        """Block metrics from the episode's trial outcomes (subclasses add task-specific ones)."""
        return {
            "accuracy": float(np.mean([o["correct"] for o in outcomes])),
            "mean_reward_per_trial": float(np.mean([o["reward"] for o in outcomes])),
        }

    # ----------------------------------------------------------------------------------------- helpers
    def _layout_periods(self, periods: Sequence[tuple[str, Duration]]) -> tuple[tuple[str, ...], tuple[int, ...]]:
        """Turn ``(name, duration_ms)`` pairs into names and step boundaries, sampling ranged durations."""
        names = tuple(name for name, _ in periods)
        starts = itertools.accumulate((self._duration_steps(duration) for _, duration in periods), initial=0)
        return names, tuple(starts)

    def _duration_steps(self, duration: Duration) -> int:
        if type(duration) is tuple:
            duration = duration[0] + (duration[1] - duration[0]) * self.np_random.random()
        return round(duration / self.dt)

    def _min_steps(self, name: str, duration: Duration) -> None:
        """Raise ``ValueError`` if period ``name`` could last less than one env step."""
        low = duration[0] if isinstance(duration, tuple) else duration
        if round(low / self.dt) < 1:
            raise ValueError(f"period {name!r} must last at least one step (dt = {self.dt} ms), got {duration!r} ms")

    def _new_observations(self, period_starts: tuple[int, ...]) -> np.ndarray:
        return np.zeros((period_starts[-1], self.obs_dim), dtype=np.float32)

    def _check_action(self, action: Any) -> int:
        if type(action) in _PLAIN_INTEGERS and 0 <= action < self.action_space.n:  # fast path for the common case
            return int(action)
        if not self.action_space.contains(action):
            shape = getattr(action, "shape", None)
            raise ValueError(
                f"invalid action {action!r}{f' with shape {shape}' if shape is not None else ''}: "
                f"expected an integer in {self.action_space}"
            )
        return int(action)

    @property
    def trial(self) -> Trial:
        """The trial in progress (after :meth:`reset`)."""
        if self._trial is None:
            raise RuntimeError("call reset() before using the env")
        return self._trial

    @property
    def trial_index(self) -> int:
        """Index of the current trial within the episode (block), from 0."""
        return self._trial_index

    @property
    def period(self) -> str:
        """Name of the current period."""
        return self.trial.period_at(self._t)

    # ----------------------------------------------------------------------------------------- gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._trial_index = 0
        self._outcomes = []
        self._start_trial()
        return self.trial.observations[0].copy(), self._step_info(self.period, new_trial=True)

    def _start_trial(self) -> None:
        self._trial = self._sample_trial(self._trial_index)
        self._t = 0
        self._trial_reward = 0.0

    def _step_info(self, period: str, *, new_trial: bool) -> dict[str, Any]:
        return {"period": period, "trial": self._trial_index, "gt": self.trial.gt, "new_trial": new_trial}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        trial = self.trial
        if self._trial_index >= self.trials_per_episode:
            raise RuntimeError("the episode has ended (terminated=True); call reset() before stepping again")
        choice = self._check_action(action)
        period = self.period
        terms = dict.fromkeys(self.reward_term_names, 0.0)
        end = self._judge(choice, period, terms)
        self._t += 1
        if end is None and self._t >= trial.n_steps:
            end = self._end_of_trial()
        reward = float(sum(terms.values()))
        self._trial_reward += reward
        info = self._step_info(period, new_trial=end is not None)
        info["reward_terms"] = terms

        terminated = False
        if end is not None:
            outcome = {
                "trial": self._trial_index,
                "gt": trial.gt,
                "choice": end.choice,
                "outcome": end.outcome,
                "correct": end.correct,
                "reward": self._trial_reward,
                **trial.extras,
            }
            self._outcomes.append(outcome)
            info["trial_outcome"] = outcome
            self._trial_index += 1
            if self._trial_index >= self.trials_per_episode:
                terminated = True
                info["metrics"] = self._episode_metrics(self._outcomes)
                self._t = trial.n_steps - 1  # hold the last frame for render()
            else:
                self._start_trial()
        return self.trial.observations[self._t].copy(), reward, terminated, False, info

    # ----------------------------------------------------------------------------------------- rendering
    def render(self) -> np.ndarray | None:
        """An RGB picture of the current observation and the trial timeline (``render_mode="rgb_array"``)."""
        if self.render_mode != "rgb_array":
            return None
        return draw_trial_frame(self.trial, self._t, self.observation_layout)


_PERIOD_COLOURS = np.array(
    [[70, 130, 180], [240, 170, 60], [120, 190, 120], [200, 90, 90], [160, 120, 200], [120, 200, 210]],
    dtype=np.uint8,
)
_PIXEL = 16  # screen pixels per retina pixel
_MARGIN = 16


def draw_trial_frame(trial: Trial, t: int, layout: Mapping[str, slice]) -> np.ndarray:
    """Draw the retina image, one level bar per other channel, and the trial timeline with a marker at ``t``."""
    obs = trial.observations[min(t, trial.n_steps - 1)]
    channels = [(name, idx) for name, idx in layout.items() if name != "vision"]
    n_bars = sum(idx.stop - idx.start for _, idx in channels)
    retina_px = RETINA_SHAPE[0] * _PIXEL
    width = _MARGIN + retina_px + _MARGIN + n_bars * (_PIXEL + 4) + _MARGIN
    height = _MARGIN + retina_px + _MARGIN + 12 + _MARGIN
    frame = np.full((height, width, 3), 255, dtype=np.uint8)

    if "vision" in layout:
        frame[_MARGIN - 2 : _MARGIN + retina_px + 2, _MARGIN - 2 : _MARGIN + retina_px + 2] = 150  # retina border
        image = obs[layout["vision"]].reshape(RETINA_SHAPE)
        grey = (255 * (1.0 - np.clip(image, 0.0, 1.0))).astype(np.uint8)
        big = np.kron(grey, np.ones((_PIXEL, _PIXEL), dtype=np.uint8))
        frame[_MARGIN : _MARGIN + retina_px, _MARGIN : _MARGIN + retina_px] = big[..., None]

    x = 2 * _MARGIN + retina_px
    values = np.concatenate([obs[idx] for _, idx in channels]) if channels else np.zeros(0)
    for value in values:
        level = round(float(np.clip(value, 0.0, 1.0)) * retina_px)
        frame[_MARGIN : _MARGIN + retina_px, x : x + _PIXEL] = 220
        if level:
            frame[_MARGIN + retina_px - level : _MARGIN + retina_px, x : x + _PIXEL] = (200, 60, 60)
        x += _PIXEL + 4

    y0, bar_w = 2 * _MARGIN + retina_px, width - 2 * _MARGIN
    scale = bar_w / max(trial.n_steps, 1)
    for i in range(len(trial.period_names)):
        a = _MARGIN + round(trial.period_starts[i] * scale)
        b = _MARGIN + round(trial.period_starts[i + 1] * scale)
        frame[y0 : y0 + 12, a:b] = _PERIOD_COLOURS[i % len(_PERIOD_COLOURS)]
    marker = _MARGIN + min(round(t * scale), bar_w - 1)
    frame[y0 - 4 : y0 + 16, marker : marker + 2] = 0
    return frame


class ChoiceTrialEnv(TrialEnv):
    """A trial task with a fixate-then-choose response rule (pattern recognition, working memory).

    Action 0 means "fixate / no choice". Any other action before the ``decision`` period aborts the trial
    (reward ``abort_penalty``). In the decision period the first non-zero action is the choice: +1 if it equals
    ``gt``, 0 otherwise, and the trial ends. A decision period without a choice ends the trial with 0.
    """

    reward_term_names: ClassVar[tuple[str, ...]] = ("correct", "abort")
    decision_period: ClassVar[str] = "decision"

    def __init__(self, *, abort_penalty: float = -0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not np.isfinite(abort_penalty) or abort_penalty > 0:
            raise ValueError(f"abort_penalty must be a finite number <= 0, got {abort_penalty!r}")
        self.abort_penalty = float(abort_penalty)

    def _judge(self, action: int, period: str, terms: dict[str, float]) -> TrialEnd | None:
        if action == 0:
            return None
        if period != self.decision_period:
            terms["abort"] = self.abort_penalty
            return TrialEnd("abort", correct=False, choice=action)
        correct = action == self.trial.gt
        terms["correct"] = 1.0 if correct else 0.0
        return TrialEnd("correct" if correct else "wrong", correct=correct, choice=action)

    def _end_of_trial(self) -> TrialEnd:
        return TrialEnd("no_response", correct=False)

    def _episode_metrics(self, outcomes: list[dict[str, Any]]) -> dict[str, float]:
        metrics = super()._episode_metrics(outcomes)
        metrics["abort_rate"] = float(np.mean([o["outcome"] == "abort" for o in outcomes]))
        metrics["no_response_rate"] = float(np.mean([o["outcome"] == "no_response" for o in outcomes]))
        return metrics
