"""Record an episode of a registered env to a GIF (or MP4) under its reference policy, random or zero actions.

    python scripts/record_video.py Encephagen-CPGGait-v0 --out gait.gif
    python scripts/record_video.py Encephagen-WormCrawl-v0 --out worm.gif --frames-dir frames/
    python scripts/record_video.py Encephagen-CPGGait-v0 --kwarg cpg=false --policy random --out notcpg.gif
    encephagen-record-video Encephagen-Conditioning-v0 --out conditioning.gif --speed 0.5

Videos play in real time by default: one second of the video is one second of env time (body time for the
MuJoCo tasks, trial time for the cognitive ones). ``--speed 2`` plays twice as fast, ``--speed 0.5`` at half
speed; the script prints the speed it achieved. Every ``--every``-th step becomes a frame; by default the
smallest stride whose frame lasts at least 20 ms (GIF players show shorter frames too slowly) and, for GIF, a
whole number of hundredths of a second (GIF's unit), so the speed is exact.

Headless machines need ``MUJOCO_GL=egl`` (or ``osmesa``) for the MuJoCo tasks; this script sets ``egl`` when
``MUJOCO_GL`` is unset and no display is available. GIF needs only imageio (a dependency); an ``.mp4`` output
needs the ``imageio-ffmpeg`` package as well. ``--frames-dir`` also writes every recorded frame as a PNG, for
looking at single frames.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

if "MUJOCO_GL" not in os.environ and sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np

import encephagen_gym
from encephagen_gym.scripts.argtypes import int_at_least, positive_float

FORMATS = (".gif", ".mp4")
"""Supported output file types."""
MIN_FRAME_MS = 20.0
"""Shortest frame a video gets by default (ms): GIF players slow down frames shorter than 20 ms."""


def parse_kwarg(text: str) -> tuple[str, Any]:
    """``key=value`` with the value parsed as JSON when possible (``cpg=false``, ``n_segments=12``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def choose_every(dt_s: float, speed: float, *, gif: bool) -> int:
    """The smallest stride (env steps per frame) whose frame lasts >= ``MIN_FRAME_MS`` at ``speed`` and, for a
    GIF, a whole number of 10 ms; the smallest stride >= ``MIN_FRAME_MS`` if none up to 100 is whole."""
    longer = [k for k in range(1, 101) if 1000.0 * dt_s * k / speed >= MIN_FRAME_MS - 1e-9]
    if not gif:
        return longer[0] if longer else 100
    for k in longer:
        ms = 1000.0 * dt_s * k / speed
        if abs(ms / 10.0 - round(ms / 10.0)) < 1e-6:
            return k
    return longer[0] if longer else 100


def frame_duration_ms(dt_s: float, every: int, speed: float, *, gif: bool) -> float:
    """How long one frame is shown (ms): env time per frame ÷ ``speed``, cut to GIF's 10 ms unit for a GIF
    (at least 10 ms)."""
    ms = 1000.0 * dt_s * every / speed
    return max(10.0, 10.0 * math.floor(ms / 10.0 + 1e-6)) if gif else ms


def make_env(env_id: str, *, width: int, height: int, env_kwargs: dict[str, Any] | None = None) -> gym.Env:
    """``gym.make(env_id, render_mode="rgb_array", **env_kwargs)``, with the frame size for envs that take one."""
    kwargs = {"render_mode": "rgb_array", **(env_kwargs or {})}
    creator = gym.envs.registration.load_env_creator(gym.spec(env_id).entry_point)
    parameters = inspect.signature(creator).parameters
    if "width" in parameters and "height" in parameters:  # the MuJoCo tasks
        kwargs.setdefault("width", width)
        kwargs.setdefault("height", height)
    return gym.make(env_id, **kwargs)


def record(
    env: gym.Env,
    *,
    policy: str = "reference",
    seed: int = 0,
    max_steps: int | None = None,
    every: int = 1,
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Frames (every ``every``-th step, plus the first and the last) and the final ``info`` of one episode."""
    if policy == "reference":
        act = env.unwrapped.make_reference_policy()
    elif policy == "random":
        env.action_space.seed(seed)
        act = lambda obs: env.action_space.sample()  # noqa: E731
    elif policy == "zero":
        zero = np.zeros(env.action_space.shape, dtype=env.action_space.dtype)
        act = lambda obs: zero if zero.shape else 0  # noqa: E731
    else:
        raise ValueError(f"policy must be reference, random or zero, got {policy!r}")
    if hasattr(act, "reset"):
        act.reset()
    obs, info = env.reset(seed=seed)
    frames = [env.render()]
    steps, done, total = 0, False, 0.0
    while not done and (max_steps is None or steps < max_steps):
        obs, reward, terminated, truncated, info = env.step(act(obs))
        total += float(reward)
        steps += 1
        done = terminated or truncated
        if steps % every == 0 or done:
            frames.append(env.render())
    return frames, {**info, "return": total, "steps": steps}


def write_atomically(out: Path, write: Callable[[str], None]) -> None:
    """Call ``write(path)`` on a temporary file beside ``out`` (same suffix, so imageio picks the format), then
    rename it to ``out``: a crash never leaves a half-written file under the final name."""
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{out.stem}-", suffix=out.suffix, dir=out.parent)
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, out)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_video(out: Path, frames: list[np.ndarray], frame_ms: float) -> None:
    """Write ``frames`` to ``out`` (.gif or .mp4), each shown ``frame_ms`` ms, atomically."""
    if out.suffix.lower() == ".mp4":

        def write(path: str) -> None:
            try:
                imageio.mimwrite(path, frames, fps=1000.0 / frame_ms, macro_block_size=1)
            except (ImportError, ValueError) as error:
                raise SystemExit(f"MP4 output needs imageio-ffmpeg (pip install imageio-ffmpeg): {error}") from error

    else:

        def write(path: str) -> None:
            imageio.mimwrite(path, frames, duration=frame_ms, loop=0)

    write_atomically(out, write)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("env_id", help="a registered env id, e.g. Encephagen-CPGGait-v0")
    parser.add_argument("--out", type=Path, default=None, help="output .gif or .mp4 (default: <env_id>.gif)")
    parser.add_argument("--policy", choices=["reference", "random", "zero"], default="reference")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int_at_least(1), default=None, help="stop after this many steps")
    parser.add_argument("--speed", type=positive_float, default=1.0, help="playback speed vs real time (default 1)")
    parser.add_argument("--every", type=int_at_least(1), default=None, help="keep every n-th frame (default: auto)")
    parser.add_argument(
        "--size", type=int_at_least(16), nargs=2, default=(320, 320), metavar=("W", "H"), help="MuJoCo frame size"
    )
    parser.add_argument("--kwarg", type=parse_kwarg, action="append", default=[], help="env option key=value")
    parser.add_argument("--frames-dir", type=Path, default=None, help="also write each frame as a PNG here")
    args = parser.parse_args(argv)
    out = args.out or Path(f"{args.env_id}.gif")
    if out.suffix.lower() not in FORMATS:
        parser.error(f"--out {str(out)!r}: unsupported file type {out.suffix!r}; use one of {', '.join(FORMATS)}")
    if args.env_id not in gym.registry:
        parser.error(f"unknown env id {args.env_id!r}; e.g. {[spec.id for spec in encephagen_gym.ENV_SPECS]}")
    try:
        env = make_env(args.env_id, width=args.size[0], height=args.size[1], env_kwargs=dict(args.kwarg))
    except (TypeError, ValueError) as error:
        parser.error(f"--kwarg {' '.join(f'{k}={v!r}' for k, v in args.kwarg)} rejected by {args.env_id}: {error}")

    gif = out.suffix.lower() == ".gif"
    dt = float(env.unwrapped.dt)
    every = args.every or choose_every(dt, args.speed, gif=gif)
    frames, info = record(env, policy=args.policy, seed=args.seed, max_steps=args.steps, every=every)
    env.close()
    frame_ms = frame_duration_ms(dt, every, args.speed, gif=gif)
    write_video(out, frames, frame_ms)
    if args.frames_dir is not None:
        args.frames_dir.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(frames):
            write_atomically(args.frames_dir / f"frame_{i:04d}.png", lambda path, f=frame: imageio.imwrite(path, f))
    speed = 1000.0 * dt * every / frame_ms
    metrics = {k: round(v, 4) for k, v in info.get("metrics", {}).items()}
    print(
        f"{out}: {len(frames)} frames, one per {every} step(s) of {1000 * dt:g} ms, each shown {frame_ms:g} ms: "
        f"plays at {speed:.2f}× real time; {info['steps']} steps, return {info['return']:.2f}"
    )
    if metrics:
        print(f"metrics: {metrics}")


if __name__ == "__main__":
    main()
