"""Property-based fuzz of every env (hypothesis): keyword arguments drawn from the ranges the env's docstring
documents as accepted, random seeds and random actions. Every step must give a finite observation inside the
observation space and a reward equal to the sum of its terms; the last step must carry the env's metrics, under
the same keys whatever the arguments; and inside the accepted ranges the physics must stay stable.

Episodes are kept short through the arguments (1–3 trials, 0.05–1 s of body time), and each env gets a
bounded number of examples (derandomised, so the default suite is reproducible): about 30 s in all on a 2-core
CPU. ``ENCEPHAGEN_FUZZ_EXAMPLES=500 pytest tests/test_fuzz_envs.py`` explores more, with fresh random draws.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from encephagen_gym.envs.worm_crawl import WormCrawlEnv

_EXAMPLES = int(os.environ.get("ENCEPHAGEN_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=_EXAMPLES or 12,
    deadline=None,
    derandomize=not _EXAMPLES,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

seeds = st.integers(0, 2**31 - 1)
task_seeds = st.integers(0, 1000)


def number(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


def duration(low: float, high: float) -> st.SearchStrategy[Any]:
    """A period duration (ms) as the docstrings accept it: a number or a (low, high) range."""
    pair = st.tuples(number(low, high), number(low, high)).map(lambda p: (min(p), max(p)))
    return st.one_of(number(low, high), pair)


def common_trial_kwargs(draw: st.DrawFn) -> dict[str, Any]:
    step_ms = draw(number(1.0, 1000.0))
    return {
        "step_ms": step_ms,
        "trials_per_episode": draw(st.integers(1, 3)),
        "task_seed": draw(task_seeds),
        "_one_step": step_ms,  # shortest duration of a period that must last at least one step
    }


@st.composite
def conditioning_kwargs(draw: st.DrawFn) -> dict[str, Any]:
    kwargs = common_trial_kwargs(draw)
    one = kwargs.pop("_one_step")
    n = draw(st.integers(2, 30))  # accepted up to 1000; kept small here for speed
    plus = draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=n - 1))
    return {
        **kwargs,
        "n_stimuli": n,
        "cs_plus": tuple(sorted(plus)),
        "reversal_after": draw(st.none() | st.integers(0, 4)),
        "extinction_after": draw(st.none() | st.integers(0, 4)),
        "false_alarm_penalty": draw(number(-100.0, 0.0)),
        "iti_ms": draw(duration(0.0, 1000.0)),
        "cs_ms": draw(duration(one, 1000.0)),
        "trace_ms": draw(duration(0.0, 1000.0)),
        "response_ms": draw(duration(one, 1000.0)),
    }


@st.composite
def pattern_kwargs(draw: st.DrawFn) -> dict[str, Any]:
    kwargs = common_trial_kwargs(draw)
    one = kwargs.pop("_one_step")
    dataset = draw(st.sampled_from(["prototypes", "digits"]))
    return {
        **kwargs,
        "dataset": dataset,
        "n_classes": draw(st.integers(2, 10 if dataset == "digits" else 30)),
        "split": draw(st.sampled_from(["train", "test"])),
        "flip_prob": draw(number(0.0, 0.5)),
        "jitter": draw(st.integers(0, 3)),
        "fixation_ms": draw(duration(0.0, 1000.0)),
        "stimulus_ms": draw(duration(one, 1000.0)),
        "decision_ms": draw(duration(one, 1000.0)),
        "abort_penalty": draw(number(-100.0, 0.0)),
    }


@st.composite
def working_memory_kwargs(draw: st.DrawFn) -> dict[str, Any]:
    kwargs = common_trial_kwargs(draw)
    one = kwargs.pop("_one_step")
    return {
        **kwargs,
        "mode": draw(st.sampled_from(["match", "recall"])),
        "n_stimuli": draw(st.integers(2, 30)),
        "match_prob": draw(number(0.0, 1.0)),
        "delay_ms": draw(duration(0.0, 3000.0)),
        "fixation_ms": draw(duration(0.0, 1000.0)),
        "sample_ms": draw(duration(one, 1000.0)),
        "test_ms": draw(duration(one, 1000.0)),
        "decision_ms": draw(duration(one, 1000.0)),
        "abort_penalty": draw(number(-100.0, 0.0)),
    }


@st.composite
def walker_kwargs(draw: st.DrawFn) -> dict[str, Any]:
    interval = sorted((draw(number(0.01, 2.0)), draw(number(0.01, 2.0))))
    return {
        "push_force": draw(st.one_of(number(0.0, 1000.0), duration(0.0, 1000.0))),
        "push_interval_s": tuple(interval),
        "push_duration_s": draw(number(0.0, 1.0)),
        "ctrl_cost_weight": draw(number(0.0, 10.0)),
        "healthy_reward": draw(number(0.0, 10.0)),
        "episode_s": draw(number(0.01, 1.0)),
        "reset_noise_scale": draw(number(0.0, 0.1)),
    }


@st.composite
def cpg_kwargs(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "cpg": draw(st.booleans()),
        "target_speed_range": tuple(sorted((draw(number(-1.0, 1.0)), draw(number(-1.0, 1.0))))),
        "alive_bonus": draw(number(0.0, 10.0)),
        "tracking_weight": draw(number(0.0, 10.0)),
        "tracking_sigma": draw(number(1e-3, 1.0)),
        "speed_tau_s": draw(number(1e-3, 5.0)),
        "episode_s": draw(number(0.02, 1.0)),
        "frame_skip": draw(st.integers(1, 10)),
        "reset_noise_scale": draw(number(0.0, 0.3)),
    }


@st.composite
def worm_kwargs(draw: st.DrawFn) -> dict[str, Any]:
    limits = WormCrawlEnv.LIMITS
    kwargs: dict[str, Any] = {"n_segments": draw(st.integers(*(int(v) for v in limits["n_segments"])))}
    for name in ("segment_length", "drag_tangential", "drag_ratio", "joint_stiffness"):
        kwargs[name] = draw(number(*limits[name]))
    kwargs["gear"] = draw(number(1e-3, limits["gear"][1]))
    return {
        **kwargs,
        "ctrl_cost_weight": draw(number(0.0, 10.0)),
        "episode_s": draw(number(0.02, 1.0)),
        "frame_skip": draw(st.integers(1, 10)),
        "reset_noise_scale": draw(number(0.0, 0.5)),
    }


STRATEGIES = {
    "Encephagen-Conditioning-v0": conditioning_kwargs(),
    "Encephagen-PatternRecognition-v0": pattern_kwargs(),
    "Encephagen-WorkingMemory-v0": working_memory_kwargs(),
    "Encephagen-Walker2dBalance-v0": walker_kwargs(),
    "Encephagen-CPGGait-v0": cpg_kwargs(),
    "Encephagen-WormCrawl-v0": worm_kwargs(),
}
COGNITIVE = list(STRATEGIES)[:3]
_DEFAULT_KEYS: dict[str, set[str]] = {}


def metric_keys(env_id: str) -> set[str]:
    """The metric keys of a short episode at otherwise default arguments (what every episode must report)."""
    if env_id not in _DEFAULT_KEYS:
        env = gym.make(env_id, **({"trials_per_episode": 1} if env_id in COGNITIVE else {"episode_s": 0.1}))
        env.reset(seed=0)
        env.action_space.seed(0)
        done, info = False, {}
        while not done:
            _, _, terminated, truncated, info = env.step(env.action_space.sample())
            done = terminated or truncated
        _DEFAULT_KEYS[env_id] = set(info["metrics"])
    return _DEFAULT_KEYS[env_id]


def check_episode(env_id: str, kwargs: dict[str, Any], seed: int) -> None:
    cognitive = env_id in COGNITIVE
    env = gym.make(env_id, render_mode="rgb_array" if cognitive else None, **kwargs)
    space = env.observation_space
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    assert np.isfinite(obs).all() and space.contains(obs), obs
    steps, done = 0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        steps += 1
        done = terminated or truncated
        assert np.isfinite(obs).all() and space.contains(obs), (steps, obs)
        assert np.isfinite(reward) and reward == pytest.approx(sum(info["reward_terms"].values()), rel=1e-12, abs=1e-12)
        assert done or "metrics" not in info
        assert steps < 100_000, "episode does not end"
    metrics = info["metrics"]
    assert set(metrics) == metric_keys(env_id), "metric keys must not depend on the arguments"
    assert all(isinstance(v, float) for v in metrics.values())
    if not cognitive:
        assert metrics["physics_unstable"] == 0.0, f"unstable physics inside the accepted ranges: {kwargs}"
        assert steps == env.unwrapped.episode_steps or terminated
    else:
        frame = env.render()
        assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    env.close()


@pytest.mark.parametrize("env_id", list(STRATEGIES))
def test_fuzz_env(env_id: str) -> None:
    @FUZZ
    @given(kwargs=STRATEGIES[env_id], seed=seeds)
    def run(kwargs: dict[str, Any], seed: int) -> None:
        check_episode(env_id, kwargs, seed)

    run()
