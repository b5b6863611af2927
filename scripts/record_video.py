"""Record an episode of a registered env to a GIF (or MP4) under its reference policy, random or zero actions.

    python scripts/record_video.py Encephagen-CPGGait-v0 --out gait.gif
    python scripts/record_video.py Encephagen-WormCrawl-v0 --out worm.gif --every 2 --frames-dir frames/
    python scripts/record_video.py Encephagen-CPGGait-v0 --kwarg cpg=false --policy random --out notcpg.gif

Headless machines need ``MUJOCO_GL=egl`` (or ``osmesa``) for the MuJoCo tasks; this script sets ``egl`` when
``MUJOCO_GL`` is unset and no display is available. GIF needs only imageio (a dependency); an ``.mp4`` output
needs the ``imageio-ffmpeg`` package as well. ``--frames-dir`` also writes every recorded frame as a PNG, for
looking at single frames.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

if "MUJOCO_GL" not in os.environ and sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np

import encephagen_gym  # noqa: F401  (registers the ids)


def parse_kwarg(text: str) -> tuple[str, Any]:
    """``key=value`` with the value parsed as JSON when possible (``cpg=false``, ``n_segments=12``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def record(
    env_id: str,
    *,
    policy: str = "reference",
    seed: int = 0,
    max_steps: int | None = None,
    every: int = 1,
    width: int = 480,
    height: int = 480,
    env_kwargs: dict[str, Any] | None = None,
) -> tuple[list[np.ndarray], float, dict[str, Any]]:
    """Frames (every ``every``-th step, plus the first), the frame rate (frames per second of env time) and the
    final ``info`` of one episode."""
    kwargs = dict(env_kwargs or {})
    kwargs.setdefault("render_mode", "rgb_array")
    kwargs.setdefault("width", width)
    kwargs.setdefault("height", height)
    try:
        env = gym.make(env_id, **kwargs)
    except TypeError:  # envs without width/height arguments (the cognitive tasks)
        kwargs.pop("width", None)
        kwargs.pop("height", None)
        env = gym.make(env_id, **kwargs)
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
    fps = env.metadata.get("render_fps", 30) / every
    env.close()
    info = {**info, "return": total, "steps": steps}
    return frames, fps, info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("env_id", help="a registered env id, e.g. Encephagen-CPGGait-v0")
    parser.add_argument("--out", type=Path, default=None, help="output .gif or .mp4 (default: <env_id>.gif)")
    parser.add_argument("--policy", choices=["reference", "random", "zero"], default="reference")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="stop after this many steps (default: episode)")
    parser.add_argument("--every", type=int, default=2, help="keep every n-th frame (default 2)")
    parser.add_argument("--size", type=int, nargs=2, default=(320, 320), metavar=("W", "H"), help="frame size")
    parser.add_argument("--kwarg", type=parse_kwarg, action="append", default=[], help="env option key=value")
    parser.add_argument("--frames-dir", type=Path, default=None, help="also write each frame as a PNG here")
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error("--every must be >= 1")

    frames, fps, info = record(
        args.env_id,
        policy=args.policy,
        seed=args.seed,
        max_steps=args.steps,
        every=args.every,
        width=args.size[0],
        height=args.size[1],
        env_kwargs=dict(args.kwarg),
    )
    out = args.out or Path(f"{args.env_id}.gif")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".mp4":
        try:
            imageio.mimwrite(out, frames, fps=fps, macro_block_size=1)
        except (ImportError, ValueError) as error:
            raise SystemExit(f"MP4 output needs imageio-ffmpeg (pip install imageio-ffmpeg): {error}") from error
    else:
        imageio.mimwrite(out, frames, duration=1000.0 / fps, loop=0)
    if args.frames_dir is not None:
        args.frames_dir.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(frames):
            imageio.imwrite(args.frames_dir / f"frame_{i:04d}.png", frame)
    metrics = {k: round(v, 4) for k, v in info.get("metrics", {}).items()}
    print(f"{out}: {len(frames)} frames at {fps:g} fps, {info['steps']} steps, return {info['return']:.2f}")
    if metrics:
        print(f"metrics: {metrics}")


if __name__ == "__main__":
    main()
