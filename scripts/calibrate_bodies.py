"""Calibration figures of the three MuJoCo body tasks (Markdown tables on stdout).

    python scripts/calibrate_bodies.py                 # all three, 20 episodes per row
    python scripts/calibrate_bodies.py walker --episodes 100
    python scripts/calibrate_bodies.py cpg worm --episodes 20
    python scripts/calibrate_bodies.py stability --episodes 3
    encephagen-calibrate-bodies worm --episodes 20

* ``walker``: reference (scripted PD posture controller) vs zero vs random actions at the default pushes, and the
  push-strength sweep used to calibrate the default (fraction of episodes upright for the full 8 s).
* ``cpg``: reference (speed-tracking drive) vs zero vs random drive; gait frequency, inter-leg phase and speed
  at constant drive levels (body time); the no-CPG control (``cpg=False``) under its reference, zero and random
  torques.
* ``worm``: reference (travelling wave) vs reversed wave vs zero vs random; distance for a few wave settings and
  for isotropic drag.
* ``stability`` (not in the default set): WormCrawl at every corner of its accepted argument box
  (``WormCrawlEnv.LIMITS``) under four violent action patterns, and settings outside the box (through a subclass
  that widens it), counting the episodes in which MuJoCo flagged unstable physics; Walker2dBalance at the
  largest accepted push and beyond. This is the measurement behind the accepted ranges.

Every row is the mean over held-out seeds 10 000 … 10 000 + episodes − 1 with a 95 % Student-t confidence
interval (``encephagen_gym.stats``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

import encephagen_gym  # noqa: F401  (registers the ids)
from encephagen_gym.envs.cpg_gait import CPGGaitEnv
from encephagen_gym.envs.walker2d_balance import Walker2dBalanceEnv
from encephagen_gym.envs.worm_crawl import TravellingWavePolicy, WormCrawlEnv
from encephagen_gym.scripts.argtypes import int_at_least
from encephagen_gym.scripts.score_references import run_episode
from encephagen_gym.stats import format_mean_ci, mean_ci

Policy = Callable[[np.ndarray], Any]
SEED0 = 10_000


def run(env: gym.Env, make_policy: Callable[[gym.Env, int], Policy], episodes: int) -> dict[str, list[float]]:
    """Returns and final-step metrics of ``episodes`` episodes on seeds ``SEED0 + i``."""
    rows: dict[str, list[float]] = {"return": []}
    for i in range(episodes):
        policy = make_policy(env, SEED0 + i)
        if hasattr(policy, "reset"):
            policy.reset()
        total, metrics = run_episode(env, policy, seed=SEED0 + i)
        rows["return"].append(total)
        for key, value in metrics.items():
            rows.setdefault(key, []).append(value)
    return rows


def fmt(values: Sequence[float], digits: int = 3) -> str:
    """``mean ± 95 % CI`` (Student-t) over finite values (``n/a`` if none; the count of finite values if some
    are NaN)."""
    array = np.asarray(values, dtype=float)
    n_finite = int(np.isfinite(array).sum())
    text = format_mean_ci(*mean_ci(array), digits=digits)
    return text if n_finite in (0, array.size) else f"{text} (n={n_finite})"


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    print(f"\n#### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def reference(env: gym.Env, seed: int) -> Policy:
    return env.unwrapped.make_reference_policy()


def zero(env: gym.Env, seed: int) -> Policy:
    action = np.zeros(env.action_space.shape, dtype=np.float32)
    return lambda obs: action


def random(env: gym.Env, seed: int) -> Policy:
    env.action_space.seed(seed)
    return lambda obs: env.action_space.sample()


def constant(value: float) -> Callable[[gym.Env, int], Policy]:
    def make(env: gym.Env, seed: int) -> Policy:
        action = np.full(env.action_space.shape, value, dtype=np.float32)
        return lambda obs: action

    return make


def walker(episodes: int) -> None:
    env = Walker2dBalanceEnv()
    keys = ("return", "time_upright_s", "fell")
    rows = []
    for name, make in (("reference (PD posture)", reference), ("zero", zero), ("random", random)):
        result = run(env, make, episodes)
        full = np.mean(np.asarray(result["time_upright_s"]) >= env.episode_s - 1e-9)
        rows.append([name, *(fmt(result[k]) for k in keys), f"{100 * full:.0f} %"])
    table(
        f"Walker2dBalance-v0, default pushes {env.push_force} N every {env.push_interval_s} s ({episodes} episodes)",
        ["policy", "return", "time upright (s)", "fell", "upright 8 s"],
        rows,
    )
    rows = []
    for low, high in ((0, 0), (10, 20), (20, 40), (25, 50), (30, 60), (35, 70), (40, 80), (50, 100)):
        sweep = Walker2dBalanceEnv(push_force=(low, high))
        ref = run(sweep, reference, episodes)
        nothing = run(sweep, zero, episodes)
        full = np.mean(np.asarray(ref["time_upright_s"]) >= sweep.episode_s - 1e-9)
        rows.append(
            [f"{low}–{high}", f"{100 * full:.0f} %", fmt(ref["time_upright_s"]), fmt(nothing["time_upright_s"])]
        )
    table(
        f"Walker2dBalance-v0 push-strength sweep ({episodes} episodes per row)",
        ["push force (N)", "reference upright 8 s", "reference time upright (s)", "zero time upright (s)"],
        rows,
    )


def cpg(episodes: int) -> None:
    env = CPGGaitEnv()
    keys = ("return", "mean_speed", "speed_error", "stepping_frequency_hz", "interleg_phase_deg", "fell")
    rows = []
    for name, make in (("reference (speed-tracking drive)", reference), ("zero drive", zero), ("random", random)):
        result = run(env, make, episodes)
        rows.append([name, *(fmt(result[k]) for k in keys)])
    table(
        f"CPGGait-v0, target speed uniform in {env.target_speed_range} m/s ({episodes} episodes)",
        ["policy", "return", "mean speed (m/s)", "speed error (m/s)", "step freq (Hz)", "phase (deg)", "fell"],
        rows,
    )
    rows = []
    for drive in (-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0):
        result = run(env, constant(drive), episodes)
        u = (drive + 1) / 2
        tonic, rate = env.drive_to_cpg(np.full(2, drive))
        rows.append(
            [
                f"{drive:+.2f} (u={u:.3g}, c={tonic[0]:.3g}, r={rate[0]:.3g})",
                fmt(result["stepping_frequency_hz"]),
                fmt(result["interleg_phase_deg"], 1),
                fmt(result["mean_speed"]),
                fmt(result["fell"], 2),
            ]
        )
    table(
        f"CPGGait-v0 at constant drive (both legs; body time; metrics after the first 2 s; {episodes} episodes)",
        ["drive", "stepping frequency (Hz)", "inter-leg phase (deg)", "mean speed (m/s)", "fell"],
        rows,
    )
    torque_env = CPGGaitEnv(cpg=False)
    rows = []
    for name, make in (("reference (CPG in the policy, 50 Hz)", reference), ("zero torque", zero), ("random", random)):
        result = run(torque_env, make, episodes)
        rows.append([name, *(fmt(result[k]) for k in keys)])
    table(
        f"CPGGait-v0 with cpg=False (direct torques, the no-CPG control; {episodes} episodes)",
        ["policy", "return", "mean speed (m/s)", "speed error (m/s)", "step freq (Hz)", "phase (deg)", "fell"],
        rows,
    )


def worm(episodes: int) -> None:
    env = WormCrawlEnv()
    n, dt = env.n_segments - 1, env.dt
    keys = ("return", "forward_distance_m", "lateral_distance_m")
    policies: list[tuple[str, Callable[[gym.Env, int], Policy]]] = [
        ("reference (wave 1 Hz, amplitude 0.8, wavelength 1)", reference),
        ("reversed wave (−1 Hz)", lambda e, s: TravellingWavePolicy(n, dt, frequency=-1.0)),
        ("zero", zero),
        ("random", random),
    ]
    for frequency, amplitude, wavelength in ((0.5, 0.8, 1.0), (2.0, 0.8, 1.0), (1.0, 0.4, 1.0), (1.0, 0.8, 0.5)):
        policies.append(
            (
                f"wave {frequency} Hz, amplitude {amplitude}, wavelength {wavelength}",
                lambda e, s, f=frequency, a=amplitude, w=wavelength: TravellingWavePolicy(
                    n, dt, frequency=f, amplitude=a, wavelength=w
                ),
            )
        )
    rows = []
    for name, make in policies:
        result = run(env, make, episodes)
        rows.append([name, *(fmt(result[k]) for k in keys)])
    result = run(WormCrawlEnv(drag_ratio=1.0), reference, episodes)
    rows.append(["reference wave, isotropic drag (drag_ratio=1)", *(fmt(result[k]) for k in keys)])
    table(
        f"WormCrawl-v0, {env.n_segments} segments, drag ratio {env.drag_ratio:g}, 10 s ({episodes} episodes)",
        ["policy", "return", "forward distance (m)", "lateral distance (m)"],
        rows,
    )


class WideWormCrawlEnv(WormCrawlEnv):
    """WormCrawl with the argument box widened, to measure the model outside the accepted ranges."""

    LIMITS = {  # noqa: RUF012  (a subclass's value, as the base class documents)
        "n_segments": (3, 100),
        "segment_length": (0.01, 10.0),
        "drag_tangential": (0.0, 1e4),
        "drag_ratio": (1.0, 1e3),
        "joint_stiffness": (0.0, 1e3),
        "gear": (0.0, 1e3),
    }


def violent(kind: str) -> Callable[[gym.Env, int], Policy]:
    """Action patterns that shake a worm hard: uniform random torques, every joint flipping between −1 and +1
    each step ("bang"), neighbouring joints opposed and flipping every second step ("zigzag"), and a 3 Hz
    travelling wave of amplitude 1."""

    def make(env: gym.Env, seed: int) -> Policy:
        n = env.action_space.shape[0]
        rng = np.random.default_rng(seed)
        step = iter(range(10**9))
        if kind == "wave 3 Hz":
            return TravellingWavePolicy(n, env.unwrapped.dt, frequency=3.0, amplitude=1.0)
        if kind == "random":
            return lambda obs: rng.uniform(-1.0, 1.0, n).astype(np.float32)
        if kind == "bang":
            return lambda obs: np.full(n, 1.0 if next(step) % 2 else -1.0, dtype=np.float32)
        signs = np.where(np.arange(n) % 2, 1.0, -1.0).astype(np.float32)
        return lambda obs: signs * (1.0 if (next(step) // 2) % 2 else -1.0)

    return make


def stability(episodes: int) -> None:
    limits = WormCrawlEnv.LIMITS
    corners = [
        {
            "n_segments": n,
            "segment_length": length,
            "joint_stiffness": stiffness,
            "drag_tangential": drag,
            "drag_ratio": ratio,
            "gear": limits["gear"][1],
        }
        for n in limits["n_segments"]
        for length in limits["segment_length"]
        for stiffness in limits["joint_stiffness"]
        for drag in limits["drag_tangential"]
        for ratio in limits["drag_ratio"]
    ]
    outside = [
        {"gear": 30.0},
        {"gear": 15.0},
        {"drag_tangential": 40.0, "drag_ratio": 30.0},
        {"n_segments": 20, "segment_length": 0.06, "drag_tangential": 0.5, "gear": 2.0},
    ]
    kinds = ("random", "bang", "zigzag", "wave 3 Hz")
    rows = []
    for accepted, settings in [(True, {}), *((True, c) for c in corners), *((False, c) for c in outside)]:
        env = (WormCrawlEnv if accepted else WideWormCrawlEnv)(**settings)
        unstable, speed = 0, 0.0
        for kind in kinds:
            make = violent(kind)
            for i in range(episodes):
                policy = make(env, SEED0 + i)
                obs, _ = env.reset(seed=SEED0 + i)
                done = False
                while not done:
                    obs, _, terminated, truncated, info = env.step(policy(obs))
                    done = terminated or truncated
                    if not info["physics_unstable"]:
                        speed = max(speed, float(np.hypot(*env.unwrapped._com_vel)))
                unstable += bool(info["physics_unstable"])
        label = ", ".join(f"{k}={v:g}" for k, v in settings.items()) or "defaults"
        rows.append([label, "yes" if accepted else "no", f"{unstable}/{episodes * len(kinds)}", f"{speed:.2f}"])
    table(
        f"WormCrawl-v0 stability: corners of the accepted box (gear at its maximum) and settings outside it; "
        f"{episodes} episodes of 10 s per action pattern ({', '.join(kinds)})",
        ["setting", "accepted", "episodes unstable", "max centre-of-mass speed (m/s)"],
        rows,
    )
    rows = []
    for force in (Walker2dBalanceEnv.max_push_force, 1e8):
        walker_env = Walker2dBalanceEnv(push_force=Walker2dBalanceEnv.max_push_force, push_interval_s=(0.05, 0.05))
        walker_env.push_force = (force, force)  # beyond the accepted range: set after construction
        result = run(walker_env, zero, episodes)
        accepted = "yes" if force <= Walker2dBalanceEnv.max_push_force else "no"
        rows.append([f"{force:g}", accepted, f"{int(np.sum(result['physics_unstable']))}/{episodes}"])
    table(
        f"Walker2dBalance-v0 stability: a push every 50 ms, zero action ({episodes} episodes)",
        ["push force (N)", "accepted", "episodes unstable"],
        rows,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "tasks", nargs="*", choices=["walker", "cpg", "worm", "stability"], default=["walker", "cpg", "worm"]
    )
    parser.add_argument(
        "--episodes", type=int_at_least(2), default=20, help="episodes per row, >= 2 for a CI (default 20)"
    )
    args = parser.parse_args(argv)
    for task in args.tasks:
        start = time.perf_counter()
        {"walker": walker, "cpg": cpg, "worm": worm, "stability": stability}[task](args.episodes)
        print(f"\n({task}: {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
