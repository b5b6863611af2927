"""Encephagen-Conditioning-v0: trace conditioning as a go/no-go task with CS+ and CS− stimuli."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces

from encephagen_gym.envs.stimuli import RETINA_SIZE, binary_prototypes
from encephagen_gym.envs.trial_env import Duration, Trial, TrialEnd, TrialEnv, validate_duration


class ConditioningEnv(TrialEnv):
    """Trace conditioning with a scored response: respond to the rewarded stimulus (CS+), withhold on CS−.

    ## Description
    Each trial shows one of ``n_stimuli`` conditioned-stimulus (CS) images on an 8×8 retina after a blank
    inter-trial interval (ITI). After a stimulus-free trace interval a response window opens (signalled on the
    ``cue`` channel). Responding in the window to a CS+ delivers the unconditioned stimulus (US, the reward),
    which then shows on the ``us`` channel for the rest of the window; responding to a CS− is punished.
    Contingencies can reverse (``reversal_after``) or the US can stop (``extinction_after``) within the block,
    which makes the env a test of acquisition, discrimination, reversal learning and extinction.

    | period | duration (ms, default) | retina | cue | us |
    |---|---|---|---|---|
    | ``iti`` | uniform 200–600 | blank | 0 | 0 |
    | ``cs`` | 500 | CS image | 0 | 0 |
    | ``trace`` | 200 | blank | 0 | 0 |
    | ``response`` | 300 | blank | 1 | 1 after a rewarded response |

    ## Action Space
    ``Discrete(2)``: 0 = withhold, 1 = respond. Only the first response in the window counts; responses outside
    the window have no effect.

    ## Observation Space
    ``Box(0, 1, (66,), float32)``

    | slice | modality (``observation_layout`` key) | meaning |
    |---|---|---|
    | 0:64 | ``vision`` | 8×8 retina, row-major; CS images are binary patterns fixed by ``task_seed`` |
    | 64 | ``us`` | unconditioned stimulus (reward delivery) |
    | 65 | ``cue`` | response window open |

    ## Rewards
    ``reward = us + false_alarm`` (both in ``info["reward_terms"]``): ``us`` = +1 for the first response in the
    window on a CS+ trial (0 after ``extinction_after`` trials), ``false_alarm`` = ``false_alarm_penalty``
    (default −0.5) for the first response in the window on a CS− trial. Withholding earns 0.

    ## Starting State and Episode End
    An episode is a block of ``trials_per_episode`` trials; it terminates after the last trial. Trial ``k``'s
    contingency: the stimuli in ``cs_plus`` are rewarded, the others not; from trial ``reversal_after`` on
    (counted from 0 within the block) the roles swap; from trial ``extinction_after`` on no US is delivered.
    The CS of each trial is drawn uniformly from the ``n_stimuli`` images.

    ## Info
    ``period``, ``trial``, ``gt`` (1 if responding is correct, i.e. the CS is currently rewarded, else 0),
    ``new_trial``, ``reward_terms``; at trial end ``trial_outcome`` (``hit``, ``miss``, ``false_alarm``,
    ``correct_rejection``; with ``stimulus``, ``cs_plus``, ``extinction``); at episode end ``metrics``:
    ``hit_rate`` (responses on CS+ trials), ``false_alarm_rate`` (responses on CS− trials), ``discrimination``
    (hit − FA), ``accuracy`` and ``mean_reward_per_trial``.

    ## Arguments
    ``n_stimuli`` (2), ``cs_plus`` ((0,)), ``reversal_after`` (None), ``extinction_after`` (None),
    ``false_alarm_penalty`` (−0.5), ``iti_ms`` ((200, 600)), ``cs_ms`` (500), ``trace_ms`` (200),
    ``response_ms`` (300), ``dt`` (10 ms per step), ``trials_per_episode`` (20), ``task_seed`` (0: which CS
    images), ``render_mode`` (None or ``"rgb_array"``).

    ## Version History
    * v0: initial version.
    """

    reward_term_names: ClassVar[tuple[str, ...]] = ("us", "false_alarm")

    def __init__(
        self,
        *,
        n_stimuli: int = 2,
        cs_plus: Sequence[int] = (0,),
        reversal_after: int | None = None,
        extinction_after: int | None = None,
        false_alarm_penalty: float = -0.5,
        iti_ms: Duration = (200.0, 600.0),
        cs_ms: Duration = 500.0,
        trace_ms: Duration = 200.0,
        response_ms: Duration = 300.0,
        dt: float = 10.0,
        trials_per_episode: int = 20,
        task_seed: int = 0,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(
            observation_layout={"vision": RETINA_SIZE, "us": 1, "cue": 1},
            dt=dt,
            trials_per_episode=trials_per_episode,
            render_mode=render_mode,
        )
        if int(n_stimuli) != n_stimuli or n_stimuli < 2:
            raise ValueError(f"n_stimuli must be an integer >= 2 (a CS+ and a CS-), got {n_stimuli!r}")
        cs_plus = tuple(int(s) for s in cs_plus)
        if not cs_plus or len(set(cs_plus)) != len(cs_plus) or not all(0 <= s < n_stimuli for s in cs_plus):
            raise ValueError(f"cs_plus must be distinct stimulus indices in 0..{n_stimuli - 1}, got {cs_plus!r}")
        if len(cs_plus) == n_stimuli:
            raise ValueError("cs_plus must leave at least one stimulus unrewarded (a CS-)")
        for name, value in (("reversal_after", reversal_after), ("extinction_after", extinction_after)):
            if value is not None and (int(value) != value or value < 0):
                raise ValueError(f"{name} must be None or a non-negative integer, got {value!r}")
        if not np.isfinite(false_alarm_penalty) or false_alarm_penalty > 0:
            raise ValueError(f"false_alarm_penalty must be a finite number <= 0, got {false_alarm_penalty!r}")
        self.periods: tuple[tuple[str, Duration], ...] = tuple(
            (name, validate_duration(name, d))
            for name, d in (("iti", iti_ms), ("cs", cs_ms), ("trace", trace_ms), ("response", response_ms))
        )
        self._min_steps("cs", self.periods[1][1])
        self._min_steps("response", self.periods[3][1])

        self.n_stimuli = int(n_stimuli)
        self.cs_plus = cs_plus
        self.reversal_after = reversal_after
        self.extinction_after = extinction_after
        self.false_alarm_penalty = float(false_alarm_penalty)
        self.task_seed = int(task_seed)
        self.stimuli = binary_prototypes(self.n_stimuli, self.task_seed)
        self.action_space = spaces.Discrete(2)
        self._responded = False

    def rewarded_stimuli(self, trial_index: int) -> tuple[int, ...]:
        """Stimuli that are CS+ on trial ``trial_index`` of the block (after reversal, the former CS−)."""
        if self.reversal_after is not None and trial_index >= self.reversal_after:
            return tuple(s for s in range(self.n_stimuli) if s not in self.cs_plus)
        return self.cs_plus

    def _sample_trial(self, index: int) -> Trial:
        stimulus = int(self.np_random.integers(self.n_stimuli))
        names, starts = self._layout_periods(self.periods)
        obs = self._new_observations(starts)
        trial = Trial(
            gt=int(stimulus in self.rewarded_stimuli(index)),
            period_names=names,
            period_starts=starts,
            observations=obs,
            extras={
                "stimulus": stimulus,
                "cs_plus": stimulus in self.rewarded_stimuli(index),
                "extinction": self.extinction_after is not None and index >= self.extinction_after,
            },
        )
        obs[trial.period_slice("cs"), self.observation_layout["vision"]] = self.stimuli[stimulus].ravel()
        obs[trial.period_slice("response"), self.observation_layout["cue"]] = 1.0
        self._responded = False
        return trial

    def _judge(self, action: int, period: str, terms: dict[str, float]) -> TrialEnd | None:
        if action == 0 or period != "response" or self._responded:
            return None
        self._responded = True
        trial = self.trial
        if trial.extras["cs_plus"]:
            if not trial.extras["extinction"]:
                terms["us"] = 1.0
                window = trial.period_slice("response")
                trial.observations[self._t + 1 : window.stop, self.observation_layout["us"]] = 1.0
        else:
            terms["false_alarm"] = self.false_alarm_penalty
        return None  # the trial runs to the end of the window; the outcome is decided there

    def _end_of_trial(self) -> TrialEnd:
        cs_plus = self.trial.extras["cs_plus"]
        if cs_plus:
            outcome = "hit" if self._responded else "miss"
        else:
            outcome = "false_alarm" if self._responded else "correct_rejection"
        return TrialEnd(outcome, correct=self._responded == cs_plus, choice=int(self._responded))

    def _episode_metrics(self, outcomes: list[dict[str, Any]]) -> dict[str, float]:
        metrics = super()._episode_metrics(outcomes)
        plus = [o["choice"] for o in outcomes if o["cs_plus"]]
        minus = [o["choice"] for o in outcomes if not o["cs_plus"]]
        metrics["hit_rate"] = float(np.mean(plus)) if plus else float("nan")
        metrics["false_alarm_rate"] = float(np.mean(minus)) if minus else float("nan")
        metrics["discrimination"] = metrics["hit_rate"] - metrics["false_alarm_rate"]
        return metrics

    def make_reference_policy(self) -> ConditioningReference:
        """The scripted reference policy for this env (an oracle that knows the current contingency)."""
        return ConditioningReference(self)


class ConditioningReference:
    """Oracle reference: remembers the CS it saw and responds in the window iff that CS is currently rewarded.

    It reads the CS from the retina and the contingency from the env (:meth:`ConditioningEnv.rewarded_stimuli`),
    so it is the best achievable policy: hit rate 1, false-alarm rate 0.
    """

    def __init__(self, env: ConditioningEnv) -> None:
        self.env = env
        self.reset()

    def reset(self) -> None:
        self._stimulus: int | None = None

    def __call__(self, obs: np.ndarray) -> int:
        env, layout = self.env, self.env.observation_layout
        image = obs[layout["vision"]]
        if image.any():
            distances = np.abs(env.stimuli.reshape(env.n_stimuli, -1) - image).sum(axis=1)
            self._stimulus = int(np.argmin(distances))
        if obs[layout["cue"]][0] < 0.5 or self._stimulus is None:
            return 0
        respond = self._stimulus in env.rewarded_stimuli(env.trial_index)
        if obs[layout["us"]][0] > 0.5:  # the US arrived: this trial is done
            self._stimulus = None
        return int(respond)
