"""encephagen-compare: run a grid of envs × algorithms × seeds and tabulate it.

    encephagen-compare                      # the quick grid (see QUICK_GRID) into runs/compare-<date>/
    encephagen-compare --envs ID ... --algos NAME ... --seeds 0 1 2 [--timesteps N] [--hyperparams k=v ...]
                       [--jobs J] [--backend {local,ray}] [--ray-address ADDR] [--out DIR]
                       [--select-model {final,best}] [--validation-episodes N]
    encephagen-compare --summarize DIR      # rebuild the table and figures from the runs in DIR

Each grid cell is one ``encephagen-train`` run (a run directory under DIR). Local backend: J worker processes,
each with one torch/numba thread. Ray backend: the same runs as Ray tasks, on the cluster at ``--ray-address``
or on a local Ray (DIR must then be on a filesystem every node sees). A run that fails is recorded (its
``status.json`` holds the error) and the grid goes on; on a rerun, finished runs are skipped and unfinished or
failed ones continue from their last checkpoint. Pairs that make no sense (SAC on a discrete task) are left
out with a note. Then ``results.csv``, ``summary.md`` and ``curves_<env>.png`` are written (see
``encephagen_gym.scripts.report``) and the summary is printed.

``--hyperparams`` entries apply to every learning algorithm that has that hyperparameter; ``ppo.n_steps=64``
applies to one algorithm only. ``--select-model best`` scores each learner's best checkpoint on validation
episodes instead of its final model (see encephagen-train).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from encephagen_gym.agents.algorithms import ALGORITHMS, get_algorithm
from encephagen_gym.agents.files import atomic_write_json, read_json
from encephagen_gym.agents.presets import allowed_keys, overrides_for, parse_hyperparams
from encephagen_gym.scripts.train import SPEC, RunSpec, add_model_selection_arguments, read_status, train

__all__ = ["QUICK_GRID", "RunOutcome", "main", "plan_grid", "run_grid"]

THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}
"""Environment of every grid worker: one thread per run (runs are the unit of parallelism)."""

QUICK_GRID: dict[str, Any] = {
    "envs": ["Encephagen-Conditioning-v0", "Encephagen-PatternRecognition-v0"],
    "algos": ["brain", "ppo", "recurrent_ppo", "reference", "random"],
    "seeds": [0, 1],
    "timesteps": 25_000,
    "jobs": 2,
    "eval_episodes": 4,
    "curve_episodes": 2,
    "n_evaluations": 4,
}
"""The no-argument grid: about 10 minutes on 2 CPU cores. The budget is set by the brain at 96×20 with 16 envs
(about 190 env steps per CPU-second, and as slow to evaluate): 25k env steps is a first look, far from the
budgets at which the baselines reach their targets (see the README's calibration table)."""

RAY_EXTRA_HINT = 'pip install -e ".[ray]"  (or: pip install "encephagen-gym[ray]")'


@dataclass(frozen=True)
class RunOutcome:
    """What became of one grid cell: ``finished``, ``skipped`` (already finished) or ``failed``."""

    env_id: str
    algo: str
    seed: int
    status: str
    run_dir: str | None = None
    error: str | None = None


# ------------------------------------------------------------------------------------------------ planning
def plan_grid(
    envs: Sequence[str],
    algos: Sequence[str],
    seeds: Sequence[int],
    *,
    timesteps: int | None = None,
    hyperparams: dict[str, Any] | None = None,
    n_envs: int | None = None,
    device: str = "auto",
    eval_episodes: int = 20,
    curve_episodes: int = 5,
    n_evaluations: int = 10,
    select_model: str = "final",
    validation_episodes: int = 10,
) -> tuple[list[RunSpec], list[str]]:
    """The grid's run specs and notes on the (env, algo) pairs left out because the algorithm cannot act in
    the env's action space. ``ValueError`` for unknown envs, algorithms, or hyperparameters no learner takes."""
    import gymnasium as gym

    import encephagen_gym  # noqa: F401  (registers the ids)

    if not envs or not algos or not seeds:
        raise ValueError("the grid needs at least one env, one algorithm and one seed")
    algorithms = [get_algorithm(a) for a in dict.fromkeys(algos)]
    hyperparams = dict(hyperparams or {})
    for key in hyperparams:
        scope, _, name = key.rpartition(".")
        if scope and scope not in {a.name for a in algorithms}:
            raise ValueError(f"--hyperparams {key}: {scope!r} is not an algorithm of this grid")
        targets = [a for a in algorithms if not scope or a.name == scope]
        if not any(name in allowed_keys(a) for a in targets):
            raise ValueError(f"--hyperparams {key}: no algorithm of this grid takes {name!r}")

    specs, notes = [], []
    for env_id in dict.fromkeys(envs):
        if env_id not in gym.registry:
            raise ValueError(f"unknown env id {env_id!r}")
        env = gym.make(env_id)
        action_space = env.action_space
        env.close()
        for algorithm in algorithms:
            if not algorithm.supports(action_space):
                notes.append(f"{algorithm.name} left out on {env_id}: it needs a Box action space ({action_space})")
                continue
            allowed = allowed_keys(algorithm)
            overrides = {k: v for k, v in overrides_for(algorithm.name, hyperparams).items() if k in allowed}
            for seed in dict.fromkeys(seeds):
                specs.append(
                    RunSpec(
                        env_id=env_id,
                        algo=algorithm.name,
                        seed=int(seed),
                        timesteps=timesteps,
                        n_envs=n_envs if algorithm.learns else None,
                        device=device,
                        hyperparams=overrides,
                        eval_episodes=eval_episodes,
                        curve_episodes=curve_episodes,
                        n_evaluations=n_evaluations,
                        select_model=select_model,
                        validation_episodes=validation_episodes,
                    )
                )
    return specs, notes


def _stored_key(run_dir: Path) -> dict[str, Any] | None:
    try:
        return read_json(run_dir / SPEC)["key"]
    except (OSError, ValueError, KeyError):
        return None


def _canonical(key: dict[str, Any]) -> str:
    return json.dumps(key, sort_keys=True, default=str)


def existing_run(out: Path, spec: RunSpec) -> Path | None:
    """The run directory in ``out`` for exactly this spec: a finished one if any, else the newest; None if
    there is none. ``ValueError`` when ``out`` holds this (env, algo, seed) with other settings."""
    candidates = sorted(out.glob(f"{spec.env_id}__{spec.algo}__{spec.seed}__*"))
    want = _canonical(spec.key())
    matching = []
    for run_dir in candidates:
        key = _stored_key(run_dir)
        if key is None:
            continue
        if _canonical(key) != want:
            raise ValueError(
                f"{out} already holds {run_dir.name} with other settings ({key}); "
                f"use another --out for this grid ({spec.key()})"
            )
        matching.append(run_dir)
    finished = [d for d in matching if read_status(d).get("status") == "finished" and (d / "eval.json").exists()]
    if finished:
        return finished[-1]
    return matching[-1] if matching else None


# ------------------------------------------------------------------------------------------------ execution
def execute_run(spec: RunSpec, out: str) -> RunOutcome:
    """Run (or skip, or continue) one grid cell; never raises: a failure is returned (and recorded in the run's
    ``status.json`` by :func:`train`)."""
    out_path = Path(out)
    try:
        run_dir = existing_run(out_path, spec)
        if run_dir is not None and read_status(run_dir).get("status") == "finished":
            return RunOutcome(spec.env_id, spec.algo, spec.seed, "skipped", str(run_dir))
        if run_dir is not None:
            (run_dir / "eval.json").unlink(missing_ok=True)
            path = train(spec, run_dir=run_dir)
        else:
            path = train(spec, out_path)
        return RunOutcome(spec.env_id, spec.algo, spec.seed, "finished", str(path))
    except Exception as error:  # the grid goes on; the run's status.json holds the traceback
        found = existing_run_or_none(out_path, spec)
        return RunOutcome(spec.env_id, spec.algo, spec.seed, "failed", found, f"{type(error).__name__}: {error}")


def existing_run_or_none(out: Path, spec: RunSpec) -> str | None:
    try:
        found = existing_run(out, spec)
    except ValueError:
        return None
    return None if found is None else str(found)


def _init_worker(parent_pid: int | None = None) -> None:
    """Grid worker start-up: one torch thread (the environment variables were set before it started), and, given
    the grid process' pid, a watcher that ends the worker when that process is gone (a process pool's workers
    outlive a killed parent and would go on running and writing into the grid directory)."""
    os.environ.update(THREAD_ENV)
    import torch

    torch.set_num_threads(1)
    if parent_pid is not None:
        threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True).start()


def _exit_when_orphaned(parent_pid: int, poll_s: float = 0.5) -> None:
    """End this process (exit status 1) once its parent is no longer ``parent_pid``. The run it was doing keeps
    its last checkpoint; a rerun of the grid continues it."""
    while os.getppid() == parent_pid:
        time.sleep(poll_s)
    os._exit(1)


@contextlib.contextmanager
def _worker_environment() -> Iterator[None]:
    """Set :data:`THREAD_ENV` while workers start (they inherit it), restoring the caller's afterwards."""
    saved = {k: os.environ.get(k) for k in THREAD_ENV}
    os.environ.update(THREAD_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _run_local(specs: Sequence[RunSpec], out: str, jobs: int, on_done: Callable[[RunOutcome], None]) -> None:
    """J spawned worker processes. If a worker dies (segfault, out of memory) the pool breaks: its unfinished
    runs are retried one per fresh process, and a run that kills its own process is recorded as failed."""
    context = multiprocessing.get_context("spawn")
    broken: list[RunSpec] = []
    with (
        _worker_environment(),
        ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker, initargs=(os.getpid(),)) as pool,
    ):
        futures = {pool.submit(execute_run, spec, out): spec for spec in specs}
        for future in as_completed(futures):
            try:
                on_done(future.result())
            except BrokenProcessPool:
                broken.append(futures[future])
    for spec in broken:
        with (
            _worker_environment(),
            ProcessPoolExecutor(1, mp_context=context, initializer=_init_worker, initargs=(os.getpid(),)) as pool,
        ):
            try:
                on_done(pool.submit(execute_run, spec, out).result())
            except BrokenProcessPool as error:
                on_done(RunOutcome(spec.env_id, spec.algo, spec.seed, "failed", None, f"worker process died: {error}"))


def import_ray() -> Any:
    """Import Ray, or raise ``ImportError`` naming the optional extra that installs it."""
    try:
        import ray
    except ImportError as error:
        raise ImportError(f"--backend ray needs Ray, an optional extra of encephagen-gym: {RAY_EXTRA_HINT}") from error
    return ray


def _run_ray(
    specs: Sequence[RunSpec], out: str, jobs: int, address: str | None, on_done: Callable[[RunOutcome], None]
) -> None:
    """Each run as a Ray task of one CPU, on the cluster at ``address`` or a local Ray of ``jobs`` CPUs."""
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        init: dict[str, Any] = {"address": address} if address else {"num_cpus": jobs}
        ray.init(
            **init,
            runtime_env={"env_vars": THREAD_ENV},
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(execute_run)
        pending = {task.remote(spec, out): spec for spec in specs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            spec = pending.pop(done[0])
            try:
                outcome = ray.get(done[0])
            except Exception as error:  # the task's worker died
                outcome = RunOutcome(spec.env_id, spec.algo, spec.seed, "failed", None, f"Ray task failed: {error}")
            on_done(outcome)
    finally:
        if started_here:
            ray.shutdown()


def run_grid(
    specs: Sequence[RunSpec],
    out: str | os.PathLike[str],
    *,
    jobs: int = 1,
    backend: str = "local",
    ray_address: str | None = None,
    progress: bool = True,
) -> list[RunOutcome]:
    """Run every spec into ``out`` (see the module docstring) with an overall progress bar (runs done / total,
    ETA); return the outcomes in completion order."""
    from tqdm.auto import tqdm

    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
    if jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    if backend == "ray":
        import_ray()  # fail before any work when the extra is missing
    out_path = Path(out).resolve()
    out_path.mkdir(parents=True, exist_ok=True)
    done, todo = [], []
    for spec in specs:  # refuse to mix experiments in one directory, and skip finished runs, before any work
        run_dir = existing_run(out_path, spec)
        if run_dir is not None and read_status(run_dir).get("status") == "finished":
            done.append(RunOutcome(spec.env_id, spec.algo, spec.seed, "skipped", str(run_dir)))
        else:
            todo.append(spec)

    outcomes: list[RunOutcome] = []
    bar = tqdm(total=len(specs), desc="grid", unit="run", disable=not progress, dynamic_ncols=True)

    def on_done(outcome: RunOutcome) -> None:
        outcomes.append(outcome)
        failed = sum(o.status == "failed" for o in outcomes)
        bar.set_postfix_str(
            f"last: {outcome.env_id.removeprefix('Encephagen-')} {outcome.algo} {outcome.seed} "
            f"{outcome.status}; failed {failed}"
        )
        bar.update(1)

    for outcome in done:
        on_done(outcome)
    try:
        if todo and backend == "local":
            _run_local(todo, str(out_path), jobs, on_done)
        elif todo:
            _run_ray(todo, str(out_path), jobs, ray_address, on_done)
    finally:
        bar.close()
    return outcomes


# ------------------------------------------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="encephagen-compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", nargs="+", help="env ids")
    parser.add_argument(
        "--algos", nargs="+", choices=list(ALGORITHMS), metavar="NAME", help=f"algorithms: {', '.join(ALGORITHMS)}"
    )
    parser.add_argument("--seeds", nargs="+", type=int, help="run seeds")
    parser.add_argument("--timesteps", type=int, default=None, help="env steps per learner (default: presets')")
    parser.add_argument(
        "--hyperparams",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="preset overrides: key=value for every learner that has key, algo.key=value for one",
    )
    parser.add_argument("--n-envs", type=int, default=None, help="parallel envs per run (default: presets')")
    parser.add_argument("--device", default="auto", help="torch device of every run")
    parser.add_argument("--jobs", type=int, default=None, help="runs at a time (default: 1; quick grid: 2)")
    parser.add_argument("--backend", choices=("local", "ray"), default="local")
    parser.add_argument("--ray-address", default=None, help="address of a running Ray cluster (default: local Ray)")
    parser.add_argument("--out", default=None, help="grid directory (default: runs/compare-<date>)")
    parser.add_argument("--eval-episodes", type=int, default=None, help="held-out episodes per final evaluation")
    parser.add_argument("--curve-episodes", type=int, default=None, help="held-out episodes per curve point")
    parser.add_argument("--n-evaluations", type=int, default=None, help="curve points per run")
    add_model_selection_arguments(parser)
    parser.add_argument("--summarize", metavar="DIR", help="only rebuild results.csv, summary.md and the figures")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from encephagen_gym.scripts.report import summarize

    if args.summarize:
        try:
            print(summarize(args.summarize))
        except ValueError as error:
            parser.error(str(error))
        return 0

    quick = not (args.envs or args.algos or args.seeds)
    if not quick and not (args.envs and args.algos and args.seeds):
        parser.error("give --envs, --algos and --seeds together (or none of them for the quick grid)")
    grid = (
        dict(QUICK_GRID)
        if quick
        else {"timesteps": None, "jobs": 1, "eval_episodes": 20, "curve_episodes": 5, "n_evaluations": 10}
    )
    if not quick:
        grid.update(envs=args.envs, algos=args.algos, seeds=args.seeds)
    for name in ("timesteps", "jobs", "eval_episodes", "curve_episodes", "n_evaluations"):
        if getattr(args, name) is not None:
            grid[name] = getattr(args, name)
    out = Path(args.out or f"runs/compare-{dt.date.today().isoformat()}")
    try:
        specs, notes = plan_grid(
            grid["envs"],
            grid["algos"],
            grid["seeds"],
            timesteps=grid["timesteps"],
            hyperparams=parse_hyperparams(args.hyperparams),
            n_envs=args.n_envs,
            device=args.device,
            eval_episodes=grid["eval_episodes"],
            curve_episodes=grid["curve_episodes"],
            n_evaluations=grid["n_evaluations"],
            select_model=args.select_model,
            validation_episodes=args.validation_episodes,
        )
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            out / "grid.json",
            {
                "argv": sys.argv,
                **{k: v for k, v in grid.items()},
                "notes": notes,
                "hyperparams": args.hyperparams,
                "backend": args.backend,
                "select_model": args.select_model,
                "validation_episodes": args.validation_episodes,
            },
        )
        for note in notes:
            print(note)
        print(f"{len(specs)} runs into {out} ({args.backend}, {grid['jobs']} at a time)")
        started = time.time()
        outcomes = run_grid(
            specs,
            out,
            jobs=grid["jobs"],
            backend=args.backend,
            ray_address=args.ray_address,
            progress=not args.no_progress,
        )
    except (ValueError, ImportError) as error:
        parser.error(str(error))
    print(summarize(out))
    failed = [o for o in outcomes if o.status == "failed"]
    skipped = sum(o.status == "skipped" for o in outcomes)
    print(
        f"{len(outcomes) - len(failed) - skipped} runs finished, {skipped} skipped (already finished), "
        f"{len(failed)} failed, in {(time.time() - started) / 60:.1f} min. Outputs in {out}/; "
        f"TensorBoard: tensorboard --logdir {out}"
    )
    for outcome in failed:
        print(f"FAILED {outcome.env_id} {outcome.algo} seed {outcome.seed}: {outcome.error}")
    return 1 if failed else 0


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()
