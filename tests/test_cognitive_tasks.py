"""Behaviour of the three trial-based cognitive tasks: well-posedness, timing, options and errors."""

from __future__ import annotations

import itertools
import subprocess
import sys
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from encephagen_gym.envs.conditioning import ConditioningEnv
from encephagen_gym.envs.pattern_recognition import PatternRecognitionEnv
from encephagen_gym.envs.stimuli import binary_prototypes, digits_split_indices, shift
from encephagen_gym.envs.trial_env import MAX_IMAGES, TrialEnv
from encephagen_gym.envs.working_memory import DELAY_BINS_MS, WorkingMemoryEnv

N_TRIALS = 200


def run_trials(env: TrialEnv, policy: Any, n_trials: int, seed: int = 0) -> list[dict[str, Any]]:
    """Trial outcomes of ``n_trials`` trials (over as many episodes as needed) under ``policy(obs, info)``."""
    outcomes: list[dict[str, Any]] = []
    episode = 0
    while len(outcomes) < n_trials:
        obs, info = env.reset(seed=seed + episode)
        env.action_space.seed(seed + episode)
        if hasattr(policy, "reset"):
            policy.reset()
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(policy(obs, info))
            done = terminated or truncated
            if "trial_outcome" in info:
                outcomes.append(info["trial_outcome"])
        episode += 1
    return outcomes[:n_trials]


class Reference:
    def __init__(self, env: TrialEnv) -> None:
        self.policy = env.make_reference_policy()

    def reset(self) -> None:
        self.policy.reset()

    def __call__(self, obs: np.ndarray, info: dict[str, Any]) -> int:
        return self.policy(obs)


def random_policy(env: TrialEnv):
    return lambda obs, info: env.action_space.sample()


def guess_at_decision(env: TrialEnv, rng: np.random.Generator):
    """Fixates, then picks a uniformly random choice in the decision period: the chance-level control."""
    return lambda obs, info: int(rng.integers(1, env.action_space.n)) if env.period == "decision" else 0


def binomial_margin(p: float, n: int) -> float:
    return 3.0 * np.sqrt(p * (1 - p) / n)


# --------------------------------------------------------------------------------- well-posedness
@pytest.mark.parametrize(
    "make_env",
    [
        lambda: PatternRecognitionEnv(),
        lambda: PatternRecognitionEnv(dataset="digits", split="test", n_classes=10),
        lambda: WorkingMemoryEnv(),
        lambda: WorkingMemoryEnv(mode="recall"),
    ],
    ids=["patterns", "digits-test", "wm-match", "wm-recall"],
)
def test_choice_tasks_reference_near_max_and_chance_controls_near_chance(make_env) -> None:
    env = make_env()
    n_choices = env.action_space.n - 1
    chance = 1.0 / n_choices
    reference = run_trials(env, Reference(env), N_TRIALS)
    assert np.mean([o["reward"] for o in reference]) >= 0.9  # max reward per trial is 1

    guesses = run_trials(env, guess_at_decision(env, np.random.default_rng(0)), N_TRIALS)
    accuracy = np.mean([o["correct"] for o in guesses])
    assert abs(accuracy - chance) < binomial_margin(chance, N_TRIALS)

    random = run_trials(env, random_policy(env), N_TRIALS)
    assert np.mean([o["reward"] for o in random]) <= chance  # random actions mostly abort: below chance


def test_conditioning_reference_near_max_and_random_does_not_discriminate() -> None:
    env = ConditioningEnv()
    reference = run_trials(env, Reference(env), N_TRIALS)
    best = sum(1.0 for o in reference if o["cs_plus"])  # +1 per CS+ trial, 0 per CS- trial
    assert sum(o["reward"] for o in reference) >= 0.9 * best
    hits = np.mean([o["choice"] for o in reference if o["cs_plus"]])
    false_alarms = np.mean([o["choice"] for o in reference if not o["cs_plus"]])
    assert hits == 1.0 and false_alarms == 0.0

    random = run_trials(env, random_policy(env), N_TRIALS)
    hit = np.mean([o["choice"] for o in random if o["cs_plus"]])
    fa = np.mean([o["choice"] for o in random if not o["cs_plus"]])
    assert abs(hit - fa) < 0.15
    assert sum(o["reward"] for o in random) < 0.7 * best


# --------------------------------------------------------------------------------- timing
def period_runs(env: TrialEnv, seed: int = 0, n_steps: int = 400) -> list[tuple[int, str, int]]:
    """(trial, period, number of steps) for each run of equal periods under a fixating policy."""
    env.reset(seed=seed)
    labels = []
    for _ in range(n_steps):
        _, _, terminated, _, info = env.step(0)
        labels.append((info["trial"], info["period"]))
        if terminated:
            break
    return [(t, p, len(list(g))) for (t, p), g in itertools.groupby(labels)]


@pytest.mark.parametrize("step_ms", [10.0, 5.0])
def test_trial_timing_matches_configured_periods(step_ms: float) -> None:
    env = PatternRecognitionEnv(step_ms=step_ms, fixation_ms=100, stimulus_ms=300, decision_ms=100)
    assert env.step_ms == step_ms and env.dt == step_ms / 1000.0  # dt in seconds, Gymnasium's meaning
    expected = {"fixation": 100, "stimulus": 300, "decision": 100}
    runs = period_runs(env)
    assert [p for _, p, _ in runs[:3]] == ["fixation", "stimulus", "decision"]
    for _, period, steps in runs[:-1]:  # the last run may be cut by n_steps
        assert steps * step_ms == expected[period]


def test_sampled_delays_stay_in_range_and_vary() -> None:
    env = WorkingMemoryEnv(delay_ms=(500, 2000))
    runs = period_runs(env, n_steps=3000)
    delays = [steps * env.step_ms for _, period, steps in runs[:-1] if period == "delay"]
    assert len(delays) >= 8
    assert all(500 <= d <= 2000 for d in delays)
    assert len(set(delays)) > len(delays) // 2
    outcomes = run_trials(env, Reference(env), 30)
    assert all(500 <= o["delay_ms"] <= 2000 for o in outcomes)


def test_conditioning_period_sequence_and_channels() -> None:
    env = ConditioningEnv(iti_ms=300)
    obs, _ = env.reset(seed=0)
    layout = env.observation_layout
    rows = [(env.period, obs)]
    for _ in range(env.trial.n_steps - 1):
        obs, *_ = env.step(0)
        rows.append((env.period, obs))
    steps = {p: sum(1 for q, _ in rows if q == p) for p in ("iti", "cs", "trace", "response")}
    assert steps == {"iti": 30, "cs": 50, "trace": 20, "response": 30}
    for period, o in rows:
        assert o[layout["vision"]].any() == (period == "cs")
        assert o[layout["cue"]][0] == (1.0 if period == "response" else 0.0)
        assert o[layout["us"]][0] == 0.0  # never responded: no US


# --------------------------------------------------------------------------------- rules and options
def step_to_period(env: TrialEnv, period: str) -> np.ndarray:
    obs = None
    while env.period != period:
        obs, *_ = env.step(0)
    return obs


def test_us_delivered_after_response_on_cs_plus_only() -> None:
    env = ConditioningEnv(n_stimuli=2, cs_plus=(0,))
    seen = set()
    for seed in range(20):
        env.reset(seed=seed)
        cs_plus = env.trial.extras["cs_plus"]
        step_to_period(env, "response")
        obs, reward, *_ = env.step(1)
        assert reward == (1.0 if cs_plus else env.false_alarm_penalty)
        assert obs[env.observation_layout["us"]][0] == (1.0 if cs_plus else 0.0)
        _, again, *_ = env.step(1)  # a second response in the same window is ignored
        assert again == 0.0
        seen.add(cs_plus)
    assert seen == {True, False}


def test_responses_outside_window_have_no_effect() -> None:
    env = ConditioningEnv()
    env.reset(seed=0)
    rewards = []
    while env.period != "response":
        _, reward, *_ = env.step(1)
        rewards.append(reward)
    assert rewards and not any(rewards)


def test_reversal_swaps_contingency_and_extinction_stops_us() -> None:
    env = ConditioningEnv(n_stimuli=3, cs_plus=(0,), reversal_after=10, extinction_after=15, trials_per_episode=20)
    outcomes = run_trials(env, Reference(env), 20)
    for o in outcomes:
        rewarded = (0,) if o["trial"] < 10 else (1, 2)
        assert o["cs_plus"] == (o["stimulus"] in rewarded)
        assert o["extinction"] == (o["trial"] >= 15)
        if o["extinction"]:
            assert o["reward"] == 0.0
    assert any(o["cs_plus"] and o["reward"] == 1.0 for o in outcomes if o["trial"] >= 10)


def test_choice_before_decision_aborts_trial() -> None:
    env = WorkingMemoryEnv()
    env.reset(seed=0)
    step_to_period(env, "delay")
    _, reward, terminated, _, info = env.step(1)
    assert reward == pytest.approx(-0.1)
    assert info["new_trial"] and info["trial_outcome"]["outcome"] == "abort"
    assert info["reward_terms"] == {"correct": 0.0, "abort": -0.1}
    assert env.trial_index == 1 and env.period == "fixation" and not terminated


def test_no_choice_ends_trial_without_reward() -> None:
    env = PatternRecognitionEnv()
    outcomes = run_trials(env, lambda obs, info: 0, 20)
    assert {o["outcome"] for o in outcomes} == {"no_response"}
    assert all(o["reward"] == 0.0 for o in outcomes)


@pytest.mark.parametrize("n_trials", [1, 7])
def test_episode_is_a_block_of_trials(n_trials: int) -> None:
    env = PatternRecognitionEnv(trials_per_episode=n_trials)
    env.reset(seed=0)
    ends, terminated = 0, False
    while not terminated:
        _, _, terminated, _, info = env.step(0)
        ends += info["new_trial"]
    assert ends == n_trials
    assert info["metrics"]["accuracy"] == 0.0 and info["metrics"]["no_response_rate"] == 1.0
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)


def _block_metrics(env: TrialEnv, policy: Any = None, seed: int = 0) -> dict[str, float]:
    obs, _ = env.reset(seed=seed)
    terminated = False
    while not terminated:
        obs, _, terminated, _, info = env.step(0 if policy is None else policy(obs))
    return info["metrics"]


@pytest.mark.parametrize("delay_ms", [(500, 2000), (100, 300), 2500, (0, 4000)])
def test_working_memory_metric_keys_do_not_depend_on_arguments(delay_ms) -> None:
    """Fixed delay bins: the same keys whatever ``delay_ms``, so tables over runs line up."""
    env = WorkingMemoryEnv(delay_ms=delay_ms, trials_per_episode=30)
    metrics = _block_metrics(env, env.make_reference_policy())
    keys = [k for k in metrics if k.startswith("accuracy_delay_")]
    assert keys == [key for key, _, _ in DELAY_BINS_MS]
    assert keys == ["accuracy_delay_0_500ms", "accuracy_delay_500_1000ms", "accuracy_delay_1000_1500ms",
                    "accuracy_delay_1500_2000ms", "accuracy_delay_over_2000ms"]  # fmt: skip
    low, high = (delay_ms, delay_ms) if np.ndim(delay_ms) == 0 else delay_ms
    for key, lo, hi in DELAY_BINS_MS:  # a bin holds trials (reference: accuracy 1) iff the delays reach it
        reachable = lo <= high and hi > low and not (lo == 2000 and high <= 2000)
        assert (metrics[key] == 1.0) if reachable else np.isnan(metrics[key]), (key, metrics[key])


def test_working_memory_delay_bins_edges() -> None:
    env = WorkingMemoryEnv()
    outcomes = [{"delay_ms": d, "correct": c, "outcome": "x", "reward": 0.0}
                for d, c in ((499.0, 1), (500.0, 0), (1999.0, 1), (2000.0, 1), (2010.0, 0))]  # fmt: skip
    metrics = env._episode_metrics(outcomes)
    assert metrics["accuracy_delay_0_500ms"] == 1.0
    assert metrics["accuracy_delay_500_1000ms"] == 0.0
    assert np.isnan(metrics["accuracy_delay_1000_1500ms"])
    assert metrics["accuracy_delay_1500_2000ms"] == 1.0  # 1999 and 2000
    assert metrics["accuracy_delay_over_2000ms"] == 0.0


def test_task_definition_is_fixed_by_task_seed_not_episode_seed() -> None:
    a, b = PatternRecognitionEnv(task_seed=0), PatternRecognitionEnv(task_seed=0)
    a.reset(seed=1)
    b.reset(seed=2)
    np.testing.assert_array_equal(a.prototypes, b.prototypes)
    assert not np.array_equal(a.prototypes, PatternRecognitionEnv(task_seed=1).prototypes)
    vec = gym.make_vec("Encephagen-WorkingMemory-v0", num_envs=2, vectorization_mode="sync")
    vec.reset(seed=0)
    first, second = vec.envs[0].unwrapped.stimuli, vec.envs[1].unwrapped.stimuli
    np.testing.assert_array_equal(first, second)


def test_digits_splits_are_disjoint_and_stratified() -> None:
    train = digits_split_indices("train", 10, task_seed=0)
    test = digits_split_indices("test", 10, task_seed=0)
    assert len(np.intersect1d(train, test)) == 0
    assert len(train) + len(test) == 1797
    assert 0.2 < len(test) / 1797 < 0.3
    env = PatternRecognitionEnv(dataset="digits", split="test", n_classes=10)
    assert set(np.unique(env.labels)) == set(range(10))
    assert len(env.images) == len(test)
    other_seed = digits_split_indices("test", 10, task_seed=1)
    assert not np.array_equal(test, other_seed)


# --------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: PatternRecognitionEnv(n_classes=0), "n_classes"),
        (lambda: PatternRecognitionEnv(dataset="mnist"), "dataset"),
        (lambda: PatternRecognitionEnv(dataset="digits", n_classes=11), "n_classes"),
        (lambda: PatternRecognitionEnv(split="validation"), "split"),
        (lambda: PatternRecognitionEnv(stimulus_ms=-5), "stimulus"),
        (lambda: PatternRecognitionEnv(decision_ms=0), "decision"),
        (lambda: PatternRecognitionEnv(flip_prob=0.9), "flip_prob"),
        (lambda: WorkingMemoryEnv(delay_ms=(2000, 500)), "delay"),
        (lambda: WorkingMemoryEnv(delay_ms=(-1, 500)), "delay"),
        (lambda: WorkingMemoryEnv(mode="sequence"), "mode"),
        (lambda: WorkingMemoryEnv(match_prob=1.5), "match_prob"),
        (lambda: ConditioningEnv(cs_plus=(0, 1)), "cs_plus"),
        (lambda: ConditioningEnv(cs_plus=(5,)), "cs_plus"),
        (lambda: ConditioningEnv(n_stimuli=1), "n_stimuli"),
        (lambda: ConditioningEnv(reversal_after=-1), "reversal_after"),
        (lambda: ConditioningEnv(iti_ms=float("nan")), "iti"),
        (lambda: ConditioningEnv(step_ms=0), "step_ms"),
        (lambda: ConditioningEnv(step_ms="10"), "step_ms"),
        (lambda: ConditioningEnv(trials_per_episode=0), "trials_per_episode"),
        (lambda: ConditioningEnv(render_mode="human"), "render_mode"),
    ],
)
def test_invalid_options_raise_value_error(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_options_pass_through_gymnasium_make() -> None:
    env = gym.make("Encephagen-PatternRecognition-v0", n_classes=3, dataset="digits", split="test")
    assert env.action_space.n == 4
    with pytest.raises(ValueError, match="n_classes"):
        gym.make("Encephagen-PatternRecognition-v0", n_classes=0)


# --------------------------------------------------------------------------------- hardening (issue 13)
def _slow_prototypes(n_images: int, task_seed: int, min_distance: int = 14) -> np.ndarray:
    """The definition of ``binary_prototypes``, written the slow and obvious way."""
    rng = np.random.default_rng(task_seed)
    images: list[np.ndarray] = []
    while len(images) < n_images:
        candidate = np.zeros(64, dtype=np.float32)
        candidate[rng.choice(64, size=19, replace=False)] = 1.0
        candidate = candidate.reshape(8, 8)
        far = all(
            np.abs(candidate - shift(other, dy, dx)).sum() >= min_distance
            for other in images
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
        )
        if far:
            images.append(candidate)
    return np.stack(images)


def test_fast_prototypes_are_the_same_images() -> None:
    for n, seed in ((2, 0), (12, 3), (40, 7)):
        np.testing.assert_array_equal(binary_prototypes(n, seed), _slow_prototypes(n, seed))


def test_many_stimuli_build_and_more_than_the_cap_is_refused() -> None:
    env = ConditioningEnv(n_stimuli=MAX_IMAGES)  # was 63 s; now about a second (printed, not asserted)
    assert env.stimuli.shape == (MAX_IMAGES, 8, 8)
    assert len({image.tobytes() for image in env.stimuli}) == MAX_IMAGES
    with pytest.raises(ValueError, match="n_stimuli"):
        ConditioningEnv(n_stimuli=MAX_IMAGES + 1)
    with pytest.raises(ValueError, match="n_classes"):
        PatternRecognitionEnv(n_classes=MAX_IMAGES + 1)


def test_conditioning_nan_metrics_are_documented_and_happen_as_documented() -> None:
    assert "NaN" in ConditioningEnv.__doc__ and "np.nanmean" in ConditioningEnv.__doc__
    seen = set()
    for seed in range(6):
        metrics = _block_metrics(ConditioningEnv(trials_per_episode=1), seed=seed)
        cs_plus_block = np.isfinite(metrics["hit_rate"])
        assert np.isnan(metrics["false_alarm_rate"]) == cs_plus_block  # one trial: one of the two rates is NaN
        assert np.isnan(metrics["discrimination"])
        assert np.isfinite(metrics["accuracy"])
        seen.add(bool(cs_plus_block))
    assert seen == {True, False}


def test_bad_argument_types_get_clear_errors() -> None:
    for make, name in (
        (lambda: ConditioningEnv(n_stimuli="abc"), "n_stimuli"),
        (lambda: ConditioningEnv(cs_plus=("x",)), "cs_plus"),
        (lambda: ConditioningEnv(reversal_after="soon"), "reversal_after"),
        (lambda: ConditioningEnv(false_alarm_penalty="big"), "false_alarm_penalty"),
        (lambda: ConditioningEnv(task_seed=-1), "task_seed"),
        (lambda: ConditioningEnv(cs_ms="long"), "cs"),
        (lambda: WorkingMemoryEnv(match_prob="half"), "match_prob"),
        (lambda: PatternRecognitionEnv(jitter=1.5), "jitter"),
        (lambda: PatternRecognitionEnv(step_ms=float("inf")), "step_ms"),
        (lambda: WorkingMemoryEnv(delay_ms=(0, 1e9)), "delay"),
    ):
        with pytest.raises(ValueError, match=name):
            make()


def _frame_after(env: TrialEnv, steps: int, action: int = 0) -> np.ndarray:
    env.reset(seed=0)
    for _ in range(steps):
        env.step(action)
    return env.render()


def test_cognitive_frames_are_labelled() -> None:
    """The header (task, trial, period, time in the trial), the channel labels, the period legend and the
    footer (last action and reward) are drawn: text pixels in those bands, changing when their content does."""
    env = PatternRecognitionEnv(render_mode="rgb_array")
    first, later = _frame_after(env, 0), _frame_after(env, 5)  # both in fixation: only the times differ
    assert first.shape == later.shape and first.shape[1] >= 520
    header = slice(0, 30)
    assert (first[header] < 100).any()  # dark text in the header band
    assert not np.array_equal(first[header], later[header])  # "0 ms" vs "50 ms into the trial"
    footer = slice(first.shape[0] - 40, first.shape[0])
    env.reset(seed=0)
    while env.period != "decision":
        env.step(0)
    before = env.render()
    env.step(env.trial.gt)  # a correct choice: reward +1, the trial ends
    after = env.render()
    assert not np.array_equal(before[footer], after[footer])  # "last step: action … reward +1.00 …"
    assert env.action_meaning(0) == "fixate" and env.action_meaning(3) == "class 2"
    assert ConditioningEnv().action_meaning(1) == "respond"
    assert WorkingMemoryEnv().action_meaning(2) == "non-match"
    assert WorkingMemoryEnv(mode="recall").action_meaning(1) == "image 0"


def test_frame_legend_wraps_to_fit() -> None:
    env = WorkingMemoryEnv(render_mode="rgb_array")  # five periods: the legend needs two rows
    frame = _frame_after(env, 3)
    assert frame.shape[1] == 520  # nothing drawn past the right edge: the frame did not have to grow
    assert (frame[:, -16:] == 255).all()  # right margin stays blank


def test_envs_import_and_run_without_matplotlib() -> None:
    code = (
        "import sys\n"
        "sys.modules['matplotlib'] = None  # importing it now fails\n"
        "from encephagen_gym.envs.conditioning import ConditioningEnv\n"
        "from encephagen_gym.envs.worm_crawl import WormCrawlEnv\n"
        "env = ConditioningEnv(); env.reset(seed=0); env.step(0)\n"
        "worm = WormCrawlEnv(); worm.reset(seed=0); worm.step(worm.action_space.sample())\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
