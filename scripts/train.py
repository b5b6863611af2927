"""encephagen-train: train one algorithm on one env and evaluate it on held-out episodes.

    encephagen-train --algo ppo --env Encephagen-PatternRecognition-v0 [--timesteps N] [--seed S]
                     [--n-envs K] [--device D] [--hyperparams key=value ...] [--out runs/]
                     [--select-model {final,best}] [--validation-episodes N]
    encephagen-train --resume runs/<run directory>

writes ``<out>/<env>__<algo>__<seed>__<timestamp>/``:

* ``config.yaml``: the command, every resolved hyperparameter (the preset entry as written and each constructor
  argument's value), the env seeds, package versions and the git commit;
* TensorBoard events (SB3's tags, ``rollout/<metric>`` for every ``info["metrics"]`` key, ``eval/*`` on
  held-out episodes; the brain's ``brain/*`` and ``train/*``): ``tensorboard --logdir <out>``;
* ``monitor.csv`` (training episodes: return ``r``, length ``l``, wall time ``t``), ``model.zip`` (and
  ``vecnormalize.pkl`` when the preset normalises);
* ``evaluations.csv``: held-out evaluations during training (the learning curve), one row per episode;
* ``eval.json``: the final model on ``--eval-episodes`` held-out episodes (seeds ``2·10⁹ + i``, a range no
  training episode uses): every episode's seed, return, length and ``info["metrics"]``;
* with ``--select-model best``: ``best/`` (the model with the highest mean return on ``--validation-episodes``
  validation episodes, seeds ``1.5·10⁹ + i``, checked at every curve point and at the end, as rl-zoo3's
  ``best_model.zip``); ``eval.json`` then scores that model on the held-out episodes and records which step it
  is from and how the final model scored;
* ``checkpoints/``: the latest checkpoint (written atomically) for ``--resume``; ``status.json``.

The controls ``random``, ``zero`` and ``reference`` do not train: they are only evaluated (no model.zip,
no monitor.csv); their TensorBoard ``eval/*`` values are written at step 0 and at ``--timesteps`` so they draw
as horizontal lines next to the learners.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib.metadata
import inspect
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gymnasium import spaces

import encephagen_gym
from encephagen_gym.agents.algorithms import ALGORITHMS, Algorithm, get_algorithm
from encephagen_gym.agents.callbacks import EpisodeResult
from encephagen_gym.agents.files import (
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    atomic_write_yaml,
    read_json,
    yaml_safe,
)
from encephagen_gym.agents.presets import (
    Preset,
    parse_hyperparams,
    preset_entry,
    resolve_preset,
)
from encephagen_gym.brain.config import set_compute_threads

__all__ = ["RunSpec", "find_checkpoint", "main", "new_run_dir", "train"]

CONFIG = "config.yaml"
SPEC = "spec.json"
STATUS = "status.json"
EVAL = "eval.json"
EVALUATIONS = "evaluations.csv"
MONITOR = "monitor.csv"
MODEL = "model.zip"
VECNORMALIZE = "vecnormalize.pkl"
CHECKPOINTS = "checkpoints"
BEST = "best"
BEST_JSON = "best.json"
MODEL_SELECTIONS = ("final", "best")
_PACKAGES = (
    "encephagen-gym",
    "torch",
    "stable-baselines3",
    "sb3-contrib",
    "gymnasium",
    "numpy",
    "mujoco",
    "numba",
    "tensorboard",
    "ray",
)


@dataclass
class RunSpec:
    """Everything that defines one training run (picklable: the grid sends it to worker processes).

    Attributes:
        env_id, algo, seed: what to run.
        timesteps: env steps of training (None: the preset's ``n_timesteps``); for the controls, the step at
            which their horizontal TensorBoard line ends.
        n_envs: parallel envs (None: the preset's ``n_envs``).
        hyperparams: overrides of the preset, already meant for ``algo`` (``key: value``).
        eval_episodes: held-out episodes of the final evaluation (``eval.json``).
        curve_episodes, n_evaluations: held-out episodes per evaluation during training, and how many such
            evaluations (evenly spaced, plus one at step 0) make the learning curve.
        n_checkpoints: checkpoints written over the run (the latest is kept).
        deterministic_eval: evaluate the greedy policy (True) or the sampled one (False); None: the model's
            own choice where it has one (``BrainAgent.greedy_evaluation``: greedy with a gated head or
            continuous actions, sampled with a softmax head), else the algorithm's
            (``Algorithm.deterministic_eval``: greedy for SB3's).
        select_model: which model ``eval.json`` scores: ``"final"`` (the model at the end of training) or
            ``"best"`` (the one with the highest mean return on ``validation_episodes`` validation episodes,
            checked at every curve point; learners only).
    """

    env_id: str
    algo: str
    seed: int = 0
    timesteps: int | None = None
    n_envs: int | None = None
    device: str = "auto"
    hyperparams: dict[str, Any] = field(default_factory=dict)
    eval_episodes: int = 20
    curve_episodes: int = 5
    n_evaluations: int = 10
    n_checkpoints: int = 10
    deterministic_eval: bool | None = None
    select_model: str = "final"
    validation_episodes: int = 10
    progress_bar: bool = False
    verbose: int = 0

    def __post_init__(self) -> None:
        get_algorithm(self.algo)
        if self.select_model not in MODEL_SELECTIONS:
            raise ValueError(f"select_model must be one of {MODEL_SELECTIONS}, got {self.select_model!r}")
        for name in ("eval_episodes", "curve_episodes", "n_evaluations", "n_checkpoints", "validation_episodes"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.timesteps is not None and (int(self.timesteps) != self.timesteps or self.timesteps < 0):
            raise ValueError(f"timesteps must be a non-negative integer, got {self.timesteps!r}")

    def key(self) -> dict[str, Any]:
        """The settings that make two runs the same experiment (used to skip finished runs): the arguments and
        the preset entry they resolve to (so an edited preset file is not mistaken for a finished run)."""
        # select_model only when set, so that runs made before model selection existed keep their keys
        selection = {"select_model": "best", "validation_episodes": self.validation_episodes}
        return {
            "env": self.env_id,
            "algo": self.algo,
            "seed": int(self.seed),
            "timesteps": self.timesteps,
            "n_envs": self.n_envs,
            "hyperparams": dict(sorted(self.hyperparams.items())),
            "preset": yaml_safe(preset_entry(self.algo, self.env_id, self.hyperparams)),
            "eval_episodes": self.eval_episodes,
            "curve_episodes": self.curve_episodes,
            "n_evaluations": self.n_evaluations,
            **(selection if self.select_model == "best" else {}),
        }


# ------------------------------------------------------------------------------------------------ provenance
def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a result depends on (None when not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> dict[str, Any] | None:
    """Commit of the encephagen-gym checkout this code runs from, and whether it had local changes (None when
    it is not a git checkout or git is missing)."""
    source = Path(encephagen_gym.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}


# ------------------------------------------------------------------------------------------------ run directory
def new_run_dir(out: str | os.PathLike[str], spec: RunSpec) -> Path:
    """A fresh ``<out>/<env>__<algo>__<seed>__<timestamp>`` directory (a suffix is added on a name clash)."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(out) / f"{spec.env_id}__{spec.algo}__{spec.seed}__{stamp}"
    path, n = base, 1
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            n += 1
            path = base.with_name(f"{base.name}-{n}")


def write_status(run_dir: Path, status: str, **extra: Any) -> None:
    """Record the run's state (``running``, ``finished`` or ``failed``) in ``status.json``."""
    atomic_write_json(run_dir / STATUS, {"status": status, **extra})


def read_status(run_dir: Path) -> dict[str, Any]:
    """``status.json`` of ``run_dir`` (``{"status": "unknown"}`` when missing or unreadable)."""
    try:
        return read_json(run_dir / STATUS)
    except (OSError, ValueError):
        return {"status": "unknown"}


def find_checkpoint(run_dir: Path) -> tuple[Path, int] | None:
    """The latest complete checkpoint of a run: its directory and env step; None when there is none."""
    pointer = run_dir / CHECKPOINTS / "latest.json"
    if not pointer.exists():
        return None
    latest = read_json(pointer)
    path = run_dir / CHECKPOINTS / latest["dir"]
    return (path, int(latest["num_timesteps"])) if path.is_dir() else None


def save_checkpoint(model: Any, run_dir: Path) -> None:
    """Write a checkpoint of ``model`` (weights, ``VecNormalize`` statistics, replay buffer): files go into a
    new directory, then ``latest.json`` is replaced atomically to point at it, then older ones are removed."""
    root = run_dir / CHECKPOINTS
    step = int(model.num_timesteps)
    name = f"step_{step:012d}"
    _write_model_dir(model, root / name, replay_buffer=True)
    atomic_write_json(root / "latest.json", {"dir": name, "num_timesteps": step})
    for old in root.iterdir():
        if old.is_dir() and old.name != name and old.name.startswith("step_"):
            shutil.rmtree(old, ignore_errors=True)


def _write_model_dir(model: Any, target: Path, *, replay_buffer: bool) -> None:
    """``target/``: ``model.zip``, the ``VecNormalize`` statistics and (if asked) the replay buffer, written into
    a fresh directory that then replaces ``target`` (a crash leaves the previous one, or none)."""
    tmp = target.parent / f".tmp_{target.name}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save(tmp / MODEL)
    vec_normalize = model.get_vec_normalize_env()
    if vec_normalize is not None:
        vec_normalize.save(str(tmp / VECNORMALIZE))
    if replay_buffer and getattr(model, "replay_buffer", None) is not None and hasattr(model, "save_replay_buffer"):
        model.save_replay_buffer(tmp / "replay_buffer.pkl")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


class BestModelKeeper:
    """Model selection on validation episodes: ``consider(step, results)`` keeps the model in ``run_dir/best/``
    when its mean validation return beats every earlier one (``best.json`` records step and return; it survives
    ``--resume``)."""

    def __init__(self, model: Any, run_dir: Path) -> None:
        self.model = model
        self.path = run_dir / BEST
        self.record = read_json(run_dir / BEST_JSON) if (run_dir / BEST_JSON).exists() else None
        self.run_dir = run_dir
        self.last_step: int | None = None

    def consider(self, step: int, results: list[EpisodeResult]) -> None:
        self.last_step = step
        mean_return = _mean_return(results)
        if self.record is not None and mean_return <= self.record["validation_mean_return"]:
            return
        _write_model_dir(self.model, self.path, replay_buffer=False)
        self.record = {
            "timesteps": int(step),
            "validation_mean_return": mean_return,
            "validation_episodes": len(results),
            "validation_seeds_start": results[0].seed,
        }
        atomic_write_json(self.run_dir / BEST_JSON, self.record)


# ------------------------------------------------------------------------------------------------ evaluations
def evaluation_rows(timesteps: int, results: list[EpisodeResult]) -> list[dict[str, Any]]:
    """CSV rows of one evaluation: ``timesteps, episode, seed, return, length`` and one column per metric."""
    return [
        {"timesteps": timesteps, "episode": i, "seed": r.seed, "return": r.ret, "length": r.length, **r.metrics}
        for i, r in enumerate(results)
    ]


def write_rows_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write dict rows to a CSV atomically; columns in first-seen order, blanks where a row lacks a key."""
    import csv
    import io

    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def read_rows_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV written by :func:`write_rows_csv`, numbers converted to float (blanks to NaN)."""
    import csv

    if not path.exists():
        return []
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            rows.append({k: _number(v) for k, v in row.items()})
    return rows


def _number(text: str) -> Any:
    """A CSV cell: int, float (blank → NaN) or the text itself."""
    if text == "":
        return float("nan")
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class EvaluationLog:
    """``evaluations.csv`` of a run: appended after each evaluation (the file is rewritten atomically)."""

    def __init__(self, path: Path, *, keep_until: int | None = None) -> None:
        self.path = path
        rows = read_rows_csv(path)
        if keep_until is not None:  # resuming: drop evaluations made after the checkpoint
            rows = [r for r in rows if r["timesteps"] <= keep_until]
        self.rows = rows

    def add(self, timesteps: int, results: list[EpisodeResult]) -> None:
        self.rows = [r for r in self.rows if r["timesteps"] != timesteps] + evaluation_rows(timesteps, results)
        write_rows_csv(self.path, self.rows)


def write_eval_json(
    run_dir: Path,
    spec: RunSpec,
    timesteps: int,
    results: list[EpisodeResult],
    deterministic: bool,
    *,
    model_selection: dict[str, Any] | None = None,
) -> None:
    """The final evaluation: every held-out episode's seed, return, length and metrics (written last, so its
    presence means the run finished). ``model_selection`` says which model was scored when it is not the
    final one."""
    from encephagen_gym.agents.callbacks import mean_episode_metrics

    atomic_write_json(
        run_dir / EVAL,
        {
            "env": spec.env_id,
            "algo": spec.algo,
            "seed": spec.seed,
            "timesteps": timesteps,
            "deterministic": deterministic,
            "model_selection": model_selection or {"mode": "final"},
            "n_episodes": len(results),
            "mean_return": _mean_return(results),
            "mean_metrics": mean_episode_metrics(results),
            "episodes": [r.as_dict() for r in results],
        },
    )


# ------------------------------------------------------------------------------------------------ config
def resolved_hyperparameters(algorithm: Algorithm, model: Any, preset: Preset) -> dict[str, Any]:
    """Every constructor argument of the algorithm: as the preset wrote it, else the model's attribute of that
    name, else the constructor's default."""
    parameters = inspect.signature(algorithm.load_class().__init__).parameters
    skip = {"self", "policy", "env", "tensorboard_log", "verbose", "device", "_init_setup_model", "seed"}
    resolved: dict[str, Any] = {}
    for name, parameter in parameters.items():
        if name in skip or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        default = parameter.default if parameter.default is not parameter.empty else None
        if name in preset.raw:
            resolved[name] = preset.raw[name]
        elif hasattr(model, name) and not (callable(getattr(model, name)) and _plain(default)):
            resolved[name] = getattr(model, name)
        else:  # not stored on the model, or stored as a schedule object: the constructor's default says it
            resolved[name] = default
    if algorithm.name == "brain":  # the brain the policy built (the agent's defaults under the preset's fields)
        resolved["brain_config"] = dataclasses.asdict(model.policy.brain.config)
    return resolved


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def write_config(run_dir: Path, spec: RunSpec, **resolved: Any) -> None:
    atomic_write_yaml(
        run_dir / CONFIG,
        {
            "env": spec.env_id,
            "algo": spec.algo,
            "seed": spec.seed,
            "spec": dataclasses.asdict(spec),
            **resolved,
            "command": sys.argv,
            "host": platform.node(),
            "started": dt.datetime.now().isoformat(timespec="seconds"),
            "versions": package_versions(),
            "git": git_commit(),
        },
    )


# ------------------------------------------------------------------------------------------------ training
def _probe_spaces(env_id: str, env_kwargs: dict[str, Any]) -> tuple[Any, Any]:
    import gymnasium as gym

    env = gym.make(env_id, **env_kwargs)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def _tensorboard_logger(run_dir: Path, verbose: int, purge_step: int | None = None) -> Any:
    """An SB3 logger writing TensorBoard events into ``run_dir`` itself (so ``tensorboard --logdir`` on the
    parent names each run by its directory). ``purge_step``: on resume, events at or after this step left by
    the interrupted segment are hidden (TensorBoard's SessionLog.START purge)."""
    from stable_baselines3.common.logger import configure

    if purge_step is not None:
        from torch.utils.tensorboard import SummaryWriter

        SummaryWriter(log_dir=str(run_dir), purge_step=purge_step).close()
    return configure(str(run_dir), ["tensorboard", "stdout"] if verbose else ["tensorboard"])


def _evaluate_controls(spec: RunSpec, algorithm: Algorithm, run_dir: Path, timesteps: int) -> None:
    """The non-learning rows: evaluate, log flat TensorBoard lines, write evaluations.csv and eval.json."""
    from encephagen_gym.agents.callbacks import log_evaluation
    from encephagen_gym.agents.evaluation import evaluate_episodes, make_vec_env

    env_kwargs = resolve_preset(spec.algo, spec.env_id, spec.hyperparams).env_kwargs
    venv = make_vec_env(spec.env_id, spec.eval_episodes, env_kwargs=env_kwargs)
    try:
        agent = algorithm.load_class()(venv, seed=spec.seed)
        deterministic = _deterministic(spec, venv.action_space)
        results = evaluate_episodes(agent, venv, deterministic=deterministic)
    finally:
        venv.close()
    logger = _tensorboard_logger(run_dir, spec.verbose)
    for step in sorted({0, timesteps}):
        log_evaluation(logger, results)
        logger.dump(step)
    logger.close()
    log = EvaluationLog(run_dir / EVALUATIONS)
    log.add(0, results)
    write_eval_json(run_dir, spec, 0, results, deterministic)


def train(spec: RunSpec, out: str | os.PathLike[str] = "runs", *, run_dir: Path | None = None) -> Path:
    """Run ``spec`` into a new run directory under ``out``, or continue the run in ``run_dir`` from its latest
    checkpoint (its ``config.yaml`` must describe the same ``spec``). Returns the run directory.

    Writes ``status.json`` = running / finished; an exception is recorded as failed (with its traceback) and
    re-raised.
    """
    import traceback

    resuming = run_dir is not None
    run_dir = Path(run_dir) if resuming else new_run_dir(out, spec)
    atomic_write_json(run_dir / SPEC, {**dataclasses.asdict(spec), "key": spec.key()})
    started, cpu0 = time.time(), time.process_time()
    write_status(run_dir, "running", pid=os.getpid())
    try:
        timesteps = _train(spec, run_dir, resuming)
    except BaseException as error:
        write_status(
            run_dir,
            "interrupted" if isinstance(error, KeyboardInterrupt) else "failed",
            error=f"{type(error).__name__}: {error}",
            traceback=traceback.format_exc(),
            wall_s=time.time() - started,
        )
        raise
    write_status(
        run_dir,
        "finished",
        num_timesteps=timesteps,
        wall_s=round(time.time() - started, 2),
        cpu_s=round(time.process_time() - cpu0, 2),
    )
    return run_dir


def prepare(spec: RunSpec) -> tuple[Algorithm, Preset, int, int]:
    """Check ``spec`` against its env and preset before any work: the algorithm, the resolved preset, the
    training budget (env steps) and the number of envs. ``ValueError`` explains what does not fit."""
    import gymnasium as gym

    import encephagen_gym  # noqa: F401  (registers the ids)

    algorithm = get_algorithm(spec.algo)
    if spec.env_id not in gym.registry:
        raise ValueError(f"unknown env id {spec.env_id!r}")
    probe_kwargs = resolve_preset(spec.algo, spec.env_id, spec.hyperparams, action_dim=1).env_kwargs
    _, action_space = _probe_spaces(spec.env_id, probe_kwargs)
    algorithm.check_supports(action_space, spec.env_id)
    action_dim = int(action_space.shape[0]) if action_space.shape else None
    preset = resolve_preset(spec.algo, spec.env_id, spec.hyperparams, action_dim=action_dim)
    timesteps = spec.timesteps if spec.timesteps is not None else preset.n_timesteps
    if timesteps is None:
        if algorithm.learns:
            raise ValueError(f"--timesteps is needed: the {spec.algo} preset for {spec.env_id} sets no n_timesteps")
        timesteps = 0
    if algorithm.learns:
        _check_constructor_values(algorithm, preset)
    return algorithm, preset, int(timesteps), spec.n_envs or preset.n_envs


def _check_constructor_values(algorithm: Algorithm, preset: Preset) -> None:
    """Build the algorithm without an env or a model, so that its constructor checks the values of its
    arguments (a rule or an option that does not exist, a batch size of 1) before a run directory is made."""
    try:
        algorithm.load_class()(preset.policy, None, device="cpu", _init_setup_model=False, **preset.model_kwargs)
    except (ValueError, TypeError, AssertionError) as error:
        raise ValueError(f"{algorithm.name}: {error}") from error


def _evaluation_venv(spec: RunSpec, preset: Preset, n_envs: int) -> Any:
    """Held-out evaluation envs of the run: the preset's env options, frame stacking and normalisation (frozen)."""
    from encephagen_gym.agents.evaluation import make_vec_env

    return make_vec_env(
        spec.env_id,
        n_envs,
        env_kwargs=preset.env_kwargs,
        normalize_kwargs=preset.normalize_kwargs,
        frame_stack=preset.frame_stack,
        evaluation=True,
    )


def _train(spec: RunSpec, run_dir: Path, resuming: bool) -> int:
    from encephagen_gym.agents.callbacks import CheckpointEveryCallback, PeriodicEvalCallback, log_evaluation
    from encephagen_gym.agents.episode_metrics import EpisodeMetricsCallback
    from encephagen_gym.agents.evaluation import (
        VALIDATION_SEED_BASE,
        evaluate_episodes,
        make_vec_env,
        training_env_seeds,
    )

    algorithm, preset, timesteps, n_envs = prepare(spec)

    if not algorithm.learns:
        write_config(run_dir, spec, timesteps=timesteps, learns=False, eval_seeds_start=_eval_base())
        _evaluate_controls(spec, algorithm, run_dir, timesteps)
        return 0

    checkpoint = find_checkpoint(run_dir) if resuming else None
    segment = 0
    if resuming:
        previous = _read_config(run_dir)
        segment = int(previous.get("segment", 0)) + (1 if checkpoint else 0)
        if previous.get("spec", {}).get("algo") not in (None, spec.algo):
            raise ValueError(f"{run_dir} holds a {previous['spec']['algo']} run, not {spec.algo}")
    train_seeds = training_env_seeds(spec.seed, n_envs, segment)
    start_step = checkpoint[1] if checkpoint else 0
    if timesteps < start_step:
        raise ValueError(f"--timesteps {timesteps} is below the checkpoint's step {start_step}")

    monitor_path = run_dir / MONITOR
    venv = make_vec_env(
        spec.env_id,
        n_envs,
        env_kwargs=preset.env_kwargs,
        monitor_path=None if checkpoint else str(monitor_path),
        normalize_kwargs=None if checkpoint else preset.normalize_kwargs,
        frame_stack=None if checkpoint else preset.frame_stack,
    )
    cls = algorithm.load_class()
    if checkpoint:
        venv = _reattach(venv, checkpoint[0], monitor_path, preset)
        model = cls.load(checkpoint[0] / MODEL, env=venv, device=spec.device)
        replay = checkpoint[0] / "replay_buffer.pkl"
        if replay.exists():
            model.load_replay_buffer(replay)
    else:
        model = cls(
            preset.policy, venv, seed=spec.seed, device=spec.device, verbose=spec.verbose, **preset.model_kwargs
        )
    venv.seed(train_seeds[0])  # the model's constructor seeded the envs with seed + rank; use the run's range

    write_config(
        run_dir,
        spec,
        timesteps=timesteps,
        learns=True,
        n_envs=n_envs,
        policy=preset.policy,
        preset={**preset.raw, "n_envs": n_envs, "n_timesteps": timesteps},
        hyperparameters=resolved_hyperparameters(algorithm, model, preset),
        normalize=preset.normalize_kwargs,
        frame_stack=preset.frame_stack,
        env_kwargs=preset.env_kwargs,
        segment=segment,
        train_env_seeds=_all_train_seeds(spec.seed, n_envs, segment),
        eval_seeds_start=_eval_base(),
        resumed_from_step=start_step if resuming else None,
    )
    model.set_logger(_tensorboard_logger(run_dir, spec.verbose, purge_step=start_step if resuming else None))

    eval_venv = _evaluation_venv(spec, preset, spec.curve_episodes)
    deterministic = _deterministic(spec, eval_venv.action_space, model)
    log = EvaluationLog(run_dir / EVALUATIONS, keep_until=start_step if resuming else None)

    def evaluate_curve() -> list[EpisodeResult]:
        return evaluate_episodes(model, eval_venv, deterministic=deterministic, training_env=model.get_env())

    eval_freq = max(timesteps // spec.n_evaluations, 1)
    save_freq = max(timesteps // spec.n_checkpoints, 1)
    callbacks = [EpisodeMetricsCallback(), PeriodicEvalCallback(evaluate_curve, eval_freq, log.add)]
    keeper, validation_venv = None, None
    if spec.select_model == "best":
        keeper = BestModelKeeper(model, run_dir)
        validation_venv = _evaluation_venv(spec, preset, spec.validation_episodes)

        def validate() -> list[EpisodeResult]:
            return evaluate_episodes(model, validation_venv, deterministic=deterministic,
                                     training_env=model.get_env(), seed_base=VALIDATION_SEED_BASE)  # fmt: skip

        callbacks.append(PeriodicEvalCallback(validate, eval_freq, keeper.consider, prefix="validation/"))
    callbacks.append(CheckpointEveryCallback(lambda: save_checkpoint(model, run_dir), save_freq))
    try:
        model.learn(
            total_timesteps=timesteps - start_step,
            callback=callbacks,
            reset_num_timesteps=not checkpoint,
            progress_bar=spec.progress_bar,
        )
        final_step = int(model.num_timesteps)
        save_checkpoint(model, run_dir)  # so that --resume with a larger --timesteps can train further
        atomic_write(run_dir / MODEL, lambda tmp: model.save(tmp), suffix=".zip")
        vec_normalize = model.get_vec_normalize_env()
        if vec_normalize is not None:
            atomic_write(run_dir / VECNORMALIZE, lambda tmp: vec_normalize.save(str(tmp)))
        eval_venv.close()
        if keeper is not None and keeper.last_step != final_step:  # the final model is a candidate too
            keeper.consider(final_step, validate())
        final_venv = _evaluation_venv(spec, preset, spec.eval_episodes)
        results = evaluate_episodes(model, final_venv, deterministic=deterministic, training_env=model.get_env())
        log.add(final_step, results)
        log_evaluation(model.logger, results)
        model.logger.dump(final_step)
        selection = None
        if keeper is not None:
            selection = {"mode": "best", **keeper.record, "final_model_mean_return": _mean_return(results)}
            if keeper.record["timesteps"] != final_step:
                results = _evaluate_saved(cls, keeper.path, venv, final_venv, spec, deterministic)
        final_venv.close()
        write_eval_json(run_dir, spec, final_step, results, deterministic, model_selection=selection)
    finally:
        model.logger.close()
        venv.close()
        if validation_venv is not None:
            validation_venv.close()
    return final_step


def _mean_return(results: list[EpisodeResult]) -> float:
    return sum(r.ret for r in results) / len(results)


def _evaluate_saved(
    cls: Any, model_dir: Path, training_venv: Any, venv: Any, spec: RunSpec, deterministic: bool
) -> list[EpisodeResult]:
    """Held-out episodes in ``venv`` of the model saved in ``model_dir``, with its own ``VecNormalize``
    statistics."""
    import copy
    import pickle

    from stable_baselines3.common.vec_env import VecEnvWrapper, VecNormalize

    from encephagen_gym.agents.evaluation import evaluate_episodes

    model = cls.load(model_dir / MODEL, env=training_venv, device=spec.device)
    if (model_dir / VECNORMALIZE).exists():
        with (model_dir / VECNORMALIZE).open("rb") as handle:
            statistics = pickle.load(handle)  # a VecNormalize without its venv (as VecNormalize.load reads it)
        layer = venv
        while isinstance(layer, VecEnvWrapper):
            if isinstance(layer, VecNormalize):
                layer.obs_rms, layer.ret_rms = copy.deepcopy(statistics.obs_rms), copy.deepcopy(statistics.ret_rms)
            layer = layer.venv
    return evaluate_episodes(model, venv, deterministic=deterministic)


def _eval_base() -> int:
    from encephagen_gym.agents.evaluation import EVAL_SEED_BASE

    return EVAL_SEED_BASE


def _all_train_seeds(seed: int, n_envs: int, segment: int) -> list[int]:
    from encephagen_gym.agents.evaluation import training_env_seeds

    return [s for k in range(segment + 1) for s in training_env_seeds(seed, n_envs, k)]


def _read_config(run_dir: Path) -> dict[str, Any]:
    import yaml

    path = run_dir / CONFIG
    if not path.exists():
        return {}
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def _reattach(venv: Any, checkpoint: Path, monitor_path: Path, preset: Preset) -> Any:
    """On resume: append to the existing monitor.csv, restore the VecNormalize statistics, re-stack frames."""
    from stable_baselines3.common.monitor import ResultsWriter
    from stable_baselines3.common.vec_env import VecFrameStack, VecNormalize

    elapsed = 0.0
    rows = read_rows_csv_monitor(monitor_path)
    if rows:
        elapsed = float(rows[-1].get("t", 0.0))
    venv.t_start = time.time() - elapsed
    venv.results_writer = ResultsWriter(str(monitor_path), override_existing=not monitor_path.exists())
    stats = checkpoint / VECNORMALIZE
    if stats.exists():
        venv = VecNormalize.load(str(stats), venv)
    if preset.frame_stack:
        venv = VecFrameStack(venv, preset.frame_stack)
    return venv


def read_rows_csv_monitor(path: Path) -> list[dict[str, Any]]:
    """Rows of an SB3 ``monitor.csv`` (its first line is a JSON header comment)."""
    import csv

    if not path.exists():
        return []
    with path.open(encoding="utf-8") as handle:
        lines = [line for line in handle if not line.startswith("#")]
    return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(lines)]


# ------------------------------------------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="encephagen-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--algo", choices=list(ALGORITHMS), help="algorithm (see encephagen_gym.agents.algorithms)")
    parser.add_argument("--env", help="env id, e.g. Encephagen-Conditioning-v0")
    parser.add_argument("--timesteps", type=int, default=None, help="env steps of training (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0, help="run seed (0 <= S < 10^6)")
    parser.add_argument("--n-envs", type=int, default=None, help="parallel envs (default: the preset's)")
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:1 ...")
    parser.add_argument(
        "--hyperparams",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="override preset entries (YAML values: lin_3e-4, [64,64], true); for brain, BrainConfig fields too",
    )
    parser.add_argument("--out", default="runs", help="parent directory of the run directory (default: runs/)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its latest checkpoint")
    parser.add_argument("--eval-episodes", type=int, default=20, help="held-out episodes of the final evaluation")
    parser.add_argument("--curve-episodes", type=int, default=5, help="held-out episodes per evaluation in training")
    parser.add_argument("--n-evaluations", type=int, default=10, help="evaluations during training")
    add_model_selection_arguments(parser)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch and numba threads (default 1: fastest for MLPs and on a shared CPU)",
    )
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar (default: in a terminal)"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="print SB3's logs")
    return parser


def add_model_selection_arguments(parser: argparse.ArgumentParser) -> None:
    """``--select-model`` and ``--validation-episodes`` (shared with encephagen-compare)."""
    parser.add_argument(
        "--select-model",
        choices=MODEL_SELECTIONS,
        default="final",
        help="model that eval.json scores: the final one, or the best on validation episodes (seeds 1.5e9 + i)",
    )
    parser.add_argument(
        "--validation-episodes", type=int, default=10, help="validation episodes per check (--select-model best)"
    )


def _deterministic(spec: RunSpec, action_space: spaces.Space, model: Any = None) -> bool:
    """Greedy or sampled evaluation: the spec's choice, else the model's own (``BrainAgent.greedy_evaluation``:
    its policy head decides), else the algorithm's (see ``Algorithm.deterministic_eval``)."""
    if spec.deterministic_eval is not None:
        return spec.deterministic_eval
    own = getattr(model, "greedy_evaluation", None)
    if isinstance(own, bool):
        return own
    return get_algorithm(spec.algo).deterministic_eval(action_space)


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)

    set_compute_threads(max(1, args.threads))
    progress = sys.stdout.isatty() if args.progress is None else args.progress

    if args.resume:
        if args.algo or args.env or args.hyperparams:
            parser.error("--resume takes the run's settings from its config.yaml; give only --timesteps/--device")
        run_dir = Path(args.resume)
        config = _read_config(run_dir)
        if "spec" not in config:
            parser.error(f"{run_dir} has no {CONFIG} with a run spec")
        spec = RunSpec(**config["spec"])
        if args.timesteps is not None:
            spec.timesteps = args.timesteps
        spec.device, spec.progress_bar = args.device, progress
        if read_status(run_dir).get("status") == "finished" and args.timesteps is None:
            print(f"{run_dir} has already finished; pass a larger --timesteps to train further")
            return
        if (run_dir / EVAL).exists():
            (run_dir / EVAL).unlink()  # the run continues: its final evaluation is redone
        path = train(spec, run_dir=run_dir)
    else:
        if not args.algo or not args.env:
            parser.error("--algo and --env are required (or --resume RUN_DIR)")
        try:
            spec = RunSpec(
                env_id=args.env,
                algo=args.algo,
                seed=args.seed,
                timesteps=args.timesteps,
                n_envs=args.n_envs,
                device=args.device,
                hyperparams=parse_hyperparams(args.hyperparams),
                eval_episodes=args.eval_episodes,
                curve_episodes=args.curve_episodes,
                n_evaluations=args.n_evaluations,
                select_model=args.select_model,
                validation_episodes=args.validation_episodes,
                progress_bar=progress,
                verbose=args.verbose,
            )
            prepare(spec)
        except (ValueError, ImportError) as error:
            parser.error(str(error))
        path = train(spec, args.out)
    summary = read_json(path / EVAL)
    metrics = ", ".join(f"{k} {v:.3f}" for k, v in summary["mean_metrics"].items())
    print(f"{path}\nheld-out return {summary['mean_return']:.3f} over {summary['n_episodes']} episodes; {metrics}")


if __name__ == "__main__":
    main()
