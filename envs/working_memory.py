"""Encephagen-WorkingMemory-v0: delayed match-to-sample (or delayed recall) over a variable delay."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from gymnasium import spaces

from encephagen_gym.envs.stimuli import RETINA_SIZE, binary_prototypes
from encephagen_gym.envs.trial_env import ChoiceTrialEnv, Duration, Trial, validate_duration

MODES = ("match", "recall")


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
    ``trials_per_episode`` trials and terminates after the last.

    ## Info
    ``period``, ``trial``, ``gt``, ``new_trial``, ``reward_terms``; at trial end ``trial_outcome`` with
    ``delay_ms`` (the trial's actual delay), ``sample`` and ``test`` (−1 in recall mode); at episode end
    ``metrics``: ``accuracy``, ``abort_rate``, ``no_response_rate``, ``mean_reward_per_trial`` and, per delay
    bin, ``accuracy_delay_<lo>_<hi>ms`` (NaN for a bin without trials).

    ## Arguments
    ``mode`` (``"match"``), ``n_stimuli`` (4), ``match_prob`` (0.5), ``delay_ms`` ((500, 2000)),
    ``delay_bins`` (3 equal-width bins over ``delay_ms``), ``fixation_ms`` (200), ``sample_ms`` (300),
    ``test_ms`` (300), ``decision_ms`` (200), ``abort_penalty`` (−0.1), ``dt`` (10 ms),
    ``trials_per_episode`` (20), ``task_seed`` (0), ``render_mode`` (None or ``"rgb_array"``).

    ## Version History
    * v0: initial version.
    """

    def __init__(
        self,
        *,
        mode: str = "match",
        n_stimuli: int = 4,
        match_prob: float = 0.5,
        delay_ms: Duration = (500.0, 2000.0),
        delay_bins: int = 3,
        fixation_ms: Duration = 200.0,
        sample_ms: Duration = 300.0,
        test_ms: Duration = 300.0,
        decision_ms: Duration = 200.0,
        abort_penalty: float = -0.1,
        dt: float = 10.0,
        trials_per_episode: int = 20,
        task_seed: int = 0,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(
            observation_layout={"vision": RETINA_SIZE, "cue": 1},
            abort_penalty=abort_penalty,
            dt=dt,
            trials_per_episode=trials_per_episode,
            render_mode=render_mode,
        )
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
        if int(n_stimuli) != n_stimuli or n_stimuli < 2:
            raise ValueError(f"n_stimuli must be an integer >= 2, got {n_stimuli!r}")
        if not 0.0 <= match_prob <= 1.0:
            raise ValueError(f"match_prob must be in [0, 1], got {match_prob!r}")
        if int(delay_bins) != delay_bins or delay_bins < 1:
            raise ValueError(f"delay_bins must be a positive integer, got {delay_bins!r}")
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
        self.n_stimuli = int(n_stimuli)
        self.match_prob = float(match_prob)
        self.task_seed = int(task_seed)
        self.stimuli = binary_prototypes(self.n_stimuli, self.task_seed)
        delay = self.periods[2][1]
        low, high = delay if isinstance(delay, tuple) else (delay, delay)
        self.delay_bin_edges = np.linspace(low, high, int(delay_bins) + 1) if high > low else np.array([low, high])
        self.action_space = spaces.Discrete(3 if mode == "match" else self.n_stimuli + 1)

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
        trial.extras = {"sample": sample, "test": test, "delay_ms": (delay.stop - delay.start) * self.dt}
        obs[trial.period_slice("sample"), vision] = self.stimuli[sample].ravel()
        if test >= 0:
            obs[trial.period_slice("test"), vision] = self.stimuli[test].ravel()
        obs[: trial.period_slice("decision").start, cue] = 1.0
        return trial

    def _episode_metrics(self, outcomes: list[dict[str, Any]]) -> dict[str, float]:
        metrics = super()._episode_metrics(outcomes)
        edges = self.delay_bin_edges
        delays = np.array([o["delay_ms"] for o in outcomes])
        correct = np.array([o["correct"] for o in outcomes], dtype=float)
        for i, (lo, hi) in enumerate(itertools.pairwise(edges)):
            last = i == len(edges) - 2
            in_bin = (delays >= lo) & ((delays <= hi) if last else (delays < hi))
            key = f"accuracy_delay_{lo:.0f}_{hi:.0f}ms"
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
