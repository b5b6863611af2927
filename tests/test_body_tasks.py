"""Physics sanity of the three MuJoCo body tasks, beyond the registry-wide API tests.

Simulated time is kept short (a few seconds of body time per rollout); full calibrations are in
``scripts/calibrate_bodies.py``.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
import pytest

from encephagen_gym.envs.cpg_gait import CPGGaitEnv, SpinalMapping, gait_frequency_and_phase, stepping_cycles
from encephagen_gym.envs.walker2d_balance import Walker2dBalanceEnv
from encephagen_gym.envs.worm_crawl import TravellingWavePolicy, WormCrawlEnv


def episode(env: gym.Env, policy: Callable[[np.ndarray], Any], seed: int) -> dict[str, Any]:
    """Run one full episode; return the final info (with ``metrics``) and the number of steps."""
    obs, info = env.reset(seed=seed)
    if hasattr(policy, "reset"):
        policy.reset()
    steps, done = 0, False
    while not done:
        obs, _, terminated, truncated, info = env.step(policy(obs))
        steps += 1
        done = terminated or truncated
    return {**info["metrics"], "steps": steps}


def constant(value: float, shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    return lambda obs: np.full(shape, value, dtype=np.float32)


# ----------------------------------------------------------------------------------------- Walker2d balance
def test_walker_reference_beats_zero_action() -> None:
    env = Walker2dBalanceEnv()
    reference = [episode(env, env.make_reference_policy(), seed)["time_upright_s"] for seed in range(4)]
    zero = [episode(env, constant(0.0, (6,)), seed)["time_upright_s"] for seed in range(4)]
    assert np.mean(zero) < 2.0  # zero action collapses within 2 s
    assert np.mean(reference) > np.mean(zero) + 4.0
    assert max(reference) == pytest.approx(8.0)


def test_walker_is_walker2d_v5_regrouped_without_pushes() -> None:
    ours = Walker2dBalanceEnv(push_force=0.0)
    raw = gym.make("Walker2d-v5").unwrapped
    a, _ = ours.reset(seed=5)
    b, _ = raw.reset(seed=5)
    order = [0, 1, 8, 9, 10, 2, 3, 4, 5, 6, 7, 11, 12, 13, 14, 15, 16]  # ours[i] = raw[order[i]]
    np.testing.assert_allclose(a, b[order].astype(np.float32))
    rng = np.random.default_rng(0)
    for _ in range(30):
        action = rng.uniform(-1, 1, 6).astype(np.float32)
        a, *_ = ours.step(action)
        b, *_ = raw.step(action)
        np.testing.assert_allclose(a, b[order].astype(np.float32), rtol=1e-6, atol=1e-6)


def test_walker_pushes_follow_their_options() -> None:
    env = Walker2dBalanceEnv(push_force=(50.0, 50.0), push_interval_s=(0.4, 0.4), push_duration_s=0.08)
    env.reset(seed=0)
    forces = []
    for _ in range(200):  # 1.6 s
        _, _, terminated, _, info = env.step(env.make_reference_policy()(env._get_obs()))
        forces.append(info["push_force"])
        if terminated:
            break
    forces = np.array(forces)
    onsets = np.flatnonzero((forces[1:] != 0) & (forces[:-1] == 0)) + 1
    assert set(np.abs(forces)) == {0.0, 50.0}
    assert np.all(np.diff(onsets) == 50)  # 0.4 s / 8 ms
    assert all(np.count_nonzero(forces[o : o + 15]) == 10 for o in onsets[:-1])  # 0.08 s = 10 steps
    quiet = Walker2dBalanceEnv(push_force=0.0)
    quiet.reset(seed=0)
    quiet_forces = []
    for _ in range(150):
        _, _, terminated, _, info = quiet.step(np.zeros(6))
        quiet_forces.append(info["push_force"])
        if terminated:  # zero action falls within about a second
            break
    assert len(quiet_forces) > 50 and not any(quiet_forces)


# ----------------------------------------------------------------------------------------- CPG gait
def test_cpg_mid_drive_steps_in_antiphase_and_walks_forward() -> None:
    env = CPGGaitEnv(episode_s=6.0)
    metrics = episode(env, constant(0.0, (2,)), seed=0)
    assert metrics["fell"] == 0.0
    assert 0.5 <= metrics["stepping_frequency_hz"] <= 2.0  # body time
    assert 150.0 <= metrics["interleg_phase_deg"] <= 210.0
    assert metrics["mean_speed"] > 0.05  # m/s


def test_cpg_more_drive_gives_a_faster_gait() -> None:
    env = CPGGaitEnv(episode_s=6.0)
    runs = [episode(env, constant(drive, (2,)), seed=1) for drive in (0.0, 0.5, 1.0)]
    speeds = [m["mean_speed"] for m in runs]
    frequencies = [m["stepping_frequency_hz"] for m in runs]
    assert all(m["fell"] == 0.0 for m in runs)
    assert speeds[0] + 0.03 < speeds[1] and speeds[1] + 0.03 < speeds[2]
    assert frequencies[0] < frequencies[2]


def test_cpg_runs_on_the_physics_clock() -> None:
    """The CPG advances once per physics step: 2 env steps at frame_skip 2 = 1 env step at frame_skip 4."""
    fine, coarse = CPGGaitEnv(frame_skip=2), CPGGaitEnv(frame_skip=4)
    fine.reset(seed=3)
    coarse.reset(seed=3)
    drive = np.array([0.3, 0.1], dtype=np.float32)
    for _ in range(50):
        fine.step(drive)
        fine.step(drive)
        coarse.step(drive)
    np.testing.assert_array_equal(fine.data.qpos, coarse.data.qpos)
    np.testing.assert_array_equal(fine._cpg_state.x, coarse._cpg_state.x)
    assert fine.data.time == pytest.approx(coarse.data.time) == pytest.approx(50 * 0.02)


def test_cpg_minimal_drive_steps_in_place_and_zero_tonic_input_silences() -> None:
    env = CPGGaitEnv(episode_s=4.0)
    idle = episode(env, constant(-1.0, (2,)), seed=0)
    assert idle["fell"] == 0.0 and abs(idle["mean_speed"]) < 0.01
    silent = CPGGaitEnv(episode_s=3.0, mapping=SpinalMapping(tonic_min=0.0))
    silent.reset(seed=0)
    x0 = silent.data.qpos[0]
    for _ in range(150):
        obs, _, terminated, _, _ = silent.step(np.full(2, -1.0, dtype=np.float32))
        assert not terminated
    assert abs(silent.data.qpos[0] - x0) < 0.02
    assert np.maximum(obs[silent.observation_layout["cpg"]][:4], 0).max() < 0.02  # (only feedback noise)


def test_cpg_false_is_the_torque_control() -> None:
    env = CPGGaitEnv(cpg=False)
    assert env.action_space.shape == (4,)
    assert "cpg" not in env.observation_layout
    assert env.observation_space.shape == (17,)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (17,)
    policy = env.make_reference_policy()
    policy.reset()
    for _ in range(20):
        action = policy(obs)
        obs, *_ = env.step(action)
        np.testing.assert_array_equal(env.data.ctrl, action)  # the action is the motor command


def test_gait_metrics_on_synthetic_traces() -> None:
    dt, f = 0.02, 1.25
    t = np.arange(0, 8, dt)
    rear, front = np.sin(2 * np.pi * f * t), np.sin(2 * np.pi * f * t - np.pi / 2)  # front lags by 90°
    frequency, phase = gait_frequency_and_phase(rear, front, dt)
    assert frequency == pytest.approx(f, rel=0.01)
    assert phase == pytest.approx(90.0, abs=3.0)
    assert stepping_cycles(np.zeros(100), dt).size == 0
    jitter = 0.01 * np.random.default_rng(0).standard_normal(t.size)
    assert gait_frequency_and_phase(rear + jitter, front, dt)[0] == pytest.approx(f, rel=0.02)


# ----------------------------------------------------------------------------------------- worm
def test_worm_travelling_wave_crawls_forward_and_reversed_wave_backward() -> None:
    env = WormCrawlEnv()
    forward = episode(env, env.make_reference_policy(), seed=0)
    backward = episode(env, TravellingWavePolicy(env.n_segments - 1, env.dt, frequency=-1.0), seed=0)
    zero = episode(env, constant(0.0, (env.n_segments - 1,)), seed=0)
    assert forward["steps"] * env.dt == pytest.approx(10.0)
    assert forward["forward_distance_m"] >= 0.3
    assert backward["forward_distance_m"] <= -0.3
    assert np.hypot(zero["forward_distance_m"], zero["lateral_distance_m"]) < 0.02


def test_worm_needs_anisotropic_drag() -> None:
    def distance(ratio: float) -> float:
        env = WormCrawlEnv(drag_ratio=ratio, episode_s=4.0)
        return episode(env, env.make_reference_policy(), seed=1)["forward_distance_m"]

    anisotropic, isotropic = distance(10.0), distance(1.0)
    assert anisotropic > 0.3
    assert abs(isotropic) < 0.25 * anisotropic


def test_worm_drag_is_normal_heavy_in_the_segment_frame() -> None:
    env = WormCrawlEnv(drag_ratio=10.0, drag_tangential=10.0)
    env.reset(seed=0)
    m, d = env.model, env.data
    d.qpos[3:] = 0.0
    yaw = d.qpos[2]
    axis, normal = np.array([np.cos(yaw), np.sin(yaw)]), np.array([-np.sin(yaw), np.cos(yaw)])
    forces = {}
    for name, direction in (("along", axis), ("across", normal)):
        d.qvel[:] = 0.0
        d.qvel[:2] = 0.1 * direction
        mujoco.mj_step1(m, d)
        env._apply_drag()
        forces[name] = d.xfrc_applied[1 : env.n_segments + 1, :2].sum(axis=0)
    length = env.n_segments * env.segment_length
    np.testing.assert_allclose(forces["along"], -10.0 * length * 0.1 * axis, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(forces["across"], -100.0 * length * 0.1 * normal, rtol=1e-9, atol=1e-12)


def test_worm_is_generated_from_n_segments() -> None:
    env = WormCrawlEnv(n_segments=5)
    obs, _ = env.reset(seed=0)
    assert env.action_space.shape == (4,)
    assert obs.shape == (13,) == env.observation_space.shape
    assert env.model.nbody == 6 and env.model.nu == 4


# ----------------------------------------------------------------------------------------- options, pickling
@pytest.mark.parametrize(
    ("factory", "kwargs", "match"),
    [
        (Walker2dBalanceEnv, {"push_force": (-1.0, 5.0)}, "push_force"),
        (Walker2dBalanceEnv, {"push_interval_s": (2.0, 1.0)}, "push_interval_s"),
        (Walker2dBalanceEnv, {"episode_s": 0.0}, "episode_s"),
        (Walker2dBalanceEnv, {"render_mode": "ascii"}, "render_mode"),
        (CPGGaitEnv, {"target_speed_range": (0.5, 0.1)}, "target_speed_range"),
        (CPGGaitEnv, {"cpg": "yes"}, "cpg"),
        (CPGGaitEnv, {"tracking_sigma": 0.0}, "tracking_sigma"),
        (CPGGaitEnv, {"frame_skip": 0}, "frame_skip"),
        (WormCrawlEnv, {"n_segments": 2}, "n_segments"),
        (WormCrawlEnv, {"drag_ratio": 0.5}, "drag_ratio"),
        (WormCrawlEnv, {"drag_tangential": float("nan")}, "drag_tangential"),
        (WormCrawlEnv, {"width": 4}, "width"),
        # formerly accepted settings that blew up the simulation (issue 13): outside the measured-stable box
        (WormCrawlEnv, {"gear": 30.0}, "gear"),
        (WormCrawlEnv, {"gear": 2.5}, "gear"),
        (WormCrawlEnv, {"drag_tangential": 40.0, "drag_ratio": 30.0}, "drag_tangential"),
        (WormCrawlEnv, {"drag_ratio": 30.0}, "drag_ratio"),
        (WormCrawlEnv, {"drag_tangential": 0.5}, "drag_tangential"),
        (WormCrawlEnv, {"segment_length": 0.06}, "segment_length"),
        (WormCrawlEnv, {"n_segments": 30}, "n_segments"),
        (WormCrawlEnv, {"n_segments": "abc"}, "n_segments"),
        (WormCrawlEnv, {"joint_stiffness": 50.0}, "joint_stiffness"),
        (Walker2dBalanceEnv, {"push_force": 1e8}, "push_force"),
        (Walker2dBalanceEnv, {"reset_noise_scale": 5.0}, "reset_noise_scale"),
        (CPGGaitEnv, {"episode_s": 1e6}, "episode_s"),
    ],
)
def test_bad_options_raise_clear_errors(factory: type, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        factory(**kwargs)


@pytest.mark.parametrize("factory", [Walker2dBalanceEnv, CPGGaitEnv, WormCrawlEnv])
def test_pickle_after_rendering_continues_and_renders(factory: type) -> None:
    env = factory(render_mode="rgb_array", width=96, height=96)
    env.reset(seed=2)
    env.action_space.seed(2)
    for _ in range(5):
        env.step(env.action_space.sample())
    frame = env.render()
    clone = pickle.loads(pickle.dumps(env))
    np.testing.assert_array_equal(clone.render(), frame)
    action = env.action_space.sample()
    np.testing.assert_array_equal(env.step(action)[0], clone.step(action)[0])
    env.close()
    clone.close()


def test_worm_outside_the_stable_box_is_flagged_not_reported() -> None:
    """Settings the narrowed ranges now refuse did blow up: widened through a subclass, they end the episode
    with ``physics_unstable`` and NaN task metrics instead of plausible numbers."""

    class WideWorm(WormCrawlEnv):
        LIMITS = {**WormCrawlEnv.LIMITS, "drag_tangential": (1.0, 100.0), "drag_ratio": (1.0, 100.0)}  # noqa: RUF012

    env = WideWorm(drag_tangential=40.0, drag_ratio=30.0)
    run = episode(env, constant(0.0, (env.n_segments - 1,)), seed=0)  # explicit drag beyond its stability limit
    assert run["physics_unstable"] == 1.0 and run["steps"] < env.episode_steps
    assert np.isnan(run["forward_distance_m"]) and np.isnan(run["mean_forward_speed"])
    ok = episode(WormCrawlEnv(drag_tangential=30.0, drag_ratio=20.0), constant(0.0, (env.n_segments - 1,)), seed=0)
    assert ok["physics_unstable"] == 0.0 and ok["steps"] == env.episode_steps


@pytest.mark.parametrize("limit", ["lower", "upper"])
def test_worm_accepted_box_corners_run_stably(limit: str) -> None:
    """The corners of the accepted box (gear at its maximum) under bang-bang torques, 2 s each (the full
    measurement is ``python scripts/calibrate_bodies.py stability``)."""
    pick = 0 if limit == "lower" else 1
    kwargs = {name: bounds[pick] for name, bounds in WormCrawlEnv.LIMITS.items() if name != "gear"}
    env = WormCrawlEnv(**kwargs, gear=WormCrawlEnv.LIMITS["gear"][1], episode_s=2.0)
    flip = iter(range(10**6))
    run = episode(env, lambda obs: np.full(env.n_segments - 1, 1.0 if next(flip) % 2 else -1.0), seed=0)
    assert run["physics_unstable"] == 0.0 and run["steps"] == env.episode_steps


# ----------------------------------------------------------------------------------------- frames
def test_scale_bar_matches_the_image() -> None:
    """The scale bar's pixels per metre, checked on the image: a straight worm of known length (8 segments of
    0.1 m plus the two end caps of 0.025 m) seen from the top camera."""
    env = WormCrawlEnv(render_mode="rgb_array", reset_noise_scale=0.0)
    env.reset(seed=0)
    env.data.qpos[2] = 0.0  # heading along the image's x axis
    mujoco.mj_forward(env.model, env.data)
    raw = env.mujoco_renderer.render("rgb_array").astype(int)
    worm = (raw[..., 0] - raw[..., 1]) > 40  # pink body on the grey-blue ground
    xs = np.nonzero(worm)[1]
    per_metre = env._pixels_per_metre(raw.shape[0])
    assert xs.max() - xs.min() + 1 == pytest.approx((8 * 0.1 + 2 * 0.025) * per_metre, abs=3)


@pytest.mark.parametrize("factory", [Walker2dBalanceEnv, CPGGaitEnv, WormCrawlEnv])
def test_body_frames_show_time_distance_and_a_scale_bar(factory: type) -> None:
    env = factory(render_mode="rgb_array", width=240, height=240)
    env.reset(seed=0)
    first = env.render()
    raw = env.mujoco_renderer.render("rgb_array")
    panel, bar, middle = (slice(0, 40), slice(0, 100)), (slice(200, 240), slice(0, 100)), (slice(90, 150),) * 2
    assert not np.array_equal(first[panel], raw[panel])  # status text (t = 0.00 s, distance …)
    assert not np.array_equal(first[bar], raw[bar])  # scale bar
    np.testing.assert_array_equal(first[middle], raw[middle])  # the body itself is not covered
    lines = env._frame_status()
    assert lines[0] == "t = 0.00 s" and "distance" in lines[1] and lines[1].endswith(("m", "m (forward)"))
    for _ in range(10):
        env.step(np.zeros(env.action_space.shape, dtype=np.float32))
    assert env._frame_status()[0] == f"t = {10 * env.dt:.2f} s"
    assert not np.array_equal(env.render()[panel], first[panel])
    env.close()
