"""Algorithm table, control agents, presets, encephagen-train and encephagen-compare (issue 11).

The end-to-end grid is tiny (a few hundred env steps per learner, 2-trial episodes) so the whole file runs in
well under two minutes on a 2-core CPU including Ray's start-up.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml
from stable_baselines3.common.evaluation import evaluate_policy

from encephagen_gym.agents.algorithms import ALGORITHMS, get_algorithm
from encephagen_gym.agents.callbacks import EpisodeResult, mean_episode_metrics
from encephagen_gym.agents.evaluation import (
    EVAL_SEED_BASE,
    VALIDATION_SEED_BASE,
    evaluate_episodes,
    evaluation_seeds,
    make_vec_env,
    training_env_seeds,
)
from encephagen_gym.agents.presets import (
    HYPERPARAMS_DIR,
    load_preset_file,
    parse_hyperparams,
    resolve_preset,
)
from encephagen_gym.agents.scripted import RandomAgent, ReferenceAgent, ZeroAgent
from encephagen_gym.scripts import compare, report
from encephagen_gym.scripts import train as train_script
from encephagen_gym.stats import format_mean_ci, mean_ci
from tests.helpers import ENV_IDS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CONDITIONING = "Encephagen-Conditioning-v0"
PATTERNS = "Encephagen-PatternRecognition-v0"
SHORT = {"trials_per_episode": 1}  # 1-trial episodes: training episodes end within a few hundred steps
TINY_PPO = {"n_steps": 64, "batch_size": 64, "n_epochs": 1}


# ------------------------------------------------------------------------------------------------ table, controls
def test_algorithm_table_names_and_spaces() -> None:
    assert list(ALGORITHMS) == ["brain", "ppo", "a2c", "sac", "td3", "recurrent_ppo", "random", "zero", "reference"]
    assert [a.name for a in ALGORITHMS.values() if not a.learns] == ["random", "zero", "reference"]
    discrete, box = gym.spaces.Discrete(2), gym.spaces.Box(-1, 1, (2,))
    assert not get_algorithm("sac").supports(discrete) and get_algorithm("sac").supports(box)
    with pytest.raises(ValueError, match="Box action space"):
        get_algorithm("td3").check_supports(discrete, CONDITIONING)
    with pytest.raises(ValueError, match=r"unknown algorithm 'dqn'.*ppo"):
        get_algorithm("dqn")
    assert get_algorithm("brain").target == "encephagen_gym.agents.brain_agent:BrainAgent"  # imported lazily


def test_controls_follow_sb3_predict_contract() -> None:
    venv = make_vec_env(CONDITIONING, 3)
    try:
        reference = evaluate_episodes(ReferenceAgent(venv), venv)
        zero = evaluate_episodes(ZeroAgent(venv), venv)
        random_a = evaluate_episodes(RandomAgent(venv, seed=3), venv)
        random_b = evaluate_episodes(RandomAgent(venv, seed=3), venv)
        mean, _ = evaluate_policy(ReferenceAgent(venv), venv, n_eval_episodes=3)  # SB3's own evaluation loop
    finally:
        venv.close()
    assert [r.seed for r in reference] == evaluation_seeds(3)
    assert all(r.metrics["discrimination"] == 1.0 for r in reference)  # the oracle reference
    assert mean > 0 and all(r.ret == 0.0 and r.metrics["hit_rate"] == 0.0 for r in zero)
    assert [r.ret for r in random_a] == [r.ret for r in random_b]  # seeded
    agent = ZeroAgent(make_vec_env("Encephagen-WormCrawl-v0", 2))
    actions, state = agent.predict(np.zeros((2, *agent.observation_space.shape)), state=None)
    assert actions.shape == (2, *agent.action_space.shape) and not actions.any() and state is None
    single, _ = agent.predict(np.zeros(agent.observation_space.shape))
    assert single.shape == agent.action_space.shape
    with pytest.raises(ValueError, match="VecEnv"):
        RandomAgent(gym.make(CONDITIONING))


def test_reference_resets_each_sub_env_at_its_episode_start() -> None:
    venv = make_vec_env(CONDITIONING, 2, env_kwargs=SHORT)
    agent = ReferenceAgent(venv)
    venv.seed(0)
    obs = venv.reset()
    starts = np.ones(2, dtype=bool)
    outcomes = []
    for _ in range(2000):
        actions, _ = agent.predict(obs, episode_start=starts)
        obs, _, dones, infos = venv.step(actions)
        starts = dones
        outcomes += [i["metrics"]["accuracy"] for i in infos if "metrics" in i]
    venv.close()
    assert len(outcomes) >= 10 and all(a == 1.0 for a in outcomes)


def test_seed_ranges_keep_training_and_evaluation_apart() -> None:
    largest = training_env_seeds(999_999, 100, segment=9)
    assert max(largest) < EVAL_SEED_BASE and min(evaluation_seeds(5)) == EVAL_SEED_BASE
    assert training_env_seeds(1, 3) == [1000, 1001, 1002] and training_env_seeds(1, 2, segment=1) == [1100, 1101]
    for bad in ({"seed": -1, "n_envs": 1}, {"seed": 10**6, "n_envs": 1}, {"seed": 0, "n_envs": 101}):
        with pytest.raises(ValueError):
            training_env_seeds(**bad)


def test_mean_episode_metrics_skips_undefined_values() -> None:
    results = [EpisodeResult(0, 1.0, 5, {"a": 1.0, "b": math.nan}), EpisodeResult(1, 1.0, 5, {"a": 3.0, "b": 2.0})]
    assert mean_episode_metrics(results) == {"a": 2.0, "b": 2.0}


# ------------------------------------------------------------------------------------------------ presets
def test_preset_conventions_of_rl_zoo3() -> None:
    from stable_baselines3.common.noise import NormalActionNoise
    from torch import nn

    preset = resolve_preset(
        "ppo",
        PATTERNS,
        {
            "learning_rate": "lin_3e-4",
            "clip_range": 0.1,
            "policy_kwargs": "dict(net_arch=[32, 32], activation_fn=nn.Tanh)",
            "normalize": "dict(norm_obs=True, norm_reward=False)",
            "gamma": 0.95,
            "n_envs": 3,
        },
    )
    schedule = preset.model_kwargs["learning_rate"]
    assert schedule(1.0) == pytest.approx(3e-4) and schedule(0.5) == pytest.approx(1.5e-4)
    assert preset.model_kwargs["policy_kwargs"] == {"net_arch": [32, 32], "activation_fn": nn.Tanh}
    assert preset.normalize_kwargs == {"norm_obs": True, "norm_reward": False, "gamma": 0.95}
    assert preset.n_envs == 3 and preset.frame_stack == 2  # the PatternRecognition preset stacks 2 frames
    assert preset.raw["learning_rate"] == "lin_3e-4"  # config.yaml records the file's notation
    td3 = resolve_preset("td3", "Encephagen-WormCrawl-v0", {"train_freq": [1, "episode"]}, action_dim=7)
    assert td3.model_kwargs["train_freq"] == (1, "episode")
    assert isinstance(td3.model_kwargs["action_noise"], NormalActionNoise)
    with pytest.raises(ValueError, match="lin_"):
        resolve_preset("ppo", CONDITIONING, {"learning_rate": "cos_1e-3"})
    with pytest.raises(ValueError, match=r"unknown hyperparameter.*n_step'"):
        resolve_preset("ppo", CONDITIONING, {"n_step": 64})
    with pytest.raises(ValueError, match="not supported"):
        resolve_preset("ppo", CONDITIONING, {"env_wrapper": "gymnasium.wrappers.TimeLimit"})
    with pytest.raises(ValueError, match="policy_kwargs"):
        resolve_preset("ppo", CONDITIONING, {"policy_kwargs": "dict(net_arch=undefined)"})
    with pytest.raises(ValueError, match="no hyperparameters"):
        resolve_preset("random", CONDITIONING, {"gamma": 0.9})


def test_brain_fields_and_a_policy_kwargs_override_combine() -> None:
    """BrainConfig fields given beside a ``policy_kwargs`` override all reach the policy (the override replaces
    the preset's policy_kwargs; it must not drop the fields)."""
    preset = resolve_preset(
        "brain", CONDITIONING,
        {"neurons_per_region": 12, "pathway_j_mv": 0.7, "association_inputs": ("visual",),
         "policy_kwargs": "dict(readout_tau_ms=150.0)"},
    )  # fmt: skip
    assert preset.model_kwargs["policy_kwargs"] == {"readout_tau_ms": 150.0, "neurons_per_region": 12,
                                                    "pathway_j_mv": 0.7, "association_inputs": ("visual",)}  # fmt: skip


@pytest.mark.parametrize("algo", ["ppo", "brain", "random"])
def test_env_kwargs_as_a_mapping_or_a_dict_expression(algo: str) -> None:
    for given in ("{trials_per_episode: 2}", "dict(trials_per_episode=2)"):
        preset = resolve_preset(algo, CONDITIONING, parse_hyperparams([f"env_kwargs={given}"]))
        assert preset.env_kwargs == {"trials_per_episode": 2}
    for bad in ("env_kwargs=7", "env_kwargs=[1, 2]", "env_kwargs=dict(undefined)", "env_kwargs={trials_per_episode:2}"):
        with pytest.raises(ValueError, match="env_kwargs"):
            resolve_preset(algo, CONDITIONING, parse_hyperparams([bad]))


def test_yaml_mappings_without_the_space_after_a_colon_are_refused(tmp_path, monkeypatch) -> None:
    """YAML reads ``{a:1}`` as the key "a:1" with no value; on the command line and in preset files, at any depth,
    that is an error naming the place, not a keyword argument that fails later."""
    with pytest.raises(ValueError, match=r"homeostasis_kwargs.*space after the colon"):
        parse_hyperparams(["homeostasis_kwargs={target_hz:5}"])
    with pytest.raises(ValueError, match="space after the colon"):
        parse_hyperparams(["stdp_kwargs=[{tau:20}]"])
    assert parse_hyperparams(["homeostasis_kwargs={target_hz: 5}"]) == {"homeostasis_kwargs": {"target_hz": 5}}
    (tmp_path / "ppo.yml").write_text("Encephagen-Conditioning-v0:\n  env_kwargs: {trials_per_episode:2}\n")
    monkeypatch.setattr("encephagen_gym.agents.presets.HYPERPARAMS_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"ppo\.yml.*space after the colon"):
        load_preset_file("ppo")


def test_every_preset_builds_its_model() -> None:
    """Each entry of every preset file resolves and constructs the real SB3 model on its env, made with the
    entry's env_kwargs (so that an env argument the env refuses fails here, not in a run)."""
    from encephagen_gym.scripts.train import _probe_spaces

    built = 0
    for path in sorted(HYPERPARAMS_DIR.glob("*.yml")):
        algo = path.stem
        algorithm = get_algorithm(algo)
        for env_id, entry in load_preset_file(algo).items():
            assert isinstance(entry["n_timesteps"], float | int), f"{algo}/{env_id}: n_timesteps must be a number"
            env_id = CONDITIONING if env_id == "default" else env_id
            _, action_space = _probe_spaces(env_id, {})
            if not algorithm.supports(action_space):
                env_id = "Encephagen-WormCrawl-v0"
                _, action_space = _probe_spaces(env_id, {})
            preset = resolve_preset(algo, env_id, action_dim=int(np.prod(action_space.shape)) or None)
            venv = make_vec_env(env_id, 1, env_kwargs=preset.env_kwargs, normalize_kwargs=preset.normalize_kwargs,
                                frame_stack=preset.frame_stack)  # fmt: skip
            kwargs = dict(preset.model_kwargs)
            if "buffer_size" in kwargs:
                kwargs["buffer_size"] = 1000  # the real size is allocated at once; the check is the constructor
            algorithm.load_class()(preset.policy, venv, device="cpu", **kwargs)
            venv.close()
            built += 1
    assert built >= 15
    for env_id in ENV_IDS[:3]:  # RecurrentPPO for every cognitive task (their blank delays need memory)
        assert env_id in load_preset_file("recurrent_ppo")
    for env_id in ENV_IDS[3:]:
        assert env_id in load_preset_file("sac") and env_id in load_preset_file("td3")


def test_parse_hyperparams() -> None:
    parsed = parse_hyperparams(["learning_rate=3e-4", "n_steps=64", "net=[64, 64]", "lr=lin_1e-3", "ppo.gamma=0.9"])
    assert parsed == {"learning_rate": 3e-4, "n_steps": 64, "net": [64, 64], "lr": "lin_1e-3", "ppo.gamma": 0.9}
    with pytest.raises(ValueError, match="key=value"):
        parse_hyperparams(["n_steps"])


@pytest.mark.parametrize(
    ("algo", "item", "message"),
    [
        ("brain", "choice_average=sometimes", "choice_average must be one of"),
        ("brain", "rule=hebbian", "rule must be one of"),
        ("ppo", "batch_size=1", "batch_size"),
    ],
)
def test_train_refuses_a_bad_constructor_value_before_making_a_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], algo: str, item: str, message: str
) -> None:
    argv = ["--algo", algo, "--env", CONDITIONING, "--timesteps", "64", "--hyperparams", item, "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        train_script.main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_rl_zoo3_reads_a_preset_file(tmp_path: Path) -> None:
    pytest.importorskip("rl_zoo3", reason="rl_zoo3 is not installed (optional; pip install rl_zoo3)")
    code = (
        "import sys; from rl_zoo3.train import train; sys.argv = ['train', '--algo', 'ppo', '--env', "
        f"'{CONDITIONING}', '--gym-packages', 'encephagen_gym', '--conf-file', '{HYPERPARAMS_DIR / 'ppo.yml'}', "
        f"'-n', '256', '--log-folder', '{tmp_path}', '--eval-freq', '-1', '--device', 'cpu', "
        "'--hyperparams', 'n_envs:2', 'n_steps:64', 'batch_size:64', 'n_epochs:1']; train()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    saved = next(tmp_path.glob(f"ppo/{CONDITIONING}_1/{CONDITIONING}/config.yml"))
    config = dict(yaml.load(saved.read_text(), Loader=yaml.UnsafeLoader))
    assert config["learning_rate"] == "lin_1e-3" and config["n_steps"] == 64


# ------------------------------------------------------------------------------------------------ grid end to end
GRID_ARGS = [
    "--envs", CONDITIONING, PATTERNS,
    "--algos", "ppo", "brain", "random",
    "--seeds", "0", "1",
    "--timesteps", "512",
    "--n-envs", "2",
    "--hyperparams", "ppo.n_steps=64", "ppo.batch_size=64", "ppo.n_epochs=1", "brain.neurons_per_region=10",
    "env_kwargs={trials_per_episode: 1}",
    "--eval-episodes", "2", "--curve-episodes", "2", "--n-evaluations", "2",
    "--jobs", "2", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[compare.RunOutcome]]:
    """The tiny grid through its API plus one run that fails, then a rerun through the command line."""
    out = tmp_path_factory.mktemp("grid")
    args = compare.build_parser().parse_args(GRID_ARGS)
    specs, notes = compare.plan_grid(
        args.envs, args.algos, args.seeds, timesteps=512, n_envs=2,
        hyperparams=parse_hyperparams(args.hyperparams), eval_episodes=2, curve_episodes=2, n_evaluations=2,
    )  # fmt: skip
    assert len(specs) == 12 and not notes
    failing = train_script.RunSpec(
        env_id=PATTERNS, algo="ppo", seed=7, timesteps=256, hyperparams={"policy_kwargs": "dict(net_arch=undefined)"}
    )
    outcomes = compare.run_grid([failing, *specs], out, jobs=2, progress=False)
    return out, outcomes


def test_grid_records_a_failing_run_and_goes_on(grid: tuple[Path, list[compare.RunOutcome]]) -> None:
    out, outcomes = grid
    status = {(o.env_id, o.algo, o.seed): o.status for o in outcomes}
    assert status.pop((PATTERNS, "ppo", 7)) == "failed"
    assert set(status.values()) == {"finished"} and len(status) == 12
    failed_dir = next(out.glob(f"{PATTERNS}__ppo__7__*"))
    recorded = json.loads((failed_dir / "status.json").read_text())
    assert recorded["status"] == "failed" and "undefined" in recorded["error"] and "Traceback" in recorded["traceback"]


def test_grid_outputs_table_csv_figures_and_tensorboard(grid: tuple[Path, list[compare.RunOutcome]]) -> None:
    out, _ = grid
    assert compare.main([*GRID_ARGS, "--out", str(out)]) == 0  # the rerun: everything already finished
    assert len([p for p in out.iterdir() if p.is_dir()]) == 13  # no new run directories
    import csv

    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 * 2  # finished runs × evaluation episodes
    for column in ("env", "algo", "seed", "model", "episode", "return", "length", "discrimination", "accuracy"):
        assert column in rows[0]
    assert {row["model"] for row in rows} == {"final"}
    summary = (out / "summary.md").read_text()
    assert f"## {CONDITIONING}" in summary and f"## {PATTERNS}" in summary
    assert "| algo | seeds | env steps | return | discrimination |" in summary
    assert "steps to 90% ref." in summary and "n/a (no reference run)" in summary
    assert "Runs that did not finish" in summary and "| ppo | 7 | failed |" in summary
    import matplotlib.image

    for env_id in (CONDITIONING, PATTERNS):
        image = matplotlib.image.imread(out / f"curves_{env_id}.png")
        assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 600

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    brain_dir = next(out.glob(f"{CONDITIONING}__brain__0__*"))
    events = EventAccumulator(str(brain_dir))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in (
        "rollout/ep_rew_mean",
        "rollout/accuracy",
        "train/td_error",
        "brain/weight_mean_mv",
        "eval/mean_reward",
    ):
        assert tag in tags, tag
    assert any(tag.startswith("brain/rate_hz/") for tag in tags)
    config = yaml.safe_load((brain_dir / "config.yaml").read_text())
    brain_config = config["hyperparameters"]["brain_config"]  # the brain the policy built: the agent's brain
    assert brain_config["neurons_per_region"] == 10  # a BrainConfig field, directly
    assert brain_config["pathways"] and brain_config["alif_roles"] and brain_config["device"] == "cpu"
    assert config["hyperparameters"]["rule"] == "reward_eprop"

    run_dir = next(out.glob(f"{CONDITIONING}__ppo__0__*"))
    events = EventAccumulator(str(run_dir))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("rollout/ep_rew_mean", "time/fps", "train/loss", "eval/mean_reward", "rollout/accuracy",
                "rollout/hit_rate", "rollout/false_alarm_rate", "eval/accuracy"):  # fmt: skip
        assert tag in tags, tag
    assert max(e.step for e in events.Scalars("eval/mean_reward")) == 512
    random_dir = next(out.glob(f"{CONDITIONING}__random__0__*"))
    events = EventAccumulator(str(random_dir))
    events.Reload()
    assert [e.step for e in events.Scalars("eval/mean_reward")] == [0, 512]  # a horizontal line


def test_run_directory_layout_and_held_out_seeds(grid: tuple[Path, list[compare.RunOutcome]]) -> None:
    out, _ = grid
    run_dir = next(out.glob(f"{PATTERNS}__ppo__1__*"))
    for name in ("config.yaml", "model.zip", "monitor.csv", "eval.json", "evaluations.csv", "status.json"):
        assert (run_dir / name).exists(), name
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    resolved = config["hyperparameters"]
    assert resolved["n_steps"] == 64 and resolved["gamma"] == 0.95  # the override and the preset's value
    assert resolved["gae_lambda"] == 0.95 and resolved["clip_range"] == 0.2  # constructor defaults
    assert config["frame_stack"] == 2 and config["env_kwargs"] == SHORT
    assert config["versions"]["stable-baselines3"] and "commit" in (config["git"] or {"commit": None})
    evaluation = json.loads((run_dir / "eval.json").read_text())
    eval_seeds = {e["seed"] for e in evaluation["episodes"]}
    assert eval_seeds == set(evaluation_seeds(2))
    assert not eval_seeds & set(config["train_env_seeds"]) and config["train_env_seeds"] == [1000, 1001]
    assert set(evaluation["episodes"][0]["metrics"]) >= {"accuracy", "abort_rate"}
    assert evaluation["deterministic"] is True  # SB3's learners: the greedy policy
    brain_evaluation = json.loads((next(out.glob(f"{PATTERNS}__brain__1__*")) / "eval.json").read_text())
    assert brain_evaluation["deterministic"] is True  # the PatternRecognition preset's gated head: its mode
    conditioning_brain = json.loads((next(out.glob(f"{CONDITIONING}__brain__0__*")) / "eval.json").read_text())
    assert conditioning_brain["deterministic"] is False  # a softmax head: its sampled policy, as it acts
    monitor = (run_dir / "monitor.csv").read_text().splitlines()
    assert monitor[0].startswith("#") and monitor[1] == "r,l,t" and len(monitor) > 3  # training episodes ended


def test_the_brain_is_evaluated_sampled_with_discrete_actions_and_at_the_mean_with_continuous_ones() -> None:
    box, discrete = gym.spaces.Box(-1.0, 1.0, (2,)), gym.spaces.Discrete(3)
    brain, ppo = get_algorithm("brain"), get_algorithm("ppo")
    assert brain.deterministic_eval(box) and not brain.deterministic_eval(discrete)
    assert ppo.deterministic_eval(box) and ppo.deterministic_eval(discrete)
    spec = train_script.RunSpec(algo="brain", env_id=CONDITIONING, seed=0, deterministic_eval=True)
    assert train_script._deterministic(spec, discrete)  # the spec's choice wins


def test_summary_table_statistics() -> None:
    def run(algo: str, seed: int, returns: list[float], curve: list[tuple[int, float]]) -> report.RunRecord:
        episodes = [{"seed": EVAL_SEED_BASE + i, "return": r, "length": 10, "metrics": {"accuracy": r / 20}}
                    for i, r in enumerate(returns)]  # fmt: skip
        rows = [{"timesteps": t, "return": v} for t, v in curve]
        return report.RunRecord(Path(f"{algo}{seed}"), PATTERNS, algo, seed, "finished", None,
                                {"timesteps": 1000, "episodes": episodes}, rows, 60.0)  # fmt: skip

    runs = [
        run("ppo", 0, [10.0, 12.0], [(0, 0.0), (500, 18.0), (1000, 19.0)]),
        run("ppo", 1, [14.0, 16.0], [(0, 0.0), (500, 5.0), (1000, 18.5)]),
        run("ppo", 2, [18.0, 20.0], [(0, 19.0), (500, 5.0), (1000, 6.0)]),  # above at first, lost: not counted
        run("reference", 0, [20.0, 20.0], []),
    ]
    text = report.summary_markdown(runs)
    ppo_row = next(line for line in text.splitlines() if line.startswith("| ppo |"))
    # seeds' means 11, 15, 19 → 15 ± t(0.975, 2)·4/√3 = 15 ± 9.94; accuracy 0.75 ± 0.497
    assert "| 15.00 ± 9.94 | 0.750 ± 0.497 |" in ppo_row
    reached = format_mean_ci(*mean_ci([500, 1000]), digits=0)  # threshold 18: reached at 500 and 1000
    assert f"{reached} (2/3)" in ppo_row and reached.startswith("750 ± ")
    assert math.isnan(report.steps_to_threshold(runs[2], 18.0))
    best = run("ppo", 0, [20.0, 20.0], [])
    best.evaluation["model_selection"] = {"mode": "best", "timesteps": 500}
    rows = [line for line in report.summary_markdown([*runs, best]).splitlines() if line.startswith("| ppo")]
    assert len(rows) == 2 and rows[0] == ppo_row and rows[1].startswith("| ppo (best) | 1 | 1,000 | 20.00 |")


# ------------------------------------------------------------------------------------------------ model selection
class _StepModel:
    """Stands in for a learner in BestModelKeeper: its saved file says at which step it was saved."""

    def __init__(self) -> None:
        self.num_timesteps = 0

    def save(self, path: Path) -> None:
        Path(path).write_text(str(self.num_timesteps))

    def get_vec_normalize_env(self) -> None:
        return None


def test_best_model_keeper_keeps_the_highest_validation_return(tmp_path: Path) -> None:
    model = _StepModel()
    keeper = train_script.BestModelKeeper(model, tmp_path)

    def validated(step: int, returns: list[float]) -> None:
        model.num_timesteps = step
        keeper.consider(step, [EpisodeResult(VALIDATION_SEED_BASE + i, r, 10, {}) for i, r in enumerate(returns)])

    validated(0, [0.0, 1.0])
    validated(100, [3.0, 2.0])  # best: mean 2.5
    validated(200, [2.5, 2.5])  # a tie does not replace it
    validated(300, [1.0, 1.0])
    record = json.loads((tmp_path / "best.json").read_text())
    assert record == {"timesteps": 100, "validation_mean_return": 2.5, "validation_episodes": 2,
                      "validation_seeds_start": VALIDATION_SEED_BASE}  # fmt: skip
    assert (tmp_path / "best" / "model.zip").read_text() == "100"
    resumed = train_script.BestModelKeeper(model, tmp_path)  # --resume: the record survives
    model.num_timesteps = 400
    resumed.consider(400, [EpisodeResult(VALIDATION_SEED_BASE, 2.0, 10, {})])
    assert (tmp_path / "best" / "model.zip").read_text() == "100"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_select_model_best_scores_the_validated_checkpoint_on_held_out_episodes(tmp_path: Path) -> None:
    """PPO with VecNormalize on CPGGait: eval.json scores best/ (with its own normalisation statistics), chosen
    on validation seeds that no held-out or training episode uses."""
    spec = train_script.RunSpec(
        env_id="Encephagen-CPGGait-v0", algo="ppo", seed=0, timesteps=256, n_envs=2,
        hyperparams={**TINY_PPO, "env_kwargs": {"episode_s": 1.0}}, eval_episodes=2, curve_episodes=2,
        n_evaluations=4, select_model="best", validation_episodes=2,
    )  # fmt: skip
    run_dir = train_script.train(spec, tmp_path)
    record = json.loads((run_dir / "best.json").read_text())
    evaluation = json.loads((run_dir / "eval.json").read_text())
    assert evaluation["model_selection"]["mode"] == "best"
    assert evaluation["model_selection"]["timesteps"] == record["timesteps"] in (0, 64, 128, 192, 256)
    assert "final_model_mean_return" in evaluation["model_selection"] and evaluation["timesteps"] == 256
    assert record["validation_seeds_start"] == VALIDATION_SEED_BASE
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    validation_seeds = {VALIDATION_SEED_BASE + i for i in range(2)}
    assert not validation_seeds & ({e["seed"] for e in evaluation["episodes"]} | set(config["train_env_seeds"]))

    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    venv = make_vec_env(spec.env_id, 2, env_kwargs={"episode_s": 1.0}, evaluation=True,
                        normalize_kwargs={"gamma": 0.99})  # fmt: skip
    statistics = VecNormalize.load(str(run_dir / "best" / "vecnormalize.pkl"), make_vec_env(spec.env_id, 2))
    venv.obs_rms = statistics.obs_rms
    again = evaluate_episodes(PPO.load(run_dir / "best" / "model.zip"), venv)
    assert [r.ret for r in again] == pytest.approx([e["return"] for e in evaluation["episodes"]], abs=1e-5)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert [e.step for e in events.Scalars("validation/mean_reward")] == [0, 64, 128, 192, 256]
    with pytest.raises(ValueError, match="select_model"):
        train_script.RunSpec(env_id=PATTERNS, algo="ppo", select_model="last")


# ------------------------------------------------------------------------------------------------ resume, Ray
def test_train_resume_continues_from_the_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = train_script.RunSpec(
        env_id=PATTERNS, algo="ppo", seed=3, timesteps=512, n_envs=2,
        hyperparams={**TINY_PPO, "env_kwargs": SHORT}, eval_episodes=2, curve_episodes=2, n_evaluations=2,
        n_checkpoints=4,
    )  # fmt: skip
    real_save = train_script.save_checkpoint
    calls = []

    def crash_after_first_checkpoint(model, run_dir):  # the process "dies" right after a checkpoint
        real_save(model, run_dir)
        calls.append(model.num_timesteps)
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(train_script, "save_checkpoint", crash_after_first_checkpoint)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_script.train(spec, tmp_path)
    monkeypatch.undo()
    run_dir = next(tmp_path.iterdir())
    assert json.loads((run_dir / "status.json").read_text())["status"] == "failed"
    assert not (run_dir / "eval.json").exists() and calls == [128]
    monitor_rows = len((run_dir / "monitor.csv").read_text().splitlines())

    train_script.main(["--resume", str(run_dir), "--no-progress", "--threads", "1"])
    status = json.loads((run_dir / "status.json").read_text())
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert status["status"] == "finished" and status["num_timesteps"] == 512
    assert config["resumed_from_step"] == 128 and config["segment"] == 1
    assert config["train_env_seeds"] == [3000, 3001, 3100, 3101]  # the resumed segment gets new env seeds
    steps = sorted({row["timesteps"] for row in train_script.read_rows_csv(run_dir / "evaluations.csv")})
    assert steps[0] == 0 and steps[-1] == 512 and all(s == 0 or s > 128 for s in steps)
    monitor = (run_dir / "monitor.csv").read_text().splitlines()
    assert len(monitor) > monitor_rows and monitor.count("r,l,t") == 1  # appended, one header


def test_ray_backend_runs_a_grid(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason='Ray is an optional extra: pip install -e ".[ray]"')
    specs, _ = compare.plan_grid(
        [PATTERNS], ["ppo", "reference"], [0], timesteps=128, n_envs=2,
        hyperparams={**{f"ppo.{k}": v for k, v in TINY_PPO.items()}, "env_kwargs": SHORT},
        eval_episodes=2, curve_episodes=2, n_evaluations=1,
    )  # fmt: skip
    outcomes = compare.run_grid(specs, tmp_path, jobs=2, backend="ray", progress=False)
    assert sorted((o.algo, o.status) for o in outcomes) == [("ppo", "finished"), ("reference", "finished")]
    for outcome in outcomes:
        assert (Path(outcome.run_dir) / "eval.json").exists()


def test_ray_backend_without_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ImportError, match=r'pip install -e "\.\[ray\]"'):
        compare.run_grid([], tmp_path, backend="ray")


GRID_PROCESS = """
import concurrent.futures, multiprocessing, os, sys, time
from encephagen_gym.scripts import compare
if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        1, mp_context=context, initializer=compare._init_worker, initargs=(os.getpid(),)
    ) as pool:
        print(pool.submit(os.getpid).result(), flush=True)
        pool.submit(time.sleep, 600)
        time.sleep(600)
"""


def test_grid_workers_end_when_the_grid_process_is_killed() -> None:
    """A killed ``encephagen-compare`` must not leave its workers running (they went on writing into the grid)."""
    grid = subprocess.Popen([sys.executable, "-c", GRID_PROCESS], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(grid.stdout.readline())
        assert _alive(worker)
    finally:
        grid.kill()
        grid.wait()
    deadline = time.monotonic() + 20
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(worker)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet reaped by its new parent, counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
