"""Shared trial machinery for the cognitive tasks.

A task is a sequence of trials; a trial is a sequence of named periods (fixation, stimulus, delay, decision …)
whose durations are given in ms, fixed or sampled from the env's ``np_random``. One env step lasts ``step_ms``
milliseconds (``env.step_ms``, default 10 ms); ``env.dt`` is the same duration in seconds, Gymnasium's meaning.
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
from encephagen_gym.envs.checks import check_integer, check_number, check_range
from encephagen_gym.envs.drawing import draw_text, fill_rect, text_width
from encephagen_gym.envs.stimuli import RETINA_SHAPE

_PLAIN_INTEGERS = frozenset({int, np.int64, np.int32})

Duration = float | tuple[float, float]
"""A period's duration in ms: fixed, or a ``(low, high)`` range sampled uniformly per trial."""


MAX_DURATION_MS = 60_000.0
"""Longest accepted period (ms)."""

MAX_IMAGES = 1000
"""Most images (stimuli, classes) a task accepts: drawing 1000 well-separated prototypes takes about a second."""


def validate_duration(name: str, duration: Duration) -> Duration:
    """Check a period duration (ms): a number or a ``(low, high)`` pair in ``[0, MAX_DURATION_MS]``; return it
    as float(s); raise ``ValueError`` naming the period if bad."""
    if isinstance(duration, Sequence) and not isinstance(duration, str):
        if len(duration) != 2:
            raise ValueError(f"duration of {name!r} must be a number or a (low, high) pair, got {duration!r}")
        return check_range(f"duration range (ms) of {name!r}", duration, low=0.0, high=MAX_DURATION_MS)
    return check_number(f"duration (ms) of {name!r}", duration, low=0.0, high=MAX_DURATION_MS)


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
        step_ms: float = 10.0,
        trials_per_episode: int = 20,
        render_mode: str | None = None,
    ) -> None:
        self._step_ms = check_number("step_ms", step_ms, low=0.0, high=1000.0, strict_low=True)
        self.trials_per_episode = check_integer("trials_per_episode", trials_per_episode, low=1)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r} "
                "(the cognitive tasks draw frames; show them with any image viewer or scripts/record_video.py)"
            )
        self.render_mode = render_mode
        self.metadata = {**type(self).metadata, "render_fps": 1000.0 / self._step_ms}  # real time

        self.observation_layout = layout_from_sizes(observation_layout)
        self.obs_dim = sum(observation_layout.values())
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.obs_dim,), dtype=np.float32)

        self._trial: Trial | None = None
        self._last_step: tuple[int, float, str | None] | None = None  # (action, reward, trial outcome) for render
        self._t = 0
        self._trial_index = 0
        self._outcomes: list[dict[str, Any]] = []

    @property
    def step_ms(self) -> float:
        """Duration of one env step (ms): the name an agent reads to run its own clock in step with the env."""
        return self._step_ms

    @property
    def dt(self) -> float:
        """Duration of one env step in seconds (Gymnasium's meaning of ``dt``): ``step_ms / 1000``."""
        return self._step_ms / 1000.0

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
        return round(duration / self._step_ms)

    def _min_steps(self, name: str, duration: Duration) -> None:
        """Raise ``ValueError`` if period ``name`` could last less than one env step."""
        low = duration[0] if isinstance(duration, tuple) else duration
        if round(low / self._step_ms) < 1:
            raise ValueError(
                f"period {name!r} must last at least one step (step_ms = {self._step_ms:g} ms), got {duration!r} ms"
            )

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
        self._last_step = None
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
        self._last_step = (choice, reward, None if end is None else end.outcome)
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
    def action_meaning(self, action: int) -> str:
        """What ``action`` means in this task, in words (for pictures and logs)."""
        return str(action)

    def render(self) -> np.ndarray | None:
        """An RGB picture of the current step (``render_mode="rgb_array"``), see :func:`draw_trial_frame`."""
        if self.render_mode != "rgb_array":
            return None
        trial = self.trial
        shown = min(self._trial_index, self.trials_per_episode - 1)
        t = min(self._t, trial.n_steps - 1)
        header = (
            f"{type(self).__name__.removesuffix('Env')}  ·  trial {shown + 1}/{self.trials_per_episode}  ·  "
            f"period: {trial.period_at(t)}  ·  {t * self._step_ms:g} ms into the trial"
        )
        if self._last_step is None:
            footer = "last step: none yet (episode start)"
        else:
            action, reward, outcome = self._last_step
            footer = f"last step: action {action} ({self.action_meaning(action)}), reward {reward:+.2f}"
            if outcome is not None:
                footer += f"; trial ended: {outcome}"
        return draw_trial_frame(trial, t, self.observation_layout, step_ms=self._step_ms, header=header, footer=footer)


_PERIOD_COLOURS = np.array(
    [[70, 130, 180], [240, 170, 60], [120, 190, 120], [200, 90, 90], [160, 120, 200], [120, 200, 210]],
    dtype=np.uint8,
)
_PIXEL = 16  # screen pixels per retina pixel
_MARGIN = 16
_BAR = 30  # width of one channel's level bar (pixels)
_TEXT = 12  # label size (pixels)
_GREY = (90, 90, 90)


def draw_trial_frame(
    trial: Trial,
    t: int,
    layout: Mapping[str, slice],
    *,
    step_ms: float = 10.0,
    header: str = "",
    footer: str = "",
) -> np.ndarray:
    """Draw one step of a trial: ``header`` on top; the retina image (``vision``) and one labelled level bar
    (0–1) per other observation channel, with its value; the trial's timeline coloured by period with a
    marker at step ``t`` and a legend of the periods (with their durations in ms); ``footer`` below."""
    obs = trial.observations[min(t, trial.n_steps - 1)]
    channels = [
        (name if idx.stop - idx.start == 1 else f"{name}[{i}]", idx.start + i)
        for name, idx in layout.items()
        if name != "vision"
        for i in range(idx.stop - idx.start)
    ]
    line = round(1.4 * _TEXT)
    vision_label = "vision (8×8 retina, black = 1)"
    retina_px = RETINA_SHAPE[0] * _PIXEL if "vision" in layout else 0
    left_w = max(retina_px, text_width(vision_label, _TEXT)) if retina_px else 0
    bars_x = _MARGIN + (left_w + 2 * _MARGIN if left_w else _MARGIN)
    width = max(520, bars_x + len(channels) * (_BAR + 14) + _MARGIN)
    bar_w = width - 2 * _MARGIN
    # legend of the periods, wrapped into rows that fit the frame
    legend: list[tuple[int, int, str]] = []  # (x, row, label)
    x, row = _MARGIN, 0
    for i, name in enumerate(trial.period_names):
        label = f"{name} {(trial.period_starts[i + 1] - trial.period_starts[i]) * step_ms:g} ms"
        item_w = 14 + text_width(label, _TEXT) + 12
        if x > _MARGIN and x + item_w > width - _MARGIN:
            x, row = _MARGIN, row + 1
        legend.append((x, row, label))
        x += item_w
    top = _MARGIN + line + 8  # below the header
    panel_h = max(retina_px, 128)
    timeline_y = top + panel_h + 3 * line + 4
    footer_y = timeline_y + 18 + (legend[-1][1] + 1) * line + 4
    height = footer_y + line + _MARGIN
    frame = np.full((height, width, 3), 255, dtype=np.uint8)
    draw_text(frame, header, _MARGIN, _MARGIN, size=_TEXT + 1)

    if retina_px:
        fill_rect(frame, _MARGIN - 2, top - 2, _MARGIN + retina_px + 2, top + retina_px + 2, (150, 150, 150))
        image = obs[layout["vision"]].reshape(RETINA_SHAPE)
        grey = (255 * (1.0 - np.clip(image, 0.0, 1.0))).astype(np.uint8)
        big = np.kron(grey, np.ones((_PIXEL, _PIXEL), dtype=np.uint8))
        frame[top : top + retina_px, _MARGIN : _MARGIN + retina_px] = big[..., None]
        draw_text(frame, vision_label, _MARGIN, top + panel_h + 6, size=_TEXT, colour=_GREY)

    if channels:  # level bars with a 0–1 scale on their left
        draw_text(frame, "1", bars_x - 6, top - 6, size=_TEXT - 2, colour=_GREY, align="right")
        draw_text(frame, "0", bars_x - 6, top + panel_h - 8, size=_TEXT - 2, colour=_GREY, align="right")
    for k, (name, index) in enumerate(channels):
        x = bars_x + k * (_BAR + 14)
        value = float(obs[index])
        level = round(float(np.clip(value, 0.0, 1.0)) * panel_h)
        fill_rect(frame, x, top, x + _BAR, top + panel_h, (225, 225, 225))
        fill_rect(frame, x, top + panel_h - level, x + _BAR, top + panel_h, (200, 60, 60))
        draw_text(frame, f"{value:.2g}", x + _BAR // 2, top - line + 2, size=_TEXT - 2, colour=_GREY, align="centre")
        draw_text(frame, name, x + _BAR // 2, top + panel_h + 6, size=_TEXT, align="centre")

    scale = bar_w / max(trial.n_steps, 1)
    draw_text(frame, f"trial timeline ({trial.n_steps * step_ms:g} ms)", _MARGIN, timeline_y - line, size=_TEXT)
    for i, (lx, lrow, label) in enumerate(legend):
        a = _MARGIN + round(trial.period_starts[i] * scale)
        b = _MARGIN + round(trial.period_starts[i + 1] * scale)
        colour = tuple(int(c) for c in _PERIOD_COLOURS[i % len(_PERIOD_COLOURS)])
        fill_rect(frame, a, timeline_y, b, timeline_y + 12, colour)
        y = timeline_y + 18 + lrow * line
        fill_rect(frame, lx, y + 2, lx + 10, y + 12, colour)
        draw_text(frame, label, lx + 14, y, size=_TEXT)
    marker = _MARGIN + min(round(t * scale), bar_w - 1)
    fill_rect(frame, marker, timeline_y - 4, marker + 2, timeline_y + 16, (0, 0, 0))
    draw_text(frame, footer, _MARGIN, footer_y, size=_TEXT)
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
        self.abort_penalty = check_number("abort_penalty", abort_penalty, low=-100.0, high=0.0)

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
