"""Encephagen-Conditioning-v0: trace conditioning as a go/no-go task with CS+ and CS− stimuli."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces

from encephagen_gym.envs.checks import check_integer, check_number
from encephagen_gym.envs.stimuli import RETINA_SIZE, binary_prototypes
from encephagen_gym.envs.trial_env import MAX_IMAGES, Duration, Trial, TrialEnd, TrialEnv, validate_duration


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
    An episode is a block of ``trials_per_episode`` trials; it terminates after the last trial (a step after
    that raises ``RuntimeError`` until ``reset``). Trial ``k``'s
    contingency: the stimuli in ``cs_plus`` are rewarded, the others not; from trial ``reversal_after`` on
    (counted from 0 within the block) the roles swap; from trial ``extinction_after`` on no US is delivered.
    The CS of each trial is drawn uniformly from the ``n_stimuli`` images.

    ## Info
    ``period``, ``trial``, ``gt`` (1 if responding is correct, i.e. the CS is currently rewarded, else 0),
    ``new_trial``, ``reward_terms``; at trial end ``trial_outcome`` (``hit``, ``miss``, ``false_alarm``,
    ``correct_rejection``; with ``stimulus``, ``cs_plus``, ``extinction``); at episode end ``metrics``:
    ``hit_rate`` (fraction of CS+ trials with a response), ``false_alarm_rate`` (fraction of CS− trials with a
    response), ``discrimination`` (hit rate − false-alarm rate), ``accuracy`` and ``mean_reward_per_trial``.
    **NaN metrics:** a block without a CS+ trial has ``hit_rate`` = NaN, one without a CS− trial
    ``false_alarm_rate`` = NaN, and then ``discrimination`` is NaN too. The stimuli are drawn uniformly, so with
    the default 2 stimuli a block of ``trials_per_episode`` = k trials has no CS+ (or no CS−) trial with
    probability 2⁻ᵏ (k = 20: 1 in a million; k = 1: always). Average such metrics with ``np.nanmean``.

    ## Arguments
    | argument | default | accepted | meaning |
    |---|---|---|---|
    | ``n_stimuli`` | 2 | 2–1000 | number of CS images (``make`` takes ≈ 1 s at 1000) |
    | ``cs_plus`` | ``(0,)`` | distinct indices in 0..n_stimuli−1, at least one CS− left | rewarded stimuli |
    | ``reversal_after`` | None | None or an integer ≥ 0 | trial of the block from which CS+ and CS− swap |
    | ``extinction_after`` | None | None or an integer ≥ 0 | trial of the block from which no US is delivered |
    | ``false_alarm_penalty`` | −0.5 | [−100, 0] | reward of a response on a CS− trial |
    | ``iti_ms`` | (200, 600) | ms in [0, 60000], a number or a (low, high) range | inter-trial interval |
    | ``cs_ms`` | 500 | as ``iti_ms``, at least one step | CS presentation |
    | ``trace_ms`` | 200 | as ``iti_ms`` | stimulus-free trace interval |
    | ``response_ms`` | 300 | as ``iti_ms``, at least one step | response window |
    | ``step_ms`` | 10 | (0, 1000] | duration of an env step (ms); ``env.dt`` is the same in seconds |
    | ``trials_per_episode`` | 20 | ≥ 1 | trials per episode (block) |
    | ``task_seed`` | 0 | integer ≥ 0 | which CS images (the same in every copy of the env) |
    | ``render_mode`` | None | None or ``"rgb_array"`` | labelled picture of the step (see ``render``) |

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
        step_ms: float = 10.0,
        trials_per_episode: int = 20,
        task_seed: int = 0,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(
            observation_layout={"vision": RETINA_SIZE, "us": 1, "cue": 1},
            step_ms=step_ms,
            trials_per_episode=trials_per_episode,
            render_mode=render_mode,
        )
        n_stimuli = check_integer("n_stimuli (a CS+ and a CS-)", n_stimuli, low=2, high=MAX_IMAGES)
        indices = f"cs_plus must be distinct stimulus indices in 0..{n_stimuli - 1}, got {cs_plus!r}"
        try:
            cs_plus = tuple(check_integer("cs_plus", s, low=0, high=n_stimuli - 1) for s in cs_plus)
        except (TypeError, ValueError):
            raise ValueError(indices) from None
        if not cs_plus or len(set(cs_plus)) != len(cs_plus):
            raise ValueError(indices)
        if len(cs_plus) == n_stimuli:
            raise ValueError("cs_plus must leave at least one stimulus unrewarded (a CS-)")
        if reversal_after is not None:
            reversal_after = check_integer("reversal_after (None or a trial index)", reversal_after, low=0)
        if extinction_after is not None:
            extinction_after = check_integer("extinction_after (None or a trial index)", extinction_after, low=0)
        false_alarm_penalty = check_number("false_alarm_penalty", false_alarm_penalty, low=-100.0, high=0.0)
        self.periods: tuple[tuple[str, Duration], ...] = tuple(
            (name, validate_duration(name, d))
            for name, d in (("iti", iti_ms), ("cs", cs_ms), ("trace", trace_ms), ("response", response_ms))
        )
        self._min_steps("cs", self.periods[1][1])
        self._min_steps("response", self.periods[3][1])

        self.n_stimuli = n_stimuli
        self.cs_plus = cs_plus
        self.reversal_after = reversal_after
        self.extinction_after = extinction_after
        self.false_alarm_penalty = false_alarm_penalty
        self.task_seed = check_integer("task_seed", task_seed, low=0)
        self.stimuli = binary_prototypes(self.n_stimuli, self.task_seed)
        self.action_space = spaces.Discrete(2)
        self._responded = False

    def action_meaning(self, action: int) -> str:
        """``"withhold"`` (0) or ``"respond"`` (1)."""
        return ("withhold", "respond")[action]

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
