"""``BrainAgent``: the connectome spiking brain as a stable-baselines3 algorithm that learns online with local
plasticity — used exactly like PPO, with no optimizer and no rollout buffer (sb3-contrib's ``ARS`` is the
model for an algorithm of that kind).

Every environment step, for the B = ``num_envs`` brains that share one set of weights (as parallel envs
share one PPO policy):

1. encode the observation into input current and run ``step_ms / dt_ms`` brain steps; after each, every
   learning rule updates its traces from the step's spikes and membrane potentials;
2. read the actor-critic readout (policy and value) and credit the *previous* decision:
   δ = r + γ V(s') − V(s) (V(s') = 0 when the episode terminated; the value of the terminal observation
   when a time limit cut it), applied by every rule with the third factor M = δ scaled to unit size
   (:class:`~encephagen_gym.plasticity.neuromodulation.TDErrorScaler`); learning averages over the batch;
3. sample the action, and let every rule record the decision (learning signals into its traces);
4. step the envs. Where an episode ended, its last decision is credited at once, and its brain restarts:
   a fresh brain state (its noise stream continues) and cleared traces — the next episode is a new trial
   for a brain that keeps what it learned (its weights), not its activity.

Rules (``rule=``): ``"reward_eprop"`` (default; reward-based e-prop on the plastic projection and the
readout's actor-critic), ``"rstdp"`` (three-factor STDP gated by M, and the readout's actor-critic), and two
controls on the same code path: ``"readout_only"`` (the brain is a frozen reservoir; the readout learns) and
``"frozen"`` (nothing learns). ``homeostasis=True`` adds synaptic scaling of the plastic projection's
targets. Null-model wiring is a brain option: ``policy_kwargs=dict(connectome="tvb96:rewired:3")``.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pathlib
import sys
import time
from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule, safe_mean

from encephagen_gym.agents.episode_metrics import EpisodeMetrics
from encephagen_gym.agents.policies import ConnectomePolicy, ConnectomeState, check_spaces
from encephagen_gym.brain import BrainConfig, clone_state
from encephagen_gym.plasticity import (
    CHOICE_AVERAGES,
    DEFAULT_PLASTIC_PAIRS,
    ELIGIBILITY_MODES,
    Decision,
    LearningSignal,
    ReadoutActorCritic,
    ReadoutLearningConfig,
    RewardEProp,
    RewardModulatedSTDP,
    SynapticScaling,
    TDErrorScaler,
    incoming_projection,
    pathway_projection,
    select_projection,
    td_error,
)
from encephagen_gym.plasticity.validation import check_rate

__all__ = ["READOUT_DEFAULTS", "RULES", "TD_SCALE_STEPS", "BrainAgent"]

SelfBrainAgent = TypeVar("SelfBrainAgent", bound="BrainAgent")

#: The learning rules ``BrainAgent(rule=...)`` accepts (see the module docstring).
RULES = ("reward_eprop", "rstdp", "readout_only", "frozen")

#: Which steps set the TD error's running RMS (``BrainAgent(td_scale_steps=...)``).
TD_SCALE_STEPS = ("all", "outcomes")

#: ``readout_learning_rate`` and ``entropy_coef`` when left at None, by action space (see ``BrainAgent``).
READOUT_DEFAULTS: dict[str, dict[str, float]] = {
    "discrete": {"readout_learning_rate": 1.0, "entropy_coef": 0.01},
    "continuous": {"readout_learning_rate": 0.1, "entropy_coef": 0.0},
}

_RUNTIME = ("rules", "td_scaler", "_train", "_metrics", "_brain_generator", "_action_generator", "_role_neuron_cache")


@dataclasses.dataclass(eq=False)
class _TrainingState:
    """What carries over between env steps while learning (on the device)."""

    state: ConnectomeState
    traces: list
    count_start: torch.Tensor  # the brains' spike counts at the start of the logging window
    step_start: int = 0
    value: torch.Tensor | None = None  # V(s) of the last decision
    pending: tuple | None = None  # (value, reward, terminated, credited) of the decision not yet credited
    sums: dict = dataclasses.field(default_factory=dict)
    decisions: int = 0
    updates: int = 0


class BrainAgent(BaseAlgorithm):
    """The connectome-wired spiking brain, learning online with local plasticity (see the module docstring).

    :param policy: ``"ConnectomePolicy"`` (or the class).
    :param env: the environment (a VecEnv, a Gymnasium env or its id). Flat ``Box`` observations; ``Discrete``
        or ``Box`` actions.
    :param learning_rate: η of the recurrent plastic weights (mV per unit of third factor × eligibility;
        ``"reward_eprop"``), or of R-STDP (``"rstdp"``); a float or a schedule of the remaining progress.
        Default 10, measured on the cue bandit (96×20, 100 ms decisions): 3 learned more slowly, 30–100 drove
        weights to their bounds without learning.
    :param readout_learning_rate: α_π of the readout's policy weights (float or schedule; the steps are
        normalised by the inputs' running squared norm, as in normalised LMS, so 1 is a full step). None: 1 for
        discrete actions, measured on the cue bandit (96×20, 8 envs, seed 0, accuracy of the sampled policy
        after 10 k steps): 0.1 → 0.53, 0.4 → 0.60, 1.0 → 0.63 (chance 0.5); 0.1 for continuous actions,
        measured on CPGGait (96×20, 16 envs, seed 0, 50 k steps): at 1, σ swung between 0.14 and 0.88 and the
        held-out speed error rose from 0.099 untrained to 0.12–0.21; at 0.1 it stayed at 0.08–0.10 and σ moved
        only with the entropy bonus.
    :param value_learning_rate: α_V of the readout's value weights (one update moves V by ≈ α_V · δ).
    :param rule: ``"reward_eprop"``, ``"rstdp"``, ``"readout_only"`` or ``"frozen"``.
    :param gamma: discount per environment step.
    :param gae_lambda: λ of the eligibility traces across decisions (γλ is their decay per step). Default 0.5,
        measured on Conditioning (10 ms decisions; one scored response in a 300 ms window after a 200 ms trace)
        with the readout reading visual cortex through a 200 ms filter (the reservoir ceiling; 96×20, 16 envs):
        λ = 0.95 settled in "respond in every window" (hit and false alarm 1.00 at 100 k steps, seed 0); λ = 0.5
        reached discrimination 0.97, 0.88, 0.95 at 200 k (seeds 0–2). Near 1, the traces spread each scored
        response's credit over the unscored decisions before it.
    :param entropy_coef: weight of the policy-entropy bonus. None: 0.01 for discrete actions; 0 for continuous
        ones, as SB3's PPO (with a state-independent σ the bonus is a constant push on log σ, which at
        α_π = 0.1 took σ from 0.6 to its bound 1 within 50 k steps on CPGGait; without it σ stayed at 0.55–0.6).
    :param value_coef: weight of the value learning signal in the recurrent e-prop update (default 0: the
        readout's critic learns its own weights; through random feedback the value signal has a fixed sign per
        neuron and, measured on the cue bandit, drove the plastic weights to their bounds).
    :param plastic_pairs: region-role pairs whose synapses (all of them) learn; default: the brain's pathway
        synapses (:func:`~encephagen_gym.plasticity.pathway_projection`; the agent's default brain has the
        pathways of :data:`~encephagen_gym.brain.routing.AGENT_PATHWAYS`), or
        :data:`~encephagen_gym.plasticity.DEFAULT_PLASTIC_PAIRS` for a brain without pathways; pairs without
        synapses are skipped.
    :param feedback: ``"random"`` or ``"symmetric"`` feedback weights of e-prop's learning signals.
    :param eligibility: ``"exact"`` (default) or ``"midpoint"``: reward e-prop's eligibility ē advanced once per
        decision with each synapse's presynaptic trace held at its mid-decision value (ψ still per step) — an
        approximation that cuts the per-synapse pass three- to fivefold at batch 1 (README, the agent section).
    :param stdp_kwargs: options of :class:`~encephagen_gym.plasticity.StdpConfig` for ``"rstdp"``.
    :param homeostasis: add synaptic scaling of the excitatory inputs of the plastic projection's targets.
    :param homeostasis_kwargs: options of :class:`~encephagen_gym.plasticity.ScalingConfig`.
    :param td_scale_tau: time constant (env steps) of the TD error's running RMS.
    :param td_scale_steps: which steps set that RMS: ``"all"`` (default) or ``"outcomes"`` (only steps with a
        nonzero reward or an episode end; every step is still scaled by it). With rare rewards the RMS over all
        steps is dominated by event-free ones, so an early abort penalty (−0.1) reaches the actor at the clip and
        weighs as much as a correct answer (+1). Measured on PatternRecognition (seed 0, the Conditioning preset's
        brain, cue into the basal ganglia, 3 Hz initial go rate, 150 k steps): with ``"all"`` it stops answering
        (no response 0.99); with ``"outcomes"`` it answers in the decision window (no response 0.00; the
        PatternRecognition preset in ``agents/hyperparams/brain.yml``).
    :param td_scale_floor: the least divisor of the TD error (in reward units; default 0: none): M = δ /
        max(RMS, floor). With ``"outcomes"`` and a task whose first outcomes are all small penalties, their own
        RMS scales each to unit size and a gated head learns to withhold everywhere before any answer pays; a
        floor near the task's reward keeps them small beside it.
    :param choice_average: how a gated readout's choice head (``policy_kwargs=dict(action_head="gated")``)
        averages its steps: over the batch's acting decisions (``"acted"``, default) or over the batch like every
        other row (``"batch"``; see :mod:`~encephagen_gym.plasticity.readout_rule`). Ignored without a gate.
    :param choice_step_ratio: a gated readout's choice head steps at this ratio times ``readout_learning_rate``
        (following its schedule); the gate and the value keep theirs. Ignored without a gate.
    :param choice_learning: how a gated readout's choice head learns: ``"policy_gradient"`` (default: the
        actor's rule) or ``"values"`` (each choice's value Q, chosen by softmax(Q / ``choice_temperature``),
        learned by a delta rule towards r + γ V(s') at ``choice_value_rate``; faster from reward alone; see
        :mod:`~encephagen_gym.plasticity.readout_rule`). Ignored without a gate.
    :param choice_temperature: T of ``choice_learning="values"`` (reward units): the choice's exploration.
    :param choice_value_rate: α_Q of ``choice_learning="values"``: one choice moves its value by ≈ α_Q times
        its prediction error.
    :param td_gain: factor on the TD error before any rule sees it: 1 normally; 0 is the zero-TD control (the
        same code path, no reward information: only the entropy bonus moves the weights).
    :param step_ms: duration of one env step in ms, for envs that do not say (``env.unwrapped.step_ms``, or
        Gymnasium's ``dt`` in seconds); the brain runs ``step_ms / dt_ms`` steps per decision.
    :param policy_kwargs: options of :class:`~encephagen_gym.agents.policies.ConnectomePolicy`, including
        any :class:`~encephagen_gym.brain.BrainConfig` field (``neurons_per_region=20``, ``connectome=...``)
        or a whole ``brain=BrainConfig(...)``.
    :param stats_window_size: episodes averaged for ``rollout/*``.
    :param tensorboard_log: TensorBoard log directory (None: no TensorBoard).
    :param verbose: 0 silent, 1 training logs to stdout.
    :param seed: seeds everything: the wiring (unless the brain config gives ``wiring_seed``), the readout,
        the brains' initial states and noise, the action sampling, the envs.
    :param device: ``"auto"``, ``"cpu"`` or ``"cuda"``: on CUDA the brain runs on the torch backend, on the
        CPU on the compiled numba one.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"ConnectomePolicy": ConnectomePolicy}
    policy: ConnectomePolicy

    def __init__(
        self,
        policy: str | type[ConnectomePolicy],
        env: GymEnv | str | None,
        learning_rate: float | Schedule = 10.0,
        readout_learning_rate: float | Schedule | None = None,
        value_learning_rate: float = 0.1,
        rule: str = "reward_eprop",
        gamma: float = 0.99,
        gae_lambda: float = 0.5,
        entropy_coef: float | None = None,
        value_coef: float = 0.0,
        plastic_pairs: Sequence[tuple[str, str]] | None = None,
        feedback: str = "random",
        eligibility: str = "exact",
        stdp_kwargs: dict[str, Any] | None = None,
        homeostasis: bool = False,
        homeostasis_kwargs: dict[str, Any] | None = None,
        td_scale_tau: float = 1000.0,
        td_scale_steps: str = "all",
        td_scale_floor: float = 0.0,
        choice_average: str = "acted",
        choice_step_ratio: float = 1.0,
        choice_learning: str = "policy_gradient",
        choice_temperature: float = 0.1,
        choice_value_rate: float = 0.3,
        td_gain: float = 1.0,
        step_ms: float | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: torch.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            support_multi_env=True,
            seed=seed,
        )
        if self.env is not None:
            check_spaces(self.observation_space, self.action_space)
        self.rule = rule
        self.readout_learning_rate = readout_learning_rate
        self.value_learning_rate = value_learning_rate
        self.gamma = gamma
        self.gae_lambda = gae_lambda
        self.entropy_coef = entropy_coef
        self.value_coef = value_coef
        self.plastic_pairs = None if plastic_pairs is None else tuple(tuple(pair) for pair in plastic_pairs)
        self.feedback = feedback
        if eligibility not in ELIGIBILITY_MODES:
            raise ValueError(f"eligibility must be one of {ELIGIBILITY_MODES}, got {eligibility!r}")
        self.eligibility = eligibility
        self.stdp_kwargs = dict(stdp_kwargs or {})
        self.homeostasis = bool(homeostasis)
        self.homeostasis_kwargs = dict(homeostasis_kwargs or {})
        self.td_scale_tau = td_scale_tau
        if td_scale_steps not in TD_SCALE_STEPS:
            raise ValueError(f"td_scale_steps must be one of {TD_SCALE_STEPS}, got {td_scale_steps!r}")
        self.td_scale_steps = td_scale_steps
        self.td_scale_floor = check_rate("td_scale_floor", td_scale_floor)
        if choice_average not in CHOICE_AVERAGES:
            raise ValueError(f"choice_average must be one of {CHOICE_AVERAGES}, got {choice_average!r}")
        self.choice_average = choice_average
        self.choice_step_ratio = check_rate("choice_step_ratio", choice_step_ratio)
        # checked here, before any brain is built (ReadoutLearningConfig checks the same)
        ReadoutLearningConfig(choice_learning=choice_learning, choice_temperature=choice_temperature,
                              choice_value_rate=choice_value_rate)  # fmt: skip
        self.choice_learning = choice_learning
        self.choice_temperature = float(choice_temperature)
        self.choice_value_rate = float(choice_value_rate)
        self.td_gain = float(td_gain)
        self.step_ms = step_ms
        self._learning_state: dict[str, Any] | None = None
        for name in ("gamma", "gae_lambda"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
        if _init_setup_model:
            self._setup_model()

    # ----------------------------------------------------------------------------------------- set-up

    def _env_attr(self, name: str) -> Any:
        """``name`` of the first sub-env (through wrappers), or None if it has none."""
        if self.env is None:
            return None
        try:
            return self.env.get_attr(name, indices=[0])[0]
        except AttributeError:
            return None

    def _env_options(self) -> dict[str, Any]:
        """The policy options that come from the env: step duration, observation layout, withhold action."""
        options: dict[str, Any] = {}
        step_ms = self.step_ms if self.step_ms is not None else self._env_attr("step_ms")
        if step_ms is None and isinstance(self._env_attr("dt"), int | float):
            step_ms = 1000.0 * float(self._env_attr("dt"))  # Gymnasium's dt is in seconds
        if step_ms is not None:
            options["step_ms"] = float(step_ms)
        layout = self._env_attr("observation_layout")
        if layout is not None:
            options["observation_layout"] = {name: (s.start, s.stop) for name, s in dict(layout).items()}
        withhold = self._env_attr("withhold_action")
        if withhold is not None and isinstance(self.action_space, spaces.Discrete):
            options["withhold_action"] = int(withhold)
        return options

    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        defaults = READOUT_DEFAULTS["continuous" if isinstance(self.action_space, spaces.Box) else "discrete"]
        for name, value in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        self.readout_lr_schedule = FloatSchedule(self.readout_learning_rate)
        self.set_random_seed(self.seed)
        stored = dict(self.policy_kwargs)
        if "device" in stored:
            raise ValueError("give the device to BrainAgent(..., device=...), not in policy_kwargs")
        env_options = self._env_options()
        if "step_ms" in stored and "step_ms" in env_options and stored["step_ms"] != env_options["step_ms"]:
            raise ValueError(
                f"this model runs {stored['step_ms']} ms per decision but the env steps {env_options['step_ms']} ms"
            )
        for key, value in env_options.items():
            stored.setdefault(key, value)
        if "step_ms" not in stored:
            raise ValueError(
                "the env does not say how long one of its steps lasts (no step_ms or dt attribute): pass "
                "BrainAgent(..., step_ms=...) in ms"
            )
        stored.setdefault("seed", 0 if self.seed is None else int(self.seed))
        self.policy_kwargs = stored  # saved with the model, so that it can be rebuilt without the env
        self.policy = self.policy_class(self.observation_space, self.action_space, self.lr_schedule,
                                        device=self.device, **self.policy_kwargs)  # fmt: skip
        # keep the brain as one resolved config (with its wiring seed): the saved model says exactly which brain
        brain_fields = {field.name for field in dataclasses.fields(BrainConfig)}
        # "seed" is also the policy's own seed; association_inputs only chose the brain's pathways
        brain_fields = (brain_fields - {"seed"}) | {"wiring_seed", "association_inputs"}
        self.policy_kwargs = {key: value for key, value in stored.items() if key not in brain_fields}
        self.policy_kwargs["brain"] = dataclasses.replace(self.policy.brain.config, device="auto")
        self.rules = self._make_rules()
        self.td_scaler = TDErrorScaler(self.td_scale_tau, device=self.policy.brain.device, floor=self.td_scale_floor)
        self._train: _TrainingState | None = None
        self._metrics = EpisodeMetrics(self._stats_window_size)
        if self._learning_state is not None:
            self._restore_learning_state(self._learning_state)

    def _make_rules(self) -> list:
        policy = self.policy
        network, weights, readout = policy.network, policy.brain.weights, policy.readout
        seed = int(self.policy_kwargs["seed"])
        rules: list = []
        if self.rule != "frozen":
            rules.append(ReadoutActorCritic(readout, gamma=self.gamma, trace_decay=self.gae_lambda,
                                            learning_rate=self.readout_lr_schedule(1.0),
                                            value_learning_rate=self.value_learning_rate,
                                            entropy_coef=self.entropy_coef,
                                            choice_average=self.choice_average,
                                            choice_step_ratio=self.choice_step_ratio,
                                            choice_learning=self.choice_learning,
                                            choice_temperature=self.choice_temperature,
                                            choice_value_rate=self.choice_value_rate))  # fmt: skip
        projection = None
        if self.rule in ("reward_eprop", "rstdp"):
            if self.plastic_pairs is None and bool(network.is_pathway.any()):
                projection = pathway_projection(network, weights)
            else:
                pairs = self.plastic_pairs or DEFAULT_PLASTIC_PAIRS
                projection = select_projection(network, weights, pairs, skip_empty=True)
            if self.rule == "reward_eprop":
                rules.append(RewardEProp(network, projection, readout, gamma=self.gamma,
                                         trace_decay=self.gae_lambda, learning_rate=self.lr_schedule(1.0),
                                         value_coef=self.value_coef, entropy_coef=self.entropy_coef,
                                         feedback=self.feedback, eligibility=self.eligibility,
                                         seed=seed))  # fmt: skip
            else:
                rules.append(RewardModulatedSTDP(network, projection, **self.stdp_kwargs))
        if self.homeostasis:
            post_roles = sorted({post for _, post in (projection.pairs if projection else DEFAULT_PLASTIC_PAIRS)})
            targets = incoming_projection(network, weights, [r for r in post_roles if r in set(network.roles)])
            rules.append(SynapticScaling(network, targets, **self.homeostasis_kwargs))
        return rules

    def set_random_seed(self, seed: int | None = None) -> None:
        """Seed Python, NumPy, torch, the envs and the agent's own generators (brain states, actions)."""
        super().set_random_seed(seed)
        base = 0 if seed is None else int(seed)
        self._brain_generator = torch.Generator(device=self.device)
        self._brain_generator.manual_seed(base * 1_000_003 + 1)
        self._action_generator = torch.Generator(device=self.device)
        self._action_generator.manual_seed(base * 1_000_003 + 2)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), *_RUNTIME]

    @property
    def greedy_evaluation(self) -> bool:
        """Whether held-out evaluation should use the greedy policy (``deterministic=True``), as
        ``encephagen-train`` does: with continuous actions (the Gaussian's mean) and with a gated head (act when
        the gate's "go" is the more probable, then the most probable choice — the policy's mode), not with a
        softmax head over discrete actions, whose argmax never leaves the withhold default (a policy that
        responds in a window with probability p < 0.5 per step has a greedy version that never responds), so it
        is evaluated as it acts, sampled. Measured on PatternRecognition (2 mV pathways and a gated head, 5 seeds at
        500 k, the same 20 held-out episodes): greedy 0.34 ± 0.07 against sampled 0.20 ± 0.08 (aborts 0.03–0.07
        against 0.35–0.46)."""
        return self.policy.readout.continuous or self.policy.readout.gate_action is not None

    # ----------------------------------------------------------------------------------------- learning

    def _start_training(self) -> _TrainingState:
        batch = self.env.num_envs
        state = self.policy.initial_state(batch, self._brain_generator)
        return _TrainingState(
            state=state,
            traces=[rule.init_traces(batch) for rule in self.rules],
            count_start=state.brain.spike_count.clone(),
            step_start=state.brain.step,
        )

    def _role_neurons(self) -> dict[str, torch.Tensor]:
        """Excitatory neurons of each role (for the ``brain/rate_hz/<role>`` logs), made once."""
        if getattr(self, "_role_neuron_cache", None) is None:
            network = self.policy.network
            self._role_neuron_cache = {role: network.neurons_with_role(role, excitatory_only=True)
                                       for role in sorted(set(network.roles))}  # fmt: skip
        return self._role_neuron_cache

    def _on_substep(self, brain_state) -> None:
        train = self._train
        for rule, traces in zip(self.rules, train.traces, strict=True):
            rule.step(traces, brain_state)

    def _credit(self, delta: torch.Tensor, include: torch.Tensor | None, done: torch.Tensor | None,
                elapsed_ms: float, outcome: torch.Tensor) -> None:  # fmt: skip
        """Apply every rule's update for TD errors ``delta`` (only elements where ``include`` is 1); ``outcome``
        marks the elements with a reward or an episode end (for ``td_scale_steps="outcomes"``)."""
        train = self._train
        delta = delta * self.td_gain
        if include is not None:
            delta = delta * include
        counted = outcome if self.td_scale_steps == "outcomes" else None
        modulator = self.td_scaler.scale(delta, include, counted)
        signal = LearningSignal(td_error=delta, modulator=modulator, done=done, elapsed_ms=elapsed_ms,
                                credited=include)  # fmt: skip
        weights = self.policy.brain.weights
        for rule, traces in zip(self.rules, train.traces, strict=True):
            diagnostics = rule.apply(weights, traces, signal)
            if rule.projection is not None and not isinstance(rule, SynapticScaling):
                _accumulate(train.sums, "weight_change_mv", diagnostics["mean_abs_dw_mv"])
        count = include.sum() if include is not None else torch.tensor(float(delta.numel()), device=delta.device)
        _accumulate(train.sums, "td_error", delta.sum())
        _accumulate(train.sums, "td_count", count)
        train.updates += 1

    def _decide(self) -> torch.Tensor:
        """Steps 1–3 of the module docstring for the current observations; returns the sampled actions."""
        train, policy = self._train, self.policy
        progress = self._current_progress_remaining
        for rule in self.rules:
            if isinstance(rule, ReadoutActorCritic):
                rule.learning_rate = self.readout_lr_schedule(progress)
            elif not isinstance(rule, SynapticScaling):
                rule.learning_rate = self.lr_schedule(progress)
        observation = policy.observation_tensor(self._last_obs)
        stepping = self._on_substep if any(rule.projection is not None for rule in self.rules) else None
        output = policy.advance(train.state, observation, update_statistics=True, on_substep=stepping)
        if train.pending is not None:
            value, reward, terminated, credited = train.pending
            delta = td_error(reward, terminated, value, output.value, self.gamma)
            self._credit(delta, 1.0 - credited, None, policy.step_ms, (reward != 0).to(delta.dtype))
        actions = policy.sample(output, deterministic=False, generator=self._action_generator)
        decision = Decision(output, actions, policy.readout.features(train.state.readout_trace))
        for rule, traces in zip(self.rules, train.traces, strict=True):
            rule.record_decision(traces, decision)
        train.value = output.value.detach().clone()
        _accumulate(train.sums, "value", train.value.mean())
        _accumulate(train.sums, "entropy", policy.readout.entropy(output).mean())
        train.decisions += 1
        return actions

    def _terminal_values(self, new_obs: np.ndarray, infos: list[dict], truncated: np.ndarray) -> torch.Tensor:
        """V of the terminal observations of the truncated episodes (0 elsewhere): one more decision's worth of
        brain time on a copy of the brains, nothing learned."""
        policy, train = self.policy, self._train
        terminal = np.array(new_obs, dtype=np.float32, copy=True)
        for i in np.flatnonzero(truncated):
            terminal[i] = infos[i]["terminal_observation"]
        copy = ConnectomeState(clone_state(train.state.brain), train.state.readout_trace.clone(),
                               torch.empty_like(train.state.current))  # fmt: skip
        output = policy.advance(copy, policy.observation_tensor(terminal))
        return output.value * torch.from_numpy(truncated.astype(np.float32)).to(output.value.device)

    def _after_env_step(self, new_obs: np.ndarray, rewards: np.ndarray, dones: np.ndarray, infos: list[dict]) -> None:
        """Step 4 of the module docstring."""
        train, device = self._train, self.policy.brain.device
        reward = torch.as_tensor(np.asarray(rewards, dtype=np.float32), device=device)
        if not bool(np.isfinite(rewards).all()):
            raise ValueError(f"the env returned a non-finite reward: {rewards}")
        dones = np.asarray(dones, dtype=bool)
        truncated = dones & np.array([bool(info.get("TimeLimit.truncated", False)) for info in infos])
        terminated = torch.as_tensor((dones & ~truncated).astype(np.float32), device=device)
        credited = torch.zeros_like(reward)
        if dones.any():
            done = torch.as_tensor(dones.astype(np.float32), device=device)
            bootstrap = self._terminal_values(new_obs, infos, truncated) if truncated.any() else 0.0
            delta = reward + self.gamma * bootstrap - train.value
            self._credit(delta, done, done, 0.0, done)
            mask = done.bool()
            self.policy.reset_state(train.state, mask, self._brain_generator)
            for rule, traces in zip(self.rules, train.traces, strict=True):
                rule.reset_traces(traces, mask)
            credited = done
        train.pending = (train.value, reward, terminated, credited)

    def learn(
        self: SelfBrainAgent,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 100,
        tb_log_name: str = "BrainAgent",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfBrainAgent:
        """Learn online for ``total_timesteps`` env steps (summed over the envs). Logs every ``log_interval``
        steps of the vectorised env (and at the end)."""
        if not isinstance(log_interval, int) or log_interval < 1:
            raise ValueError(f"log_interval must be a positive integer, got {log_interval!r}")
        restart = reset_num_timesteps or self._last_obs is None or self._train is None
        total_timesteps, callback = self._setup_learn(
            total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        if restart:
            self._train = self._start_training()
        callback.on_training_start(locals(), globals())
        assert self.env is not None
        steps_since_log = 0
        with torch.no_grad():
            while self.num_timesteps < total_timesteps:
                self._update_current_progress_remaining(self.num_timesteps, total_timesteps)
                actions = self._decide()
                clipped_actions = self.policy.env_actions(actions)
                new_obs, rewards, dones, infos = self.env.step(clipped_actions)
                self.num_timesteps += self.env.num_envs
                callback.update_locals(locals())
                if not callback.on_step():
                    break
                self._update_info_buffer(infos, dones)
                self._episode_num += int(np.sum(dones))
                self._metrics.update(infos, dones)
                self._after_env_step(new_obs, rewards, dones, infos)
                self._last_obs = new_obs
                self._last_episode_starts = dones
                steps_since_log += 1
                if steps_since_log >= log_interval:
                    self.dump_logs()
                    steps_since_log = 0
        if steps_since_log:
            self.dump_logs()
        callback.on_training_end()
        return self

    def dump_logs(self) -> None:
        """Write the logs: ``rollout/*`` (return, length, every task metric), ``time/*``, ``train/*`` and
        ``brain/*`` (rates per role, mean plastic weight), then start new averaging windows."""
        train = self._train
        elapsed = max((time.time_ns() - self.start_time) / 1e9, sys.float_info.epsilon)
        fps = int((self.num_timesteps - self._num_timesteps_at_start) / elapsed)
        if self.ep_info_buffer:
            self.logger.record("rollout/ep_rew_mean", safe_mean([ep["r"] for ep in self.ep_info_buffer]))
            self.logger.record("rollout/ep_len_mean", safe_mean([ep["l"] for ep in self.ep_info_buffer]))
        self._metrics.record(self.logger)
        self.logger.record("time/episodes", self._episode_num, exclude="tensorboard")
        self.logger.record("time/fps", fps)
        self.logger.record("time/time_elapsed", int(elapsed), exclude="tensorboard")
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        progress = self._current_progress_remaining
        self.logger.record("train/learning_rate", float(self.lr_schedule(progress)))
        self.logger.record("train/readout_learning_rate", float(self.readout_lr_schedule(progress)))
        readout = self.policy.readout
        if readout.continuous:  # σ of the Gaussian policy, SB3's tag
            self.logger.record("train/std", float(readout.log_std.exp().mean()))
        if train is not None:
            sums = {key: float(value) for key, value in train.sums.items()}
            if train.decisions:
                self.logger.record("train/value", sums.get("value", 0.0) / train.decisions)
                self.logger.record("train/entropy", sums.get("entropy", 0.0) / train.decisions)
            if sums.get("td_count", 0.0) > 0:
                self.logger.record("train/td_error", sums["td_error"] / sums["td_count"])
            if train.updates:
                self.logger.record("train/weight_change_mv", sums.get("weight_change_mv", 0.0) / train.updates)
                self.logger.record("train/n_updates", train.updates, exclude="tensorboard")
            brain_state = train.state.brain
            steps = brain_state.step - train.step_start
            if steps > 0:  # spikes counted inside the brain's step: no per-step logging work
                seconds = steps * self.policy.brain.dt_ms * 1e-3
                rates = (brain_state.spike_count - train.count_start).mean(dim=0) / seconds
                for role, neurons in self._role_neurons().items():
                    self.logger.record(f"brain/rate_hz/{role}", float(rates.index_select(0, neurons).mean()))
            train.count_start.copy_(brain_state.spike_count)
            train.step_start = brain_state.step
            train.sums.clear()
            train.decisions = train.updates = 0
        projection = next((rule.projection for rule in self.rules if rule.projection is not None), None)
        weights = self.policy.brain.weights
        mean_weight = weights.index_select(0, projection.synapses).mean() if projection is not None else weights.mean()
        self.logger.record("brain/weight_mean_mv", float(mean_weight))
        self.logger.dump(step=self.num_timesteps)

    # ----------------------------------------------------------------------------------------- save / load

    def _collect_learning_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"td_scaler": self.td_scaler.state_dict(),
                                 "predict_generator": self.policy.predict_generator.get_state()}  # fmt: skip
        for index, rule in enumerate(self.rules):
            if hasattr(rule, "state_dict"):
                state[f"rule_{index}"] = rule.state_dict()
        return {key: _to_cpu(value) for key, value in state.items()}

    def _restore_learning_state(self, state: dict[str, Any]) -> None:
        self.td_scaler.load_state_dict(_to_device(state["td_scaler"], self.policy.brain.device))
        self.policy.predict_generator.set_state(state["predict_generator"])
        for index, rule in enumerate(self.rules):
            if f"rule_{index}" in state:
                rule.load_state_dict(_to_device(state[f"rule_{index}"], self.policy.brain.device))

    def save(self, path: str | pathlib.Path | io.BufferedIOBase, exclude=None, include=None) -> None:
        """Save the model (weights, readout, encoder statistics, learning state, configuration and seed) to a
        zip file — atomically for a path: written to a temporary file beside it and renamed, so that a crash
        mid-save leaves any previous file intact. ``.zip`` is appended when missing, as SB3 does."""
        self._learning_state = self._collect_learning_state()
        if isinstance(path, io.BufferedIOBase):
            super().save(path, exclude, include)
            return
        target = pathlib.Path(path)
        if target.suffix != ".zip":
            target = target.with_name(target.name + ".zip")
        target.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        super().save(buffer, exclude, include)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with open(temporary, "wb") as handle:
                handle.write(buffer.getvalue())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        finally:
            if temporary.exists():
                temporary.unlink()

    def set_parameters(self, load_path_or_dict, exact_match: bool = True, device: torch.device | str = "auto") -> None:
        """As SB3's, with a clear error when the parameters come from a model with another brain."""
        if not isinstance(load_path_or_dict, dict):
            data, params, _ = load_from_zip_file(load_path_or_dict, device=device, load_data=True)
            mine, theirs = self.policy_kwargs.get("brain"), (data or {}).get("policy_kwargs", {}).get("brain")
            if mine is not None and theirs is not None:
                differ = _config_differences(theirs, mine)
                if differ:
                    raise ValueError(f"the file was saved from another brain ({differ}); load it with "
                                     "BrainAgent.load(path) instead")  # fmt: skip
            load_path_or_dict = params
        super().set_parameters(load_path_or_dict, exact_match=exact_match, device=device)


def _accumulate(sums: dict, key: str, value: torch.Tensor) -> None:
    sums[key] = sums[key] + value if key in sums else value.detach().clone()


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    return value


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, dict):
        return {key: _to_device(item, device) for key, item in value.items()}
    return value.to(device) if isinstance(value, torch.Tensor) else value


def _config_differences(saved, current) -> str:
    fields = [field.name for field in dataclasses.fields(current) if field.name != "device"]
    return ", ".join(
        f"{name}: file {getattr(saved, name)!r}, model {getattr(current, name)!r}"
        for name in fields
        if getattr(saved, name, None) != getattr(current, name)
    )
