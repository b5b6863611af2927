"""Which task variables does the brain carry, where, and when? The information probe as a command.

Runs B brains (frozen, or a trained ``BrainAgent`` model) through a cognitive task with the agent's own encoder,
records every neuron's spikes per trial period, and decodes the task variables (stimulus class, CS+/−, sample,
match, delay bin, the upcoming correct action) from each population (the excitatory neurons of each region
role, the readout's input neurons, all neurons) in each period by cross-validated logistic regression; see
:mod:`encephagen_gym.agents.probe` for the method. Prints one table per variable (rows: populations,
columns: periods, cells: accuracy ± 95 % CI; the chance level and a shuffled-label control beneath) and writes:

- ``DIR/probe.csv``: one row per seed × variable × feature × population × period (accuracy, Wilson CI, chance,
  shuffle-control accuracy, trials, classes);
- ``DIR/probe.md``: the command, the set-up and the tables;
- ``DIR/heatmap_<variable>[_<feature>].png``: population × period, colour = accuracy − chance (none for a
  variable that is constant over the trials, e.g. the delay bin with a fixed delay);
- with ``--generalise CONDITION``: ``DIR/generalisation.csv`` and, in the Markdown, one matrix per variable ×
  feature × population: each decoder fitted on the trials of one value of the condition (e.g. the delay bin)
  and scored on every value's trials in one period (``--generalise-period``, default the trial's last), see
  :mod:`encephagen_gym.agents.probe_generalisation`.

Usage::

    encephagen-probe --env Encephagen-PatternRecognition-v0 --trials 200 --seeds 0 1 2 --filter-ms 200
    encephagen-probe --env Encephagen-WorkingMemory-v0 --env-arg delay_ms=1000 --trials 200
    encephagen-probe --env Encephagen-Conditioning-v0 --brain connectome=tvb96:rewired:3 --populations visual all
    encephagen-probe --env Encephagen-Conditioning-v0 --model runs/model.zip --act model
    encephagen-probe --env Encephagen-WorkingMemory-v0 --env-arg mode='"recall"' --env-arg 'delay_ms=[0, 1000]' \
        --filter-ms 200 --populations prefrontal readout --generalise delay_bin
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym

import encephagen_gym  # noqa: F401  (registers the ids)
from encephagen_gym.agents import DEFAULT_ACTION_ROLES, BrainAgent
from encephagen_gym.agents.probe import (
    ACTS,
    DEFAULT_C,
    DEFAULT_FOLDS,
    default_populations,
    probe_recording,
    probe_recordings,
    task_variables,
    trace_feature,
)
from encephagen_gym.agents.probe_generalisation import (
    generalisation_tables,
    probe_generalisation,
    summarise_generalisation,
)
from encephagen_gym.agents.probe_report import csv_text, decodable, markdown_tables, plot_probe_heatmap, summarise
from encephagen_gym.brain import BrainConfig
from encephagen_gym.brain.config import resolve_device, set_compute_threads
from encephagen_gym.envs.trial_env import TrialEnv
from encephagen_gym.scripts.argtypes import int_at_least, non_negative_float, positive_float
from encephagen_gym.scripts.record_video import parse_kwarg, write_atomically

__all__ = ["main"]

_BRAIN_FIELDS = {field.name for field in dataclasses.fields(BrainConfig)} - {"seed", "device"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="encephagen-probe", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", required=True, help="a registered trial task, e.g. Encephagen-Conditioning-v0")
    parser.add_argument("--env-arg", type=parse_kwarg, action="append", default=[], metavar="KEY=VALUE",
                        help="env option (JSON value): delay_ms=1000, 'iti_ms=[200, 600]'; repeatable")  # fmt: skip
    parser.add_argument("--trials", type=int_at_least(10), default=200, help="trials per seed (default 200)")
    parser.add_argument("--seeds", type=int_at_least(0), nargs="+", default=[0],
                        help="brain seeds (wiring, states, noise, trials); several: mean ± t-interval")  # fmt: skip
    parser.add_argument("--n-envs", type=int_at_least(1), default=16, help="brains (and envs) run as one batch")
    parser.add_argument("--neurons-per-region", type=int_at_least(2), default=None,
                        help="neurons per region of a fresh brain (default 20)")  # fmt: skip
    parser.add_argument("--brain", type=parse_kwarg, nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="BrainConfig fields or ConnectomePolicy options of a fresh brain, e.g. "
                        "connectome=tvb96:rewired:3 input_gain_mv=20 'readout_roles=[\"prefrontal\"]'")  # fmt: skip
    parser.add_argument("--model", type=Path, default=None, help="a trained BrainAgent model (.zip) to probe")
    parser.add_argument("--act", choices=ACTS, default="withhold",
                        help="withhold (default: every trial runs its course) or the model's own actions")  # fmt: skip
    parser.add_argument("--filter-ms", type=non_negative_float, default=0.0,
                        help="also decode a leaky spike trace with this time constant (ms) read at each period's "
                        "start (0: off)")  # fmt: skip
    parser.add_argument("--populations", nargs="+", default=["roles"], metavar="SPEC",
                        help="'roles' (every role's E neurons, the readout's inputs and all neurons), 'all', or "
                        "role names ('motor+premotor' joins roles), 'readout', 'all'")  # fmt: skip
    parser.add_argument("--generalise", default=None, metavar="CONDITION",
                        help="also fit each decoder on the trials of one value of this task variable and score it "
                        "on the others (e.g. delay_bin: does the code at short delays read long ones?)")  # fmt: skip
    parser.add_argument("--generalise-period", default=None, metavar="PERIOD",
                        help="the trial period of --generalise (default: the trial's last, e.g. decision)")  # fmt: skip
    parser.add_argument("--folds", type=int_at_least(2), default=DEFAULT_FOLDS, help="cross-validation folds")
    parser.add_argument("--C", type=positive_float, default=DEFAULT_C, help=f"inverse L2 penalty (default {DEFAULT_C})")
    parser.add_argument("--out", type=Path, default=Path("probe"), help="output directory (default ./probe)")
    parser.add_argument("--device", default="auto", help="auto (default: CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int_at_least(1), default=1,
                        help="CPU threads of the brain (default 1: on a busy CPU more are slower)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if args.env not in gym.registry:
        parser.error(f"--env {args.env!r} is not a registered env id")
    try:
        args.env_kwargs = dict(args.env_arg)
        probe_env = gym.make(args.env, **args.env_kwargs)
    except (TypeError, ValueError) as error:
        parser.error(f"--env-arg: {error}")
    if not isinstance(probe_env.unwrapped, TrialEnv):
        parser.error(f"--env {args.env!r} is not a trial task (the probe needs trial periods and outcomes)")
    args.variables = task_variables(probe_env)
    if args.generalise is not None and args.generalise not in args.variables:
        parser.error(f"--generalise {args.generalise!r} is not a task variable of {args.env}; "
                     f"choose one of {sorted(args.variables)}")  # fmt: skip
    if args.generalise_period is not None and args.generalise is None:
        parser.error("--generalise-period needs --generalise")
    args.brain_kwargs = dict(args.brain)
    if args.model is not None:
        if not args.model.is_file():
            parser.error(f"--model {str(args.model)!r}: no such file")
        if args.brain_kwargs or args.neurons_per_region is not None:
            parser.error("--brain and --neurons-per-region describe a fresh brain; a --model brings its own")
    else:
        if args.act == "model":
            parser.error("--act model needs a trained --model (a fresh brain's actions are its untrained policy)")
        if "seed" in args.brain_kwargs or "device" in args.brain_kwargs:
            parser.error("--brain seed=/device= are set by --seeds and --device")
        if "neurons_per_region" in args.brain_kwargs and args.neurons_per_region is not None:
            parser.error("give the brain size once: --neurons-per-region or --brain neurons_per_region=")
        args.brain_kwargs.setdefault("neurons_per_region", args.neurons_per_region or 20)
    try:
        args.device = str(resolve_device(args.device))
    except ValueError as error:
        parser.error(f"--device: {error}")
    args.populations_spec = _population_spec(parser, args.populations)
    return args


def _population_spec(parser: argparse.ArgumentParser, specs: list[str]) -> tuple[list[str] | None, bool, bool]:
    """(role specs or None for every role, include 'readout', include 'all')."""
    if specs == ["roles"]:
        return None, True, True
    roles = [spec for spec in specs if spec not in ("all", "readout", "roles")]
    if "roles" in specs:
        parser.error("--populations roles stands alone (it means every role, the readout and all neurons)")
    return roles, "readout" in specs, "all" in specs


def _populations(policy, spec: tuple[list[str] | None, bool, bool]) -> dict:
    roles, readout, everything = spec
    populations = default_populations(policy, roles)
    if not readout:
        populations.pop("readout")
    if not everything:
        populations.pop("all")
    return populations


def _command(argv: Sequence[str] | None) -> str:
    words = list(sys.argv[1:] if argv is None else argv)
    return "encephagen-probe " + " ".join(shlex.quote(word) for word in words)


def _file_name(variable: str, feature: str) -> str:
    return f"heatmap_{variable}.png" if feature == "rate" else f"heatmap_{variable}_{feature}.png"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = _parse(parser, argv)
    set_compute_threads(args.threads)
    policy = None
    if args.model is not None:
        try:
            policy = BrainAgent.load(args.model, device=args.device).policy
        except (TypeError, ValueError, KeyError, OSError) as error:
            parser.error(f"--model {str(args.model)!r} could not be loaded: {error}")
    rows, generalisation = [], []
    try:  # a bad brain option, population, period or model/env mismatch exits with the usage message (status 2)
        for recording, populations in probe_recordings(
            args.env, seeds=args.seeds, n_trials=args.trials, n_envs=args.n_envs,
            brain=None if policy is not None else args.brain_kwargs, policy=policy, act=args.act,
            filter_ms=args.filter_ms, populations=lambda probed: _populations(probed, args.populations_spec),
            env_kwargs=args.env_kwargs, device=args.device, progress=not args.no_progress,
        ):  # fmt: skip
            rows += probe_recording(recording, populations, args.variables, folds=args.folds, C=args.C)
            if args.generalise is not None:
                generalisation += _generalise(args, recording, populations)
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    summaries = summarise(rows)
    descriptions = {name: variable.description for name, variable in args.variables.items()}
    tables = markdown_tables(summaries, descriptions)
    if generalisation:
        tables += f"\n## Generalisation across `{args.generalise}`\n\n"
        tables += generalisation_tables(summarise_generalisation(generalisation))
    print(tables)
    _write(args, argv, rows, summaries, tables, policy, generalisation)
    return 0


def _generalise(args, recording, populations) -> list:
    """The generalisation matrices across ``--generalise`` of every other task variable (one of each set of
    variables that split the trials alike, e.g. the sample and the correct action in recall), every feature."""
    condition = args.variables[args.generalise]
    rows, seen = [], set()
    for variable in args.variables.values():
        labels = [variable.extract(outcome) for outcome in recording.outcomes]
        first: dict = {}
        partition = tuple(None if label is None else first.setdefault(label, len(first)) for label in labels)
        if variable.name == condition.name or partition in seen:
            continue
        seen.add(partition)
        for feature in recording.features:
            rows += probe_generalisation(recording, populations, variable, condition, feature=feature,
                                         period=args.generalise_period, folds=args.folds, C=args.C)  # fmt: skip
    return rows


def _write(args, argv, rows, summaries, tables: str, model_policy, generalisation) -> None:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    write_atomically(out / "probe.csv", lambda path: Path(path).write_text(csv_text(rows)))
    if generalisation:
        write_atomically(out / "generalisation.csv", lambda path: Path(path).write_text(csv_text(generalisation)))
    if model_policy is not None:
        config, readout_roles = model_policy.brain.config, model_policy.readout.roles
        source = f"trained model {args.model} ({config.connectome}, {config.neurons_per_region} neurons per region)"
    else:
        connectome = args.brain_kwargs.get("connectome", BrainConfig().connectome)
        source = f"fresh (frozen) brain: {connectome}, {args.brain_kwargs['neurons_per_region']} neurons per region"
        readout_roles = tuple(args.brain_kwargs.get("readout_roles", DEFAULT_ACTION_ROLES))
    features = "rate" if args.filter_ms == 0 else f"rate and {trace_feature(args.filter_ms)}"
    header = [
        f"# Information probe: {args.env}",
        "",
        f"- command: `{_command(argv)}`",
        f"- brain: {source}; options {_describe(args.brain_kwargs)}",
        f"- env options: {_describe(args.env_kwargs)}; actions: {args.act}; {args.trials} trials per seed, "
        f"seeds {args.seeds}, {min(args.n_envs, args.trials)} brains per batch",
        f"- features: {features}; decoder: standardised multinomial logistic regression (C = {args.C}), "
        f"stratified {args.folds}-fold cross-validation",
        f"- populations: `<role> E` = the excitatory neurons of a region role; `readout` = the policy readout's "
        f"input neurons ({' + '.join(readout_roles)} E); `all` = every neuron, excitatory and inhibitory",
        "",
    ]
    write_atomically(out / "probe.md", lambda path: Path(path).write_text("\n".join(header) + "\n" + tables))
    for variable, feature in dict.fromkeys((s.variable, s.feature) for s in summaries):
        if not decodable(summaries, variable, feature):
            continue  # a constant variable: the Markdown says so, a heatmap of n/a would not
        target = out / _file_name(variable, feature)
        write_atomically(target, lambda path, v=variable, f=feature: plot_probe_heatmap(summaries, v, f, path,
                                                                                     title=args.env))  # fmt: skip
    print(f"wrote {out / 'probe.csv'}, {out / 'probe.md'} and the heatmaps in {out}/")


def _describe(options: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in options.items()) or "defaults"


if __name__ == "__main__":
    raise SystemExit(main())
