"""Invariants every registered encephagen env must satisfy (dm_control suite_test style).

Parametrized over ``encephagen_gym.ENV_SPECS``, so a newly registered env is covered automatically.
"""

from __future__ import annotations

import pickle
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.env_util import make_vec_env

from tests.helpers import ENV_IDS, rollout


@pytest.fixture(params=ENV_IDS)
def env_id(request: pytest.FixtureRequest) -> str:
    return request.param


def test_registry_ids_are_registered_and_well_named() -> None:
    tasks = ("Conditioning", "PatternRecognition", "WorkingMemory", "Walker2dBalance", "CPGGait", "WormCrawl")
    assert [f"Encephagen-{task}-v0" for task in tasks] == ENV_IDS
    assert all(env_id.startswith("Encephagen-") and env_id.endswith("-v0") for env_id in ENV_IDS)
    assert all(env_id in gym.registry for env_id in ENV_IDS)


def test_make_without_explicit_import() -> None:
    code = (
        "import sys, gymnasium\n"
        "assert 'encephagen_gym' not in sys.modules\n"
        "env = gymnasium.make('encephagen_gym:Encephagen-Conditioning-v0')\n"
        "obs, _ = env.reset(seed=0)\n"
        "print(obs.shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(66,)"


def test_gymnasium_check_env(env_id: str) -> None:
    env = gym.make(env_id, render_mode="rgb_array")
    gym_check_env(env.unwrapped, skip_render_check=False)
    env.close()


def test_sb3_check_env(env_id: str) -> None:
    env = gym.make(env_id)
    sb3_check_env(env.unwrapped, warn=True)
    env.close()


def test_same_seed_same_rollout(env_id: str) -> None:
    first = rollout(gym.make(env_id), None, seed=7, max_steps=300)
    second = rollout(gym.make(env_id), None, seed=7, max_steps=300)
    np.testing.assert_array_equal(first["observations"], second["observations"])
    np.testing.assert_array_equal(first["rewards"], second["rewards"])
    assert [i.get("reward_terms") for i in first["infos"]] == [i.get("reward_terms") for i in second["infos"]]
    other = rollout(gym.make(env_id), None, seed=8, max_steps=300)
    assert not np.array_equal(first["observations"], other["observations"])


def test_pickle_round_trip_continues_identically(env_id: str) -> None:
    env = gym.make(env_id)
    env.reset(seed=3)
    env.action_space.seed(3)
    for _ in range(20):
        env.step(env.action_space.sample())
    clone = pickle.loads(pickle.dumps(env))
    actions = [env.action_space.sample() for _ in range(50)]
    for action in actions:
        a = env.step(action)
        b = clone.step(action)
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1:4] == b[1:4]
        if a[2] or a[3]:
            break


def test_async_vector_env(env_id: str) -> None:
    envs = gym.make_vec(env_id, num_envs=2, vectorization_mode="async")
    try:
        obs, _ = envs.reset(seed=0)
        assert obs.shape == (2, *envs.single_observation_space.shape)
        envs.action_space.seed(0)
        for _ in range(10):
            obs, rewards, terminated, truncated, _ = envs.step(envs.action_space.sample())
        assert np.isfinite(obs).all() and np.isfinite(rewards).all()
        assert terminated.shape == truncated.shape == (2,)
    finally:
        envs.close()


def test_reward_is_sum_of_terms_and_bounded(env_id: str) -> None:
    env = gym.make(env_id)
    run = rollout(env, None, seed=1, max_steps=2000)
    for reward, info in zip(run["rewards"], run["infos"][1:], strict=True):
        terms = info["reward_terms"]
        assert terms, "reward_terms must name the reward's terms"
        assert reward == pytest.approx(sum(terms.values()), abs=1e-9)
    assert np.isfinite(run["rewards"]).all()
    assert np.abs(run["rewards"]).max() < 100.0


def test_observation_layout_covers_observation_and_every_modality_varies(env_id: str) -> None:
    env = gym.make(env_id)
    layout = env.unwrapped.observation_layout
    dim = env.observation_space.shape[0]
    covered = np.zeros(dim, dtype=int)
    for name, index in layout.items():
        assert isinstance(name, str) and isinstance(index, slice)
        covered[index] += 1
    assert (covered == 1).all(), "observation_layout slices must tile the observation exactly once"
    policy = env.unwrapped.make_reference_policy()
    runs = [rollout(env, policy, seed=s, max_steps=1500) for s in range(2)]
    runs += [rollout(env, None, seed=s, max_steps=1500) for s in range(2)]
    observations = np.concatenate([r["observations"] for r in runs])
    assert env.observation_space.contains(observations[0])
    assert np.isfinite(observations).all()
    for name, index in layout.items():
        assert observations[:, index].std(axis=0).max() > 0, f"modality {name!r} never changes"


def test_metrics_at_episode_end(env_id: str) -> None:
    env = gym.make(env_id)
    run = rollout(env, env.unwrapped.make_reference_policy(), seed=0)
    assert run["done"]
    metrics = run["infos"][-1]["metrics"]
    assert metrics and all(isinstance(v, float) for v in metrics.values())
    assert all("metrics" not in info for info in run["infos"][:-1])


def test_reference_policy_beats_random(env_id: str) -> None:
    env = gym.make(env_id)
    policy = env.unwrapped.make_reference_policy()
    reference = [rollout(env, policy, seed=s)["rewards"].sum() for s in range(3)]
    random = [rollout(env, None, seed=s)["rewards"].sum() for s in range(3)]
    assert np.mean(reference) > np.mean(random) + 0.1 * abs(np.mean(random)) + 1e-6


def test_render_rgb_array(env_id: str) -> None:
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    frames = [env.render()]
    env.action_space.seed(0)
    for _ in range(60):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            break
    frames.append(env.render())
    for frame in frames:
        assert isinstance(frame, np.ndarray) and frame.dtype == np.uint8
        assert frame.ndim == 3 and frame.shape[2] == 3 and min(frame.shape[:2]) >= 64
    assert not np.array_equal(frames[0], frames[1])
    plain = gym.make(env_id)
    plain.reset(seed=0)
    assert plain.render() is None  # no render_mode: nothing drawn


def _bad_actions(space: gym.Space) -> list[object]:
    if isinstance(space, gym.spaces.Discrete):
        return [int(space.n), -1, np.array([0, 0]), 0.5, np.nan]
    assert isinstance(space, gym.spaces.Box)
    shape = space.shape
    return [
        np.full(shape, np.nan, dtype=np.float32),
        np.zeros((shape[0] + 1,), dtype=np.float32),
        np.full(shape, 2.0 * np.max(np.abs(space.high)), dtype=np.float32),
    ]


def test_bad_actions_raise_clear_errors(env_id: str) -> None:
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    for action in _bad_actions(env.action_space):
        with pytest.raises(ValueError, match="action"):
            env.step(action)


def test_step_before_reset_raises(env_id: str) -> None:
    env = gym.make(env_id, disable_env_checker=True).unwrapped
    with pytest.raises((RuntimeError, gym.error.ResetNeeded)):
        env.step(env.action_space.sample())


# ----------------------------------------------------------------------------------------- hardening (issue 13)
COGNITIVE = ENV_IDS[:3]
BODIES = ENV_IDS[3:]
SHORT = {  # a non-default episode length for each env, and the number of steps it must run (None: trial-based)
    "Encephagen-Conditioning-v0": ({"trials_per_episode": 3}, None),
    "Encephagen-PatternRecognition-v0": ({"trials_per_episode": 3}, None),
    "Encephagen-WorkingMemory-v0": ({"trials_per_episode": 3}, None),
    "Encephagen-Walker2dBalance-v0": ({"episode_s": 16.0, "push_force": 0.0}, 2000),
    "Encephagen-CPGGait-v0": ({"episode_s": 12.0}, 600),
    "Encephagen-WormCrawl-v0": ({"episode_s": 0.5}, 25),
}


def test_step_ms_is_the_one_clock_and_dt_is_in_seconds(env_id: str) -> None:
    env = gym.make(env_id)
    task = env.unwrapped
    assert isinstance(task.step_ms, float) and task.step_ms > 0
    assert task.step_ms == pytest.approx(1000.0 * task.dt)
    assert task.dt < 0.1  # seconds, Gymnasium's meaning (every env steps in 5–20 ms)
    if env_id in COGNITIVE:
        assert task.step_ms == 10.0
        faster = gym.make(env_id, step_ms=5.0).unwrapped
        assert faster.step_ms == 5.0 and faster.dt == 0.005
        with pytest.raises(AttributeError):
            task.dt = 0.5  # read-only: set step_ms in the constructor
    vec = gym.make_vec(env_id, num_envs=2, vectorization_mode="sync")
    assert list(vec.get_attr("step_ms")) == [task.step_ms] * 2
    vec.close()
    sb3_vec = make_vec_env(env_id, n_envs=2, seed=0)  # what the brain agent reads (through Monitor)
    assert sb3_vec.get_attr("step_ms") == [task.step_ms] * 2
    sb3_vec.close()


def test_every_env_owns_its_episode_length_and_reports_metrics(env_id: str) -> None:
    kwargs, expected_steps = SHORT[env_id]
    env = gym.make(env_id, **kwargs)  # with gym.make's wrappers: no registered TimeLimit may cut the episode
    run = rollout(env, env.unwrapped.make_reference_policy(), seed=0)
    assert run["done"] and "metrics" in run["infos"][-1]
    if expected_steps is not None:
        assert len(run["rewards"]) == expected_steps == env.unwrapped.episode_steps
        assert env.spec.max_episode_steps is None
    else:
        assert sum(info.get("new_trial", False) for info in run["infos"][1:]) == 3


def test_step_after_the_end_raises(env_id: str) -> None:
    kwargs, _ = SHORT[env_id]
    if env_id == "Encephagen-Walker2dBalance-v0":
        kwargs = {"episode_s": 0.2}
    env = gym.make(env_id, disable_env_checker=True, **kwargs).unwrapped
    run = rollout(env, None, seed=0)
    assert run["done"]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(env.action_space.sample())
    env.reset(seed=1)
    env.step(env.action_space.sample())  # fine again after reset


@pytest.mark.parametrize("env_id", BODIES)
def test_unstable_physics_ends_the_episode_with_a_flag(env_id: str) -> None:
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(np.zeros(env.action_space.shape, dtype=np.float32))
    assert info["physics_unstable"] is False and not terminated
    env.data.qvel[:] = 1e12  # beyond MuJoCo's limit (1e10): it warns and resets the simulation
    _, reward, terminated, truncated, info = env.step(np.zeros(env.action_space.shape, dtype=np.float32))
    assert terminated and not truncated
    assert info["physics_unstable"] is True
    assert reward == 0.0 and set(info["reward_terms"].values()) == {0.0}
    metrics = info["metrics"]
    assert metrics["physics_unstable"] == 1.0
    assert all(np.isnan(v) for k, v in metrics.items() if k != "physics_unstable")
    normal = rollout(gym.make(env_id, episode_s=0.2), None, seed=0)
    assert normal["infos"][-1]["metrics"]["physics_unstable"] == 0.0


@pytest.mark.parametrize("env_id", BODIES)
@pytest.mark.parametrize("size", [0, -5, 15, 10_000, 2.5, "abc", True])
def test_bad_frame_sizes_are_refused(env_id: str, size: object) -> None:
    for name in ("width", "height"):
        with pytest.raises(ValueError, match=name):
            gym.make(env_id, render_mode="rgb_array", **{name: size})


@pytest.mark.parametrize("env_id", BODIES)
def test_human_render_without_a_display_names_the_fix(env_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUJOCO_GL", "egl")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(ValueError, match="render_mode='human'") as error:
        gym.make(env_id, render_mode="human")  # reaches the env (not Gymnasium's pygame HumanRendering wrapper)
    assert "MUJOCO_GL='egl'" in str(error.value) and "DISPLAY=None" in str(error.value)
    assert gym.make(env_id).unwrapped.metadata["render_modes"] == ["rgb_array"]  # what check_env will test
