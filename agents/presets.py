"""Hyperparameter presets: ``agents/hyperparams/<algo>.yml``, keyed by env id, in rl-zoo3's file format.

The same files serve ``python -m rl_zoo3.train --algo ppo --env Encephagen-Conditioning-v0 --gym-packages
encephagen_gym --conf-file <path to ppo.yml>`` for the stable-baselines3 algorithms (rl-zoo3 calls
RecurrentPPO ``ppo_lstm``). The conventions, as rl-zoo3 reads them:

* an entry per env id, or ``default`` for any other env;
* ``n_envs``, ``n_timesteps``, ``policy``; everything else is a keyword argument of the algorithm;
* ``normalize``: ``true`` (observations and rewards), or a string/dict of ``VecNormalize`` keyword arguments
  such as ``"dict(norm_obs=True, norm_reward=False)"``; the algorithm's ``gamma`` is passed on to it;
* ``frame_stack: k`` stacks the last k observations (``VecFrameStack``, applied after normalisation);
* ``policy_kwargs`` as a Python expression string, e.g. ``"dict(net_arch=[64, 64], activation_fn=nn.Tanh)"``;
* schedules ``lin_<value>`` (linear decay from value to 0 over training) for ``learning_rate``, ``clip_range``
  and ``clip_range_vf``;
* ``noise_type`` (``normal`` or ``ornstein-uhlenbeck``) with ``noise_std`` builds the off-policy action noise;
* ``train_freq`` given as a list becomes a tuple, e.g. ``[1, "episode"]``.

For the brain (``brain.yml``) every :class:`encephagen_gym.brain.BrainConfig` field, and ``association_inputs``, may
also be given directly as an override (``neurons_per_region=20``) and goes into ``policy_kwargs``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from encephagen_gym.agents.algorithms import Algorithm, constructor_kwargs, get_algorithm

__all__ = [
    "HYPERPARAMS_DIR",
    "Preset",
    "brain_config_fields",
    "load_preset_file",
    "parse_hyperparams",
    "preset_entry",
    "preset_path",
    "resolve_preset",
]

HYPERPARAMS_DIR = Path(__file__).with_name("hyperparams")

PRESET_KEYS = frozenset({"n_envs", "n_timesteps", "policy", "normalize", "frame_stack", "noise_type", "noise_std"})
"""Keys of a preset entry that configure the run rather than the algorithm's constructor."""

SCHEDULE_KEYS = ("learning_rate", "clip_range", "clip_range_vf")

_UNSUPPORTED = frozenset(
    {"env_wrapper", "vec_env_wrapper", "callback", "monitor_kwargs", "replay_buffer_class", "replay_buffer_kwargs"}
)
# Constructor arguments set by the run itself, never by a preset.
_RUN_ARGS = frozenset({"policy", "env", "tensorboard_log", "verbose", "seed", "device", "_init_setup_model"})


def preset_path(algo: str) -> Path:
    """Path of ``algo``'s preset file (it may not exist for the non-learning rows)."""
    get_algorithm(algo)
    return HYPERPARAMS_DIR / f"{algo}.yml"


def load_preset_file(algo: str) -> dict[str, dict[str, Any]]:
    """All entries of ``algo``'s preset file (env id or ``default`` → hyperparameters)."""
    path = preset_path(algo)
    if not path.exists():
        raise ValueError(f"algorithm {algo!r} has no preset file ({path.name})")
    with path.open() as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{path} must map env ids to dictionaries of hyperparameters")
    _check_no_glued_keys(str(path), data)
    return data


@cache
def brain_config_fields() -> frozenset[str]:
    """Names accepted as brain overrides: the :class:`encephagen_gym.brain.BrainConfig` fields and
    ``association_inputs`` (the policy option that chooses the default brain's pathways)."""
    from encephagen_gym.brain import BrainConfig

    return frozenset(f.name for f in dataclasses.fields(BrainConfig)) | {"association_inputs"}


def _check_no_glued_keys(where: str, value: Any) -> None:
    """``ValueError`` where a YAML mapping (at any depth) has a key such as ``"a:1"`` with no value: YAML reads
    ``{a:1}`` that way, for want of a space after the colon."""
    if isinstance(value, Mapping):
        glued = [key for key, item in value.items() if item is None and isinstance(key, str) and ":" in key]
        if glued:
            raise ValueError(f"{where}: the keys {glued} have no value: YAML needs a space after the colon, "
                             "as in {abort_penalty: 0.0}")  # fmt: skip
        items = value.values()
    elif isinstance(value, list):
        items = value
    else:
        return
    for item in items:
        _check_no_glued_keys(where, item)


def _parse_value(text: str) -> Any:
    """A command-line value: YAML scalars and lists (``64``, ``true``, ``[64, 64]``), numbers in any float
    notation (``3e-4``, which YAML 1.1 reads as a string), otherwise the string itself (``lin_3e-4``)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_hyperparams(items: Iterable[str]) -> dict[str, Any]:
    """``["key=value", "ppo.key=value", ...]`` → ``{"key": value, "ppo.key": value}`` (values parsed by
    :func:`_parse_value`); ``ValueError`` for an item without ``=`` or with an empty key."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--hyperparams items must look like key=value (or algo.key=value), got {item!r}")
        parsed[key] = _parse_value(text.strip())
        _check_no_glued_keys(f"--hyperparams {key}", parsed[key])
    return parsed


def overrides_for(algo: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The overrides that apply to ``algo``: unscoped keys and ``algo.key`` ones (scoped keys win)."""
    plain = {k: v for k, v in overrides.items() if "." not in k}
    scoped = {k.split(".", 1)[1]: v for k, v in overrides.items() if k.split(".", 1)[0] == algo and "." in k}
    return {**plain, **scoped}


def allowed_keys(algorithm: Algorithm) -> frozenset[str]:
    """Hyperparameter names a preset or override may set for ``algorithm`` (the controls: only ``env_kwargs``)."""
    if not algorithm.learns:
        return frozenset({"env_kwargs"})
    keys = (constructor_kwargs(algorithm.load_class()) - _RUN_ARGS) | PRESET_KEYS | {"policy", "env_kwargs"}
    if algorithm.name == "brain":
        keys |= brain_config_fields()
    return frozenset(keys)


def _eval_expression(key: str, text: str) -> Any:
    """Evaluate a preset's Python-expression string (``policy_kwargs``, ``normalize``, ``env_kwargs``) as rl-zoo3
    does, with ``dict`` and ``torch.nn`` as ``nn`` in scope."""
    import torch

    try:
        return eval(text, {"__builtins__": {}, "dict": dict, "nn": torch.nn, "list": list, "tuple": tuple})
    except Exception as error:
        raise ValueError(f"{key}: cannot evaluate {text!r}: {error}") from error


def _env_kwargs(value: Any) -> dict[str, Any]:
    """``env_kwargs`` as a dict: a mapping, None, or a ``dict(...)`` expression string as ``policy_kwargs`` takes
    (``ValueError`` naming the key for anything else)."""
    if isinstance(value, str):
        value = _eval_expression("env_kwargs", value)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"env_kwargs must be a mapping such as {{trials_per_episode: 2}} or "
                         f"dict(trials_per_episode=2), got {value!r}")  # fmt: skip
    return dict(value)


def _schedule(key: str, value: Any) -> Any:
    """rl-zoo3's schedules: ``"lin_<x>"`` → a linear decay from x to 0 over training; numbers pass through."""
    from stable_baselines3.common.utils import LinearSchedule

    if isinstance(value, str):
        kind, _, initial = value.partition("_")
        try:
            start = float(initial)
        except ValueError:
            start = math.nan
        if kind != "lin" or not math.isfinite(start):
            raise ValueError(f"{key}: a schedule string must look like 'lin_<initial value>', got {value!r}")
        return LinearSchedule(start, 0.0, 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key} must be a number or a 'lin_<value>' schedule, got {value!r}")
    return float(value)


def _action_noise(noise_type: str, noise_std: float, action_dim: int) -> Any:
    from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise

    sigma = float(noise_std) * np.ones(action_dim)
    if noise_type.strip() == "normal":
        return NormalActionNoise(mean=np.zeros(action_dim), sigma=sigma)
    if noise_type.strip() == "ornstein-uhlenbeck":
        return OrnsteinUhlenbeckActionNoise(mean=np.zeros(action_dim), sigma=sigma)
    raise ValueError(f"noise_type must be 'normal' or 'ornstein-uhlenbeck', got {noise_type!r}")


@dataclass
class Preset:
    """A preset resolved for one (algorithm, env): what the run builds, and the entry as written.

    Attributes:
        raw: the preset entry with overrides applied, in the file's own notation (what ``config.yaml`` records
            and rl-zoo3 could read back).
        model_kwargs: keyword arguments for the algorithm's constructor (schedules, ``policy_kwargs`` and
            action noise built), without ``policy`` and the run's own arguments.
        normalize_kwargs: ``VecNormalize`` keyword arguments, or None for no normalisation.
    """

    algo: str
    env_id: str
    n_envs: int
    n_timesteps: int | None
    policy: str | None
    frame_stack: int | None
    normalize_kwargs: dict[str, Any] | None
    env_kwargs: dict[str, Any]
    model_kwargs: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict)


def _raw_entry(algo: str, env_id: str) -> dict[str, Any]:
    entries = load_preset_file(algo)
    if env_id in entries:
        return dict(entries[env_id])
    if "default" in entries:
        return dict(entries["default"])
    known = ", ".join(k for k in entries if k != "default")
    raise ValueError(f"no {algo} preset for {env_id} and no 'default' entry in {algo}.yml (presets: {known})")


def preset_entry(algo: str, env_id: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``algo``'s preset entry for ``env_id`` with ``overrides`` applied, as written (no checks; empty for the
    controls): what identifies a run's settings beside its command-line arguments."""
    if not get_algorithm(algo).learns:
        return dict(overrides or {})
    raw = _raw_entry(algo, env_id)
    raw.update(overrides or {})
    return raw


def _merge_brain_fields(raw: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Move BrainConfig fields given as overrides into ``raw["policy_kwargs"]`` (a dict literal string)."""
    fields = {k: overrides.pop(k) for k in list(overrides) if k in brain_config_fields()}
    if not fields:
        return
    current = raw.get("policy_kwargs", {})
    if isinstance(current, str):
        current = _eval_expression("policy_kwargs", current)
    raw["policy_kwargs"] = repr({**dict(current), **fields})


def resolve_preset(
    algo: str,
    env_id: str,
    overrides: Mapping[str, Any] | None = None,
    *,
    action_dim: int | None = None,
) -> Preset:
    """Resolve ``algo``'s preset for ``env_id`` with ``overrides`` (already scoped to ``algo``) applied.

    Raises ``ValueError`` naming the key for unknown or unsupported keys, bad schedules or unevaluable
    expressions. ``action_dim`` is needed only when the preset asks for action noise. The non-learning rows have
    no presets: they resolve to one env and no hyperparameters.
    """
    algorithm = get_algorithm(algo)
    overrides = dict(overrides or {})
    if not algorithm.learns:
        unknown = sorted(set(overrides) - {"env_kwargs"})
        if unknown:
            raise ValueError(f"{algo} does not learn and takes no hyperparameters but env_kwargs, got {unknown}")
        env_kwargs = _env_kwargs(overrides.get("env_kwargs"))
        return Preset(algo, env_id, 1, None, None, None, None, env_kwargs, {}, dict(overrides))

    raw = _raw_entry(algo, env_id)
    if algo == "brain":  # a policy_kwargs override replaces the preset's; BrainConfig fields then go into it
        if "policy_kwargs" in overrides:
            raw["policy_kwargs"] = overrides.pop("policy_kwargs")
        _merge_brain_fields(raw, overrides)
    raw.update(overrides)
    unsupported = sorted(_UNSUPPORTED & raw.keys())
    if unsupported:
        raise ValueError(f"{algo} preset for {env_id}: rl-zoo3 keys {unsupported} are not supported by encephagen")
    allowed = allowed_keys(algorithm)
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown} for {algo}; allowed: {', '.join(sorted(allowed))}")

    kwargs = dict(raw)
    n_envs = int(kwargs.pop("n_envs", 1))
    if n_envs < 1:
        raise ValueError(f"n_envs must be a positive integer, got {n_envs!r}")
    n_timesteps = kwargs.pop("n_timesteps", None)
    n_timesteps = None if n_timesteps is None else int(float(n_timesteps))
    policy = kwargs.pop("policy", algorithm.default_policy)
    frame_stack = kwargs.pop("frame_stack", None)
    if frame_stack is not None and (int(frame_stack) != frame_stack or frame_stack < 1):
        raise ValueError(f"frame_stack must be a positive integer, got {frame_stack!r}")
    env_kwargs = _env_kwargs(kwargs.pop("env_kwargs", None))

    normalize = kwargs.pop("normalize", False)
    normalize_kwargs: dict[str, Any] | None = None
    if isinstance(normalize, str):
        normalize = _eval_expression("normalize", normalize)
    if isinstance(normalize, dict):
        normalize_kwargs = dict(normalize)
    elif normalize:
        normalize_kwargs = {}
    if normalize_kwargs is not None and "gamma" in kwargs:
        normalize_kwargs["gamma"] = kwargs["gamma"]

    for key in SCHEDULE_KEYS:
        if key in kwargs:
            kwargs[key] = _schedule(key, kwargs[key])
    if isinstance(kwargs.get("policy_kwargs"), str):
        kwargs["policy_kwargs"] = _eval_expression("policy_kwargs", kwargs["policy_kwargs"])
    if isinstance(kwargs.get("train_freq"), list):
        kwargs["train_freq"] = tuple(kwargs["train_freq"])
    noise_type, noise_std = kwargs.pop("noise_type", None), kwargs.pop("noise_std", None)
    if noise_type is not None:
        if noise_std is None or action_dim is None:
            raise ValueError("noise_type needs noise_std and a Box action space")
        kwargs["action_noise"] = _action_noise(noise_type, noise_std, action_dim)

    return Preset(
        algo=algo,
        env_id=env_id,
        n_envs=n_envs,
        n_timesteps=n_timesteps,
        policy=policy,
        frame_stack=None if frame_stack is None else int(frame_stack),
        normalize_kwargs=normalize_kwargs,
        env_kwargs=env_kwargs,
        model_kwargs=kwargs,
        raw=raw,
    )
