"""Training speed of every (algorithm, env) preset: env steps per CPU-second and per wall-second.

Builds each model exactly as ``encephagen-train`` does (the preset's envs, wrappers and hyperparameters), then
times ``learn()`` over a fixed number of env steps after a short warm-up, with one torch thread. Off-policy
algorithms start learning at once (``learning_starts`` is set to 0 for the measurement) so the gradient steps
are in the figure. Use the figures to choose training budgets (``--timesteps``) for a CPU time you can spend.

    python scripts/benchmark_training.py [--algos ppo sac ...] [--envs ID ...] [--steps 4000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from encephagen_gym.agents.algorithms import get_algorithm
from encephagen_gym.agents.evaluation import make_vec_env
from encephagen_gym.agents.presets import load_preset_file, resolve_preset
from encephagen_gym.scripts.train import _probe_spaces

DEFAULT_ALGOS = ("ppo", "a2c", "recurrent_ppo", "sac", "td3")


def measure(algo: str, env_id: str, steps: int) -> tuple[int, float, float]:
    """(n_envs, env steps per CPU-second, env steps per wall-second) of ``algo``'s preset on ``env_id``."""
    algorithm = get_algorithm(algo)
    _, action_space = _probe_spaces(env_id, {})
    preset = resolve_preset(algo, env_id, action_dim=int(np.prod(action_space.shape)) or None)
    kwargs = dict(preset.model_kwargs)
    if "learning_starts" in kwargs or algo in ("sac", "td3"):
        kwargs["learning_starts"] = 0
    venv = make_vec_env(
        env_id, preset.n_envs, env_kwargs=preset.env_kwargs, normalize_kwargs=preset.normalize_kwargs,
        frame_stack=preset.frame_stack,
    )  # fmt: skip
    model = algorithm.load_class()(preset.policy, venv, seed=0, device="cpu", **kwargs)
    rollout = int(kwargs.get("n_steps", 1)) * preset.n_envs
    warmup = max(rollout, 200)
    model.learn(warmup)
    measured = max(steps, 2 * rollout)
    wall, cpu = time.perf_counter(), time.process_time()
    model.learn(measured, reset_num_timesteps=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    venv.close()
    return preset.n_envs, measured / cpu, measured / wall


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="*", default=list(DEFAULT_ALGOS))
    parser.add_argument("--envs", nargs="*", default=None, help="env ids (default: every env with a preset)")
    parser.add_argument("--steps", type=int, default=4000, help="env steps timed per pair (at least 2 rollouts)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    print("| algo | env | n_envs | env steps / CPU-s | env steps / wall-s |")
    print("|---|---|---|---|---|")
    for algo in args.algos:
        envs = args.envs or [k for k in load_preset_file(algo) if k != "default"]
        for env_id in envs:
            n_envs, per_cpu, per_wall = measure(algo, env_id, args.steps)
            print(f"| {algo} | {env_id} | {n_envs} | {per_cpu:.0f} | {per_wall:.0f} |", flush=True)


if __name__ == "__main__":
    main()
