"""Encephagen-WorkingMemory-v0: delayed match-to-sample (or delayed recall) over a variable delay."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from encephagen_gym.envs.checks import check_integer, check_number
from encephagen_gym.envs.stimuli import RETINA_SIZE, binary_prototypes
from encephagen_gym.envs.trial_env import MAX_IMAGES, ChoiceTrialEnv, Duration, Trial, validate_duration

MODES = ("match", "recall")

DELAY_BINS_MS: tuple[tuple[str, float, float], ...] = (
    ("accuracy_delay_0_500ms", 0.0, 500.0),
    ("accuracy_delay_500_1000ms", 500.0, 1000.0),
    ("accuracy_delay_1000_1500ms", 1000.0, 1500.0),
    ("accuracy_delay_1500_2000ms", 1500.0, 2000.0),
    ("accuracy_delay_over_2000ms", 2000.0, float("inf")),
)
"""The fixed delay bins of the accuracy metrics: ``(metric key, low, high)`` in ms. A trial whose delay ``d``
satisfies ``low <= d < high`` counts in the bin, except that the 1500–2000 bin includes 2000 and the last
bin holds ``d > 2000``. The same keys whatever the env's arguments, so that tables over runs line up."""


class WorkingMemoryEnv(ChoiceTrialEnv):
    """Delayed match-to-sample: hold a sample image through a blank delay, then judge a test image.

    ## Description
    A sample (one of ``n_stimuli`` binary 8×8 images fixed by ``task_seed``) is shown, followed by a blank delay
    of variable length. In ``mode="match"`` (default) a test image follows, identical to the sample with
    probability ``match_prob`` and otherwise another of the images; after the fixation cue goes off the agent
    reports match or non-match. In ``mode="recall"`` there is no test image: the agent reports which of the
    ``n_stimuli`` images was the sample. Accuracy as a function of the delay is the memory curve.

    | period | duration (ms, default) | retina | cue |
    |---|---|---|---|
    | ``fixation`` | 200 | blank | 1 |
    | ``sample`` | 300 | sample | 1 |
    | ``delay`` | uniform 500–2000 | blank | 1 |
    | ``test`` (match mode only) | 300 | test image | 1 |
    | ``decision`` | 200 | blank | 0 |

    ## Action Space
    ``mode="match"``: ``Discrete(3)``, 0 = fixate, 1 = match, 2 = non-match.
    ``mode="recall"``: ``Discrete(n_stimuli + 1)``, 0 = fixate, ``k`` = sample was image ``k − 1``.

    ## Observation Space
    ``Box(0, 1, (65,), float32)``: ``vision`` = 0:64 (retina, row-major), ``cue`` = 64 (fixation cue).

    ## Rewards
    ``reward = correct + abort``: the first choice in the decision period ends the trial with ``correct`` = 1
    if right and 0 if wrong; a choice before it aborts the trial with ``abort`` = ``abort_penalty`` (−0.1). No
    choice in the decision period ends the trial with 0.

    ## Starting State and Episode End
    Sample uniform over the images; delay uniform over ``delay_ms`` (rounded to whole steps). An episode is
    ``trials_per_episode`` trials and terminates after the last (a step after that raises ``RuntimeError``
    until ``reset``).

    ## Info
    ``period``, ``trial``, ``gt``, ``new_trial``, ``reward_terms``; at trial end ``trial_outcome`` with
    ``delay_ms`` (the trial's actual delay), ``sample`` and ``test`` (−1 in recall mode); at episode end
    ``metrics``: ``accuracy``, ``abort_rate``, ``no_response_rate``, ``mean_reward_per_trial`` and the accuracy
    in each of five fixed delay bins (:data:`DELAY_BINS_MS`), whatever ``delay_ms`` is, so that tables over
    runs line up: ``accuracy_delay_0_500ms``, ``accuracy_delay_500_1000ms``, ``accuracy_delay_1000_1500ms``,
    ``accuracy_delay_1500_2000ms`` (bins ``[low, high)`` ms, the last of these including 2000) and
    ``accuracy_delay_over_2000ms`` (delays > 2000 ms). A bin without trials in the block is NaN (with the
    default delays of 500–2000 ms, the 0–500 and over-2000 bins always are).

    ## Arguments
    | argument | default | accepted | meaning |
    |---|---|---|---|
    | ``mode`` | ``"match"`` | ``"match"``, ``"recall"`` | match-to-sample or recall of the sample |
    | ``n_stimuli`` | 4 | 2–1000 | number of images |
    | ``match_prob`` | 0.5 | [0, 1] | probability that the test image is the sample (match mode) |
    | ``delay_ms`` | (500, 2000) | ms in [0, 60000], a number or a (low, high) range | delay |
    | ``fixation_ms`` | 200 | as ``delay_ms`` | fixation period |
    | ``sample_ms`` | 300 | as ``delay_ms``, at least one step | sample presentation |
    | ``test_ms`` | 300 | as ``delay_ms``, at least one step | test presentation (match mode) |
    | ``decision_ms`` | 200 | as ``delay_ms``, at least one step | decision period |
    | ``abort_penalty`` | −0.1 | [−100, 0] | reward of a choice before the decision period |
    | ``step_ms`` | 10 | (0, 1000] | duration of an env step (ms); ``env.dt`` is the same in seconds |
    | ``trials_per_episode`` | 20 | ≥ 1 | trials per episode (block) |
    | ``task_seed`` | 0 | integer ≥ 0 | which images |
    | ``render_mode`` | None | None or ``"rgb_array"`` | labelled picture of the step (see ``render``) |

    ## Version History
    * v0: initial version (fixed delay bins; the former ``delay_bins`` argument is gone).
    """

    def __init__(
        self,
        *,
        mode: str = "match",
        n_stimuli: int = 4,
        match_prob: float = 0.5,
        delay_ms: Duration = (500.0, 2000.0),
        fixation_ms: Duration = 200.0,
        sample_ms: Duration = 300.0,
        test_ms: Duration = 300.0,
        decision_ms: Duration = 200.0,
        abort_penalty: float = -0.1,
        step_ms: float = 10.0,
        trials_per_episode: int = 20,
        task_seed: int = 0,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(
            observation_layout={"vision": RETINA_SIZE, "cue": 1},
            abort_penalty=abort_penalty,
            step_ms=step_ms,
            trials_per_episode=trials_per_episode,
            render_mode=render_mode,
        )
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
        n_stimuli = check_integer("n_stimuli", n_stimuli, low=2, high=MAX_IMAGES)
        match_prob = check_number("match_prob", match_prob, low=0.0, high=1.0)
        periods = [("fixation", fixation_ms), ("sample", sample_ms), ("delay", delay_ms)]
        if mode == "match":
            periods.append(("test", test_ms))
        periods.append(("decision", decision_ms))
        self.periods: tuple[tuple[str, Duration], ...] = tuple(
            (name, validate_duration(name, d)) for name, d in periods
        )
        for name, duration in self.periods:
            if name in ("sample", "test", "decision"):
                self._min_steps(name, duration)

        self.mode = mode
        self.n_stimuli = n_stimuli
        self.match_prob = match_prob
        self.task_seed = check_integer("task_seed", task_seed, low=0)
        self.stimuli = binary_prototypes(self.n_stimuli, self.task_seed)
        self.action_space = spaces.Discrete(3 if mode == "match" else self.n_stimuli + 1)

    def action_meaning(self, action: int) -> str:
        """``"fixate"`` (0); ``"match"``/``"non-match"`` (1/2) in match mode; ``"image k"`` (``k + 1``) in recall."""
        if action == 0:
            return "fixate"
        return ("match", "non-match")[action - 1] if self.mode == "match" else f"image {action - 1}"

    def _sample_trial(self, index: int) -> Trial:
        sample = int(self.np_random.integers(self.n_stimuli))
        names, starts = self._layout_periods(self.periods)
        obs = self._new_observations(starts)
        vision, cue = self.observation_layout["vision"], self.observation_layout["cue"]
        test = -1
        if self.mode == "match":
            if self.np_random.random() < self.match_prob:
                test = sample
            else:  # uniform over the other images
                test = (sample + 1 + int(self.np_random.integers(self.n_stimuli - 1))) % self.n_stimuli
            gt = 1 if test == sample else 2
        else:
            gt = sample + 1
        trial = Trial(gt, names, starts, obs)
        delay = trial.period_slice("delay")
        trial.extras = {"sample": sample, "test": test, "delay_ms": (delay.stop - delay.start) * self.step_ms}
        obs[trial.period_slice("sample"), vision] = self.stimuli[sample].ravel()
        if test >= 0:
            obs[trial.period_slice("test"), vision] = self.stimuli[test].ravel()
        obs[: trial.period_slice("decision").start, cue] = 1.0
        return trial

    def _episode_metrics(self, outcomes: list[dict[str, Any]]) -> dict[str, float]:
        metrics = super()._episode_metrics(outcomes)
        delays = np.array([o["delay_ms"] for o in outcomes])
        correct = np.array([o["correct"] for o in outcomes], dtype=float)
        top = DELAY_BINS_MS[-1][1]  # 2000 ms: the last finite bin includes it, the open bin starts above it
        for key, low, high in DELAY_BINS_MS:
            upper = delays <= high if high == top else delays < high
            in_bin = (delays > low if low == top else delays >= low) & upper
            metrics[key] = float(correct[in_bin].mean()) if in_bin.any() else float("nan")
        return metrics

    def make_reference_policy(self) -> WorkingMemoryReference:
        """The scripted reference: perfect memory of the sample."""
        return WorkingMemoryReference(self)


class WorkingMemoryReference:
    """Hand-made reference with perfect memory: stores each image presentation of the trial and, when the
    fixation cue goes off, compares the test with the sample (match mode) or names the sample (recall mode)."""

    def __init__(self, env: WorkingMemoryEnv) -> None:
        self.env = env
        self.reset()

    def reset(self) -> None:
        self._presentations: list[np.ndarray] = []
        self._previous_blank = True

    def __call__(self, obs: np.ndarray) -> int:
        layout = self.env.observation_layout
        image = obs[layout["vision"]]
        blank = not image.any()
        if not blank and self._previous_blank:
            self._presentations.append(image.copy())
        self._previous_blank = blank
        if obs[layout["cue"]][0] > 0.5 or not self._presentations:
            return 0
        sample = self._presentations[0]
        if self.env.mode == "match":
            answer = 1 if np.array_equal(sample, self._presentations[-1]) and len(self._presentations) > 1 else 2
        else:
            distances = np.abs(self.env.stimuli.reshape(self.env.n_stimuli, -1) - sample).sum(axis=1)
            answer = int(np.argmin(distances)) + 1
        self._presentations = []
        return answer
