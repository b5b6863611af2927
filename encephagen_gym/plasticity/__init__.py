"""Local learning rules for the spiking brain, behind one interface (:mod:`~encephagen_gym.plasticity.base`).

Rules: supervised e-prop (:class:`EProp`), reward-based e-prop as an online actor-critic
(:class:`RewardEProp` for the recurrent weights, :class:`ReadoutActorCritic` for the readout's), three-factor
reward-modulated STDP (:class:`RewardModulatedSTDP`), homeostatic synaptic scaling (:class:`SynapticScaling`).
Which synapses learn is a :class:`PlasticProjection` chosen by region-role pairs (:func:`select_projection`,
default :data:`DEFAULT_PLASTIC_PAIRS`); the readout weights of :mod:`encephagen_gym.brain.decoders` learn too.
Everything else stays fixed; every update goes through :func:`apply_weight_update` (clamp to [0, w_max]:
Dale's law and bounds).

Quick start (reward-based e-prop and a learning readout, one decision per 10 ms env step; runs as written)::

    import torch
    from encephagen_gym.brain import BrainConfig, SpikingBrain
    from encephagen_gym.brain.decoders import ActorCriticReadout
    from encephagen_gym.plasticity import (Decision, LearningSignal, ReadoutActorCritic, RewardEProp,
                                           TDErrorScaler, select_projection, td_error)

    brain = SpikingBrain(BrainConfig(neurons_per_region=10, device="cpu"))
    projection = select_projection(brain.network, brain.weights, skip_empty=True)  # default role pairs
    readout = ActorCriticReadout(brain.network, n_actions=2)  # motor + premotor excitatory neurons
    rules = [ReadoutActorCritic(readout, gamma=0.9), RewardEProp(brain.network, projection, readout, gamma=0.9)]
    scaler = TDErrorScaler()
    batch = 4
    state, z_bar = brain.initial_state(batch), readout.init_trace(batch)
    traces = [rule.init_traces(batch) for rule in rules]
    observation = brain.input_for_roles("visual", 12.0, batch)  # an encoded observation (mV)
    previous = None
    for env_step in range(5):
        for _ in range(brain.substeps(env_dt_ms=10.0)):  # 10 brain steps of 1 ms
            state = brain.step(state, observation)
            readout.filter_spikes(z_bar, state.spikes)
            for rule, trace in zip(rules, traces):
                rule.step(trace, state)
        out = readout(z_bar)  # policy logits [B, 2], value [B]
        if previous is not None:  # the TD error of the previous decision is known now
            delta = td_error(reward, done, previous.value, out.value, 0.9)
            signal = LearningSignal(td_error=delta, modulator=scaler.scale(delta), done=done)
            for rule, trace in zip(rules, traces):
                rule.apply(brain.weights, trace, signal)
        action = readout.sample(out)
        for rule, trace in zip(rules, traces):
            rule.record_decision(trace, Decision(out, action, z_bar.clone()))
        reward, done = (action == 1).float(), torch.zeros(batch)  # the environment's answer
        previous = out

Memory: per batch element e-prop keeps ē (4 bytes per plastic synapse), reward-based e-prop also ẽ
(4 more), plus a delayed history of one per-neuron trace (2·(max delay + 1) × 4 bytes per presynaptic
neuron, per NMDA channel). On the 96×200 brain with the default projections (61,213 synapses, 6,649
presynaptic neurons, delays up to 37 ms) that is 2.5 MB per batch element; the step cost is in
``scripts/benchmark_brain.py``.

Conventions shared by all rules: times in ms, voltages and weights in mV, rates in Hz; per-neuron traces
are ``[U or V, B]`` and per-synapse ones ``[P, B]`` (synapse-major: gathers of rows are faster than of
columns; ``.T`` gives ``[B, P]``); a presynaptic quantity is read at the synapse after its conduction delay;
nothing reads back from the device inside the per-step trace updates.

Verification: :mod:`~encephagen_gym.plasticity.reference` (a differentiable replay of the dynamics) and
``tests/test_plasticity.py``.
"""

from encephagen_gym.plasticity.base import Decision, LearningSignal, PlasticityRule
from encephagen_gym.plasticity.eprop import (
    DEFAULT_GAMMA_PD,
    ELIGIBILITY_MODES,
    EProp,
    EpropParams,
    EpropTraces,
    eprop_gradient,
    eprop_trace_step,
    init_eprop_traces,
    make_eprop_params,
    pseudo_derivative,
)
from encephagen_gym.plasticity.feedback import Feedback, feedback_matrix, learning_signal, make_feedback
from encephagen_gym.plasticity.homeostasis import ScalingConfig, ScalingTraces, SynapticScaling
from encephagen_gym.plasticity.neuromodulation import RewardBaseline, TDErrorScaler, baseline_modulator
from encephagen_gym.plasticity.projection import (
    DEFAULT_PLASTIC_PAIRS,
    PlasticProjection,
    apply_weight_update,
    incoming_projection,
    pathway_projection,
    projection_from_synapses,
    select_projection,
)
from encephagen_gym.plasticity.readout_rule import (
    CHOICE_AVERAGES,
    CHOICE_LEARNING,
    ReadoutActorCritic,
    ReadoutLearningConfig,
    ReadoutTraces,
)
from encephagen_gym.plasticity.reward_eprop import RewardEProp, RewardEpropConfig, RewardEpropTraces, td_error
from encephagen_gym.plasticity.stdp import RewardModulatedSTDP, StdpConfig, StdpTraces

__all__ = [
    "CHOICE_AVERAGES",
    "CHOICE_LEARNING",
    "DEFAULT_GAMMA_PD",
    "DEFAULT_PLASTIC_PAIRS",
    "ELIGIBILITY_MODES",
    "Decision",
    "EProp",
    "EpropParams",
    "EpropTraces",
    "Feedback",
    "LearningSignal",
    "PlasticProjection",
    "PlasticityRule",
    "ReadoutActorCritic",
    "ReadoutLearningConfig",
    "ReadoutTraces",
    "RewardBaseline",
    "RewardEProp",
    "RewardEpropConfig",
    "RewardEpropTraces",
    "RewardModulatedSTDP",
    "ScalingConfig",
    "ScalingTraces",
    "StdpConfig",
    "StdpTraces",
    "SynapticScaling",
    "TDErrorScaler",
    "apply_weight_update",
    "baseline_modulator",
    "eprop_gradient",
    "eprop_trace_step",
    "feedback_matrix",
    "incoming_projection",
    "init_eprop_traces",
    "learning_signal",
    "make_eprop_params",
    "make_feedback",
    "pathway_projection",
    "projection_from_synapses",
    "pseudo_derivative",
    "select_projection",
    "td_error",
]
