"""Plasticity: projections and bounds, delayed traces, e-prop against autograd and BPTT, decoders, and the
learning tests (supervised e-prop, reward-based e-prop bandit, distal-reward STDP, homeostasis)."""

from __future__ import annotations

import math

import numba
import pytest
import torch

from encephagen_gym.brain import BrainConfig, SpikingBrain
from encephagen_gym.brain.decoders import LOG_STD_BOUNDS, ActorCriticOutput, ActorCriticReadout, LeakyReadout
from encephagen_gym.plasticity import (
    Decision,
    EProp,
    LearningSignal,
    PlasticityRule,
    ReadoutActorCritic,
    RewardBaseline,
    RewardEProp,
    RewardModulatedSTDP,
    SynapticScaling,
    apply_weight_update,
    eprop_kernel,
    incoming_projection,
    projection_from_synapses,
    select_projection,
    td_error,
)
from encephagen_gym.plasticity.delays import history_gather, history_push, init_history
from encephagen_gym.plasticity.eprop import (
    ELIGIBILITY_MODES,
    eprop_gradient,
    eprop_trace_step,
    init_eprop_traces,
    pseudo_derivative,
)
from encephagen_gym.plasticity.readout_rule import CHOICE_AVERAGES
from encephagen_gym.plasticity.reference import differentiable_run
from encephagen_gym.scripts import plasticity_experiments as experiments

CPU = "cpu"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


small_brain = experiments.small_brain  # 96 × 10 neurons, long-range probability 0.2 (≈ 11 Hz)


@pytest.fixture(scope="module")
def brain10() -> SpikingBrain:
    return small_brain()


# ------------------------------------------------------------------------------------------ projections


def test_select_projection_by_role_pairs(brain10):
    net = brain10.network
    proj = select_projection(net, brain10.weights, [("prefrontal", "premotor"), ("premotor", "premotor")])
    expected = torch.cat([net.synapses_between_roles(("prefrontal",), ("premotor",)),
                          net.synapses_between_roles(("premotor",), ("premotor",))])  # fmt: skip
    assert torch.equal(torch.sort(proj.synapses).values, torch.sort(expected).values)
    assert torch.equal(proj.pre, net.pre[proj.synapses]) and torch.equal(proj.post, net.post[proj.synapses])
    assert torch.equal(proj.pre_neurons[proj.pre_local], proj.pre)
    assert torch.equal(proj.post_neurons[proj.post_local], proj.post)
    assert torch.equal(proj.delay_steps, net.delay_steps[proj.synapses])
    # synapses ordered by (delay desc, pre) so the delayed gather reads memory in order
    key = proj.pre - proj.delay_steps * net.n_neurons
    assert torch.all(key[1:] >= key[:-1])
    assert proj.is_excitatory.any() and (~proj.is_excitatory).any()  # local premotor includes inhibition
    exc_only = select_projection(net, brain10.weights, [("premotor", "premotor")], excitatory_only=True)
    assert exc_only.is_excitatory.all()
    initial = brain10.weights[proj.synapses]
    for sign in (proj.is_excitatory, ~proj.is_excitatory):  # separate bounds for E and I synapses
        assert torch.allclose(proj.w_max[sign], 4.0 * initial[sign].max())


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([("visual", "cerebellum")], "not roles"),
        ([("basal_ganglia", "motor")], "no synapses"),
        ([("visual",)], "pre_role, post_role"),
        ([], "at least one"),
    ],
)
def test_select_projection_errors(brain10, pairs, message):
    with pytest.raises(ValueError, match=message):
        select_projection(brain10.network, brain10.weights, pairs)


def test_projection_from_synapses_errors(brain10):
    net, w = brain10.network, brain10.weights
    with pytest.raises(ValueError, match="at least one"):
        projection_from_synapses(net, w, torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="distinct"):
        projection_from_synapses(net, w, torch.tensor([3, 3]))
    with pytest.raises(ValueError, match="lie in"):
        projection_from_synapses(net, w, torch.tensor([net.n_synapses]))
    with pytest.raises(ValueError, match="w_max_mv"):
        projection_from_synapses(net, w, torch.tensor([1, 2]), w_max_mv=-1.0)
    with pytest.raises(ValueError, match="not roles"):
        incoming_projection(net, w, ("cerebellum",))


def test_weight_updates_keep_dale_bounds_and_leave_other_synapses(brain10):
    net = brain10.network
    weights = brain10.weights.clone()
    before = weights.clone()
    proj = select_projection(net, weights, [("premotor", "premotor"), ("prefrontal", "premotor")], w_max_mv=5.0)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        apply_weight_update(weights, proj, 3.0 * torch.randn(proj.n_synapses, generator=generator))
    plastic = torch.zeros(net.n_synapses, dtype=torch.bool)
    plastic[proj.synapses] = True
    assert torch.equal(weights[~plastic], before[~plastic])  # non-plastic synapses never change
    changed = weights[plastic]
    assert torch.all(changed >= 0) and torch.all(changed <= 5.0)
    assert (changed == 0).any() and (changed == 5.0).any()  # the clamp was exercised
    assert not torch.equal(changed, before[plastic])
    # Dale's law: signs come from the presynaptic type, magnitudes stay >= 0
    assert torch.equal(net.channel == 0, net.is_excitatory[net.pre])
    with pytest.raises(ValueError, match="shape"):
        apply_weight_update(weights, proj, torch.zeros(proj.n_synapses + 1))
    bad = torch.zeros(proj.n_synapses)
    bad[0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        apply_weight_update(weights, proj, bad)


def test_delayed_history_reads_the_value_from_delay_steps_ago():
    pre_local = torch.tensor([0, 1, 2, 0, 2])
    delays = torch.tensor([1, 3, 5, 5, 2])
    history = init_history(pre_local, delays, width=3, max_delay_steps=5, batch_size=2)
    values = {}
    for time in range(1, 20):
        values[time] = torch.randn(3, 2)
        history_push(history, values[time], time)
        got = history_gather(history, time)
        for syn in range(5):
            past = time - int(delays[syn])
            want = values[past][pre_local[syn]] if past >= 1 else torch.zeros(2)
            assert torch.equal(got[syn], want)
    single = init_history(pre_local, delays, width=3, max_delay_steps=5, batch_size=1)
    history_push(single, torch.ones(3, 1), 1)
    assert history_gather(single, 2).shape == (5, 1)


# ----------------------------------------------------------------------------------------- e-prop vs autograd


#: ALIF in the readout regions (so that the symmetric learning signal reaches adaptive neurons): a short τ_a
#: and a large β, so that the adaptation eligibility ε^a matters within the 150 steps of the check.
ALIF_CHECK = dict(alif_roles=("motor", "premotor"), alif_fraction=0.6, tau_adaptation_ms=60.0, adaptation_mv=4.0)


def _gradient_check(nmda: bool, alif: bool = False, backend: str = "auto"):
    """Run the simulator with online e-prop, then replay the same dynamics differentiably."""
    extra = dict(nmda_roles=("motor", "premotor"), nmda_ratio=1.0) if nmda else dict(nmda_ratio=0.0)
    if alif:
        extra.update(ALIF_CHECK)
    config = BrainConfig(neurons_per_region=6, background_eta=0.0, device=CPU, seed=3, global_coupling=1.0,
                         long_range_connection_prob=0.2, backend=backend, **extra)  # fmt: skip
    brain = SpikingBrain(config)
    net = brain.network
    batch, steps, outputs = 3, 150, 2
    generator = torch.Generator().manual_seed(1)
    mean = 10.0 + 12.0 * torch.rand(batch, net.n_neurons, generator=generator)
    inputs = mean + 6.0 * torch.randn(steps, batch, net.n_neurons, generator=generator)
    target = 0.5 * torch.sin(torch.linspace(0, 6, steps))[:, None, None].expand(steps, batch, outputs)
    readout = LeakyReadout(net, outputs, seed=2, init_std=0.3)
    proj = projection_from_synapses(net, brain.weights, torch.arange(net.n_synapses))  # every synapse
    rule = EProp(net, proj, readout, feedback="symmetric")
    state = brain.initial_state(batch)
    v_initial = state.v.clone()
    traces, readout_trace = rule.init_traces(batch), readout.init_trace(batch)
    gradient = torch.zeros(proj.n_synapses)
    # control: the same traces without the adaptation component ε^a (β ε^a dropped from e = ψ (x − β ε^a))
    no_epsilon_a = rule.params._replace(backend="torch")
    if alif:
        no_epsilon_a = no_epsilon_a._replace(alif_adaptation_mv=torch.zeros_like(no_epsilon_a.alif_adaptation_mv))
    control_traces, control = init_eprop_traces(no_epsilon_a, batch), torch.zeros(proj.n_synapses)
    spikes = []
    for t in range(steps):
        state = brain.step(state, inputs[t])
        spikes.append(state.spikes.clone())
        readout.filter_spikes(readout_trace, state.spikes)
        rule.step(traces, state)
        eprop_trace_step(no_epsilon_a, control_traces, state.spikes, state.v_pre_reset, state.adaptation)
        error = readout(readout_trace) - target[t]
        signal = rule.learning_signal(error)
        gradient += rule.gradient(traces, signal)
        control += eprop_gradient(no_epsilon_a, control_traces, signal)

    def autograd_gradient(mode: str):
        weights = brain.weights.clone().requires_grad_(True)
        run = differentiable_run(net, weights, v_initial, inputs, mode=mode)
        z_bar, loss = torch.zeros(batch, readout.n_inputs), 0.0
        for t in range(steps):
            z_bar = readout.kappa * z_bar + run.spikes[t][:, readout.input_neurons]
            loss = loss + 0.5 * (readout(z_bar) - target[t]).square().sum() / batch
        loss.backward()
        return run, weights.grad[proj.synapses]

    run, reference = autograd_gradient("eprop")
    # BPTT does not depend on the backend of the online traces: compute it once per model (numba variants)
    bptt = autograd_gradient("bptt")[1] if backend != "torch" else None
    return rule, torch.stack(spikes), run, gradient, reference, bptt, control


@pytest.mark.parametrize(
    ("nmda", "alif", "backend"),
    [(False, False, "auto"), (True, False, "auto"), (False, True, "numba"), (True, True, "numba"),
     (False, True, "torch"), (True, True, "torch")],
    ids=["ampa-gaba", "with-nmda", "alif-numba", "alif-nmda-numba", "alif-torch", "alif-nmda-torch"],
)  # fmt: skip
def test_eprop_gradient_equals_autograd_of_the_eprop_approximation(nmda, alif, backend, record_property):
    rule, spikes, run, gradient, reference, bptt, control = _gradient_check(nmda, alif, backend)
    assert rule.params.use_nmda == nmda and rule.params.use_alif == alif
    if alif:  # the adaptation component matters: without it the gradient is far off
        assert (control - reference).abs().max() > 1e-2 * reference.abs().max()
    assert torch.equal(run.spikes.detach(), spikes)  # the replay reproduces the simulator's spikes exactly
    assert 0.01 < spikes.mean() < 0.1  # 10–100 Hz: plenty of spikes and of non-spiking steps
    scale = reference.abs().max()
    assert scale > 0 and (reference != 0).sum() > 500
    max_abs = (gradient - reference).abs().max()
    assert max_abs <= 1e-5 * scale  # float32 precision
    assert torch.allclose(gradient, reference, rtol=1e-4, atol=1e-6 * float(scale))
    record_property("max_abs_error", float(max_abs))
    record_property("max_rel_error", float(max_abs / scale))
    # symmetric feedback: only synapses onto readout neurons get an e-prop gradient; BPTT reaches others too
    onto_readout = torch.isin(rule.projection.post, rule.readout.input_neurons)
    assert torch.all(gradient[~onto_readout] == 0)
    kind = ("NMDA" if nmda else "no NMDA") + (f", ALIF {backend}" if alif else "")
    if bptt is None:
        print(f"e-prop vs autograd ({kind}): max abs err {float(max_abs):.3g}, rel {float(max_abs / scale):.3g}")
        return
    cosine = torch.nn.functional.cosine_similarity(gradient, bptt, dim=0)
    record_property("cosine_with_bptt", float(cosine))
    print(f"e-prop vs autograd ({kind}): max abs err {float(max_abs):.3g}, rel {float(max_abs / scale):.3g}; "
          f"cosine with BPTT {float(cosine):.4f}")  # fmt: skip
    assert cosine > 0.5
    assert (bptt[~onto_readout] != 0).any()


def test_reference_rejects_background_noise_and_bad_modes(brain10):
    v = torch.zeros(1, brain10.n_neurons)
    with pytest.raises(ValueError, match="background"):
        differentiable_run(brain10.network, brain10.weights, v, torch.zeros(2, 1, brain10.n_neurons))
    quiet = small_brain(background_eta=0.0)
    with pytest.raises(ValueError, match="mode"):
        differentiable_run(quiet.network, quiet.weights, v, torch.zeros(2, 1, quiet.n_neurons), mode="rtrl")


# ------------------------------------------------------------------------------------------ decoders


def test_leaky_readout_filters_motor_spikes_and_round_trips(brain10):
    net = brain10.network
    readout = LeakyReadout(net, 3, tau_ms=20.0, seed=1)
    expected = net.neurons_with_role("motor", "premotor", excitatory_only=True)
    assert torch.equal(readout.input_neurons, expected) and readout.n_inputs == 8 * net.n_exc
    assert readout.kappa == pytest.approx(math.exp(-1.0 / 20.0))
    trace = readout.init_trace(2)
    spikes = torch.zeros(2, net.n_neurons)
    spikes[0, expected[0]] = 1.0
    readout.filter_spikes(trace, spikes)
    readout.filter_spikes(trace, torch.zeros(2, net.n_neurons))
    assert trace[0, 0] == pytest.approx(readout.kappa) and trace[1].abs().sum() == 0
    y = readout(trace)
    assert y.shape == (2, 3)
    assert torch.allclose(y, trace @ readout.weight.T + readout.bias)
    copy = LeakyReadout(net, 3, seed=99)
    copy.load_state_dict(readout.state_dict())
    assert torch.equal(copy(trace), y)
    with pytest.raises(ValueError, match="shape"):
        readout(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="expected spikes"):
        readout.filter_spikes(trace, torch.zeros(3, net.n_neurons))
    with pytest.raises(ValueError, match="roles"):
        LeakyReadout(net, 1, roles=("cerebellum",))


@pytest.mark.parametrize("tau_ms", [20.0, (200.0, 20.0)], ids=["one-tau", "two-taus"])
def test_one_brains_compiled_readout_filter_gives_the_tensor_path_values(brain10, tau_ms):
    """At batch 1 on the CPU the readout filter runs as one compiled call: bit for bit the values of the tensor
    operations (which batch 2, a non-contiguous trace and autograd tensors keep)."""
    net = brain10.network
    readout = ActorCriticReadout(net, 3, tau_ms=tau_ms)
    single, pair = readout.init_trace(1), readout.init_trace(2)
    strided = torch.zeros(1, 2 * readout.n_inputs)[:, ::2]  # [1, M] but not contiguous: the tensor path
    assert not strided.is_contiguous()
    generator = torch.Generator().manual_seed(3)
    for _ in range(40):
        spikes = (torch.rand(1, net.n_neurons, generator=generator) < 0.3).float()
        readout.filter_spikes(single, spikes)
        readout.filter_spikes(pair, spikes.expand(2, -1).contiguous())
        readout.filter_spikes(strided, spikes)
    assert single.abs().sum() > 0
    assert torch.equal(single[0], pair[0]) and torch.equal(single[0], pair[1]) and torch.equal(single, strided)


def test_a_readout_with_several_time_constants_holds_one_filtered_copy_per_time_constant(brain10):
    """tau_ms=(50, 10): z̄ is [B, 2M], its blocks exactly the traces of single-τ readouts of the same neurons;
    e-prop filters with the first; symmetric feedback (one copy per neuron) and LeakyReadout refuse it."""
    net = brain10.network
    both = ActorCriticReadout(net, 3, tau_ms=(50.0, 10.0), standardise=True)
    slow, fast = ActorCriticReadout(net, 3, tau_ms=50.0), ActorCriticReadout(net, 3, tau_ms=10.0)
    m = slow.n_inputs
    assert both.n_inputs == 2 * m and both.policy_weight.shape == (3, 2 * m)
    assert both.kappa == slow.kappa and both.timescales_ms == (50.0, 10.0)
    traces = [readout.init_trace(2) for readout in (both, slow, fast)]
    generator = torch.Generator().manual_seed(0)
    for _ in range(30):
        spikes = (torch.rand(2, net.n_neurons, generator=generator) < 0.2).float()
        for readout, trace in zip((both, slow, fast), traces, strict=True):
            readout.filter_spikes(trace, spikes)
    assert torch.allclose(traces[0][:, :m], traces[1]) and torch.allclose(traces[0][:, m:], traces[2])
    assert not torch.allclose(traces[1], traces[2])
    both.update_statistics(traces[0])
    assert both(traces[0]).policy.shape == (2, 3)
    projection = select_projection(net, brain10.weights, [("prefrontal", "premotor")])
    RewardEProp(net, projection, both, feedback="random")
    with pytest.raises(ValueError, match="symmetric feedback"):
        RewardEProp(net, projection, both, feedback="symmetric")
    with pytest.raises(ValueError, match="one time constant"):
        LeakyReadout(net, 1, tau_ms=(20.0, 5.0))
    for bad in ((), (20.0, -1.0), (20.0, float("nan")), "20"):
        with pytest.raises(ValueError, match="tau_ms"):
            ActorCriticReadout(net, 2, tau_ms=bad)


@pytest.mark.parametrize("continuous", [False, True], ids=["softmax", "gaussian-tanh"])
def test_actor_critic_gradients_match_autograd(brain10, continuous):
    net = brain10.network
    readout = ActorCriticReadout(net, 3, continuous=continuous, policy_init_std=0.5, seed=2)
    generator = torch.Generator().manual_seed(0)
    trace = torch.rand(4, readout.n_inputs, generator=generator)
    output = readout(trace)
    actions = readout.sample(output, generator)
    assert actions.shape == ((4, 3) if continuous else (4,))
    y = output.policy.clone().requires_grad_(True)
    log_std = readout.log_std.detach().clone().requires_grad_(True) if continuous else None
    if continuous:
        z = (actions - torch.tanh(y)) / log_std.exp()
        log_prob = (-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(1)
        assert torch.allclose(readout.log_prob(output, actions), log_prob.detach(), atol=1e-5)
        grad_y, grad_log_std = torch.autograd.grad(log_prob.sum(), (y, log_std))
        assert torch.allclose(readout.score(output, actions), grad_y, atol=1e-5)
        # log σ is shared by the batch: the per-sample scores sum to the batch gradient
        assert torch.allclose(readout.log_std_score(output, actions).sum(0), grad_log_std, atol=1e-5)
        assert torch.allclose(readout.entropy_gradient(output), torch.zeros(4, 3))
    else:
        log_prob = torch.log_softmax(y, 1).gather(1, actions[:, None]).sum()
        assert torch.allclose(readout.score(output, actions), torch.autograd.grad(log_prob, y)[0], atol=1e-6)
        p = torch.softmax(y, 1)
        entropy = -(p * torch.log(p)).sum()
        assert torch.allclose(readout.entropy_gradient(output), torch.autograd.grad(entropy, y)[0], atol=1e-6)
        assert torch.allclose(readout.log_prob(output, actions), torch.log_softmax(output.policy, 1)[
            torch.arange(4), actions])  # fmt: skip
    assert output.value.shape == (4,)
    assert torch.equal(readout.sample(output, deterministic=True),
                       torch.tanh(output.policy) if continuous else output.policy.argmax(1))  # fmt: skip
    with pytest.raises(ValueError, match="actions"):
        readout.score(output, torch.zeros(5, dtype=torch.long))


def test_gated_policy_gradients_match_autograd(brain10):
    """The gated head (unit 1 withholds, the others choose): log π, the scores and the entropy gradient against
    autograd of the gated distribution written out independently."""
    readout = ActorCriticReadout(brain10.network, 4, policy_init_std=0.1, seed=2, gate_action=1)
    generator = torch.Generator().manual_seed(0)
    output = readout(torch.rand(64, readout.n_inputs, generator=generator) * 3)
    actions = readout.sample(output, generator)
    assert {0, 1, 2, 3} <= set(actions.tolist())  # a batch large enough to hold every action
    y = output.policy.clone().requires_grad_(True)
    withhold = torch.sigmoid(y[:, 1])
    choice = torch.softmax(y[:, [0, 2, 3]], dim=1)
    p = torch.stack([(1 - withhold) * choice[:, 0], withhold, (1 - withhold) * choice[:, 1],
                     (1 - withhold) * choice[:, 2]], dim=1)  # fmt: skip
    assert torch.allclose(readout.probabilities(output), p.detach(), atol=1e-6)
    assert torch.allclose(readout.probabilities(output).sum(1), torch.ones(64))
    log_prob = torch.log(p).gather(1, actions[:, None]).squeeze(1)
    assert torch.allclose(readout.log_prob(output, actions), log_prob.detach(), atol=1e-5)
    score = torch.autograd.grad(log_prob.sum(), y, retain_graph=True)[0]
    assert torch.allclose(readout.score(output, actions), score, atol=1e-5)
    withheld = actions == 1
    assert torch.equal(readout.score(output, actions)[withheld][:, [0, 2, 3]], torch.zeros(int(withheld.sum()), 3))
    entropy = -(p * torch.log(p)).sum(1)
    assert torch.allclose(readout.entropy(output), entropy.detach(), atol=1e-5)
    assert torch.allclose(readout.entropy_gradient(output), torch.autograd.grad(entropy.sum(), y)[0], atol=1e-5)
    assert torch.equal(readout.sample(output, deterministic=True), p.argmax(1))
    frequencies = torch.bincount(readout.sample(ActorCriticOutput(output.policy[:1].expand(20000, 4),
                                                                  output.value[:1].expand(20000)),
                                                generator), minlength=4) / 20000  # fmt: skip
    assert torch.allclose(frequencies, p[0].detach(), atol=0.015)
    for bad in (4, -1, True, 1.0):
        with pytest.raises(ValueError, match="gate_action"):
            ActorCriticReadout(brain10.network, 4, gate_action=bad)
    with pytest.raises(ValueError, match="discrete"):
        ActorCriticReadout(brain10.network, 2, continuous=True, gate_action=0)


def test_softmax_sampling_follows_the_policy(brain10):
    readout = ActorCriticReadout(brain10.network, 2, seed=0)
    with torch.no_grad():
        readout.policy_bias.copy_(torch.tensor([0.0, math.log(3.0)]))  # π = (0.25, 0.75)
    output = readout(readout.init_trace(4000))
    actions = readout.sample(output, torch.Generator().manual_seed(3))
    assert abs(actions.float().mean().item() - 0.75) < 0.03
    state = readout.state_dict()
    assert {"policy_weight", "policy_bias", "value_weight", "value_bias", "input_neurons"} <= set(state)
    with pytest.raises(ValueError, match="n_actions"):
        ActorCriticReadout(brain10.network, 1)


# ------------------------------------------------------------------------------------------ rule interface


@pytest.mark.parametrize("alif", [False, True], ids=["lif", "alif-targets"])
def test_every_rule_follows_the_one_interface(brain10, alif):
    if alif:
        brain10 = small_brain(**ALIF_TARGETS)
    net, w = brain10.network, brain10.weights
    proj = select_projection(net, w, [("prefrontal", "premotor")])
    readout = ActorCriticReadout(net, 2)
    rules = [
        EProp(net, proj, LeakyReadout(net, 2)),
        RewardEProp(net, proj, readout),
        ReadoutActorCritic(readout),
        RewardModulatedSTDP(net, proj),
        SynapticScaling(net, incoming_projection(net, w, "premotor")),
    ]
    weights = w.clone()
    state = brain10.initial_state(2)
    z_bar = readout.init_trace(2)
    traces = [rule.init_traces(2) for rule in rules]
    for _ in range(5):
        state = brain10.step(state, brain10.input_for_roles("prefrontal", 15.0, 2))
        readout.filter_spikes(z_bar, state.spikes)
        for rule, trace in zip(rules, traces, strict=True):
            assert isinstance(rule, PlasticityRule)
            assert rule.step(trace, state) is None  # in place, nothing returned
    out = readout(z_bar)
    decision = Decision(out, out.policy.argmax(1), z_bar)
    signal = LearningSignal(td_error=torch.tensor([0.5, -0.5]), modulator=torch.tensor([1.0, -1.0]),
                            done=torch.tensor([0.0, 1.0]), output_error=torch.ones(2, 2), elapsed_ms=10.0)  # fmt: skip
    for rule, trace in zip(rules, traces, strict=True):  # the same calls for every rule: agents never branch
        rule.record_decision(trace, decision)
        assert rule.weight_update(weights, trace, signal) is not None
        diagnostics = rule.apply(weights, trace, signal)
        assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in diagnostics.values())
        rule.reset_traces(trace, torch.tensor([True, False]))
    assert torch.all(weights >= 0)
    for rule, trace in zip(rules, traces, strict=True):
        if rule.projection is not None:  # the readout rule reads no spikes
            with pytest.raises(ValueError, match="spikes"):
                rule.step(trace, brain10.initial_state(3))


def test_rules_name_the_learning_signal_field_they_need(brain10):
    net, w = brain10.network, brain10.weights
    proj = select_projection(net, w, [("prefrontal", "premotor")])
    readout = ActorCriticReadout(net, 2)
    cases = [(EProp(net, proj, LeakyReadout(net, 1)), "output_error"), (RewardEProp(net, proj, readout), "modulator"),
             (ReadoutActorCritic(readout), "td_error"), (RewardModulatedSTDP(net, proj), "modulator"),
             (SynapticScaling(net, incoming_projection(net, w, "premotor")), "elapsed_ms")]  # fmt: skip
    for rule, field in cases:
        with pytest.raises(ValueError, match=f"LearningSignal.{field}"):
            rule.weight_update(w, rule.init_traces(2), LearningSignal())


def test_package_quick_start_runs_as_written():
    import encephagen_gym.plasticity as plasticity

    doc = plasticity.__doc__
    lines = doc[doc.index("runs as written)::") :].splitlines()[1:]
    code_lines = []
    for line in lines:
        if line.strip() and not line.startswith("    "):
            break  # the end of the indented block
        code_lines.append(line[4:])
    code = "\n".join(code_lines)
    namespace: dict = {}
    exec(code, namespace)
    assert namespace["traces"][1].recurrent.abs().sum() > 0
    assert namespace["projection"].n_synapses > 0


def test_learning_changes_only_the_projection_and_keeps_dale_and_bounds():
    brain = small_brain()
    net = brain.network
    initial = brain.weights.clone()
    proj = select_projection(net, brain.weights, [("prefrontal", "premotor"), ("premotor", "premotor")])
    readout = ActorCriticReadout(net, 2)
    eprop = EProp(net, proj, LeakyReadout(net, 1), feedback="random", learning_rate=1e4)
    reward = RewardEProp(net, proj, readout, learning_rate=1e4, feedback="random")
    stdp = RewardModulatedSTDP(net, proj, learning_rate=1e3)
    scaling = SynapticScaling(net, incoming_projection(net, brain.weights, "premotor"), tau_scaling_ms=1.0)
    rules = (eprop, reward, stdp, scaling)
    batch = 2
    state, z_bar = brain.initial_state(batch), readout.init_trace(batch)
    traces = [rule.init_traces(batch) for rule in rules]
    drive = brain.input_for_roles("prefrontal", 15.0, batch)
    for step in range(1, 201):
        state = brain.step(state, drive)
        readout.filter_spikes(z_bar, state.spikes)
        for rule, trace in zip(rules, traces, strict=True):
            rule.step(trace, state)
        if step % 20 == 0:
            out = readout(z_bar)
            signal = LearningSignal(modulator=torch.tensor([5.0, -5.0]), output_error=torch.randn(batch, 1),
                                    elapsed_ms=20.0)  # fmt: skip
            for rule, trace in zip(rules, traces, strict=True):
                rule.record_decision(trace, Decision(out, out.policy.argmax(1), z_bar))
                rule.apply(brain.weights, trace, signal)
    plastic = torch.zeros(net.n_synapses, dtype=torch.bool)
    plastic[proj.synapses] = True
    plastic[scaling.projection.synapses] = True
    assert torch.equal(brain.weights[~plastic], initial[~plastic])
    changed = brain.weights[plastic]
    assert not torch.equal(changed, initial[plastic])
    assert torch.all(changed >= 0)
    assert torch.all(brain.weights[proj.synapses] <= proj.w_max + 1e-6)
    assert torch.all(brain.weights[scaling.projection.synapses] <= scaling.projection.w_max + 1e-6)
    assert torch.isfinite(brain.weights).all()


def test_reward_eprop_update_is_modulator_times_gamma_filtered_signal_times_eligibility():
    brain = small_brain()
    net = brain.network
    readout = ActorCriticReadout(net, 2, policy_init_std=0.3, seed=1)
    proj = select_projection(net, brain.weights, [("prefrontal", "premotor"), ("prefrontal", "motor")],
                             w_max_mv=100.0)  # fmt: skip
    rule = RewardEProp(net, proj, readout, gamma=0.8, trace_decay=0.625, learning_rate=2.0, value_coef=0.5,
                       entropy_coef=0.1, feedback="random")  # γλ = 0.5  # fmt: skip
    batch = 3
    state, z_bar, traces = brain.initial_state(batch), readout.init_trace(batch), rule.init_traces(batch)
    generator = torch.Generator().manual_seed(0)
    post = proj.post_local
    b_pi, b_v = rule.policy_feedback.random, rule.value_feedback.random[:, 0]
    expected_trace = torch.zeros(proj.n_synapses, batch)
    expected_length = torch.zeros(batch)
    for decision in range(2):
        for _ in range(30):
            state = brain.step(state, brain.input_for_roles("prefrontal", 15.0, batch))
            readout.filter_spikes(z_bar, state.spikes)
            rule.step(traces, state)
        out = readout(z_bar)
        actions = readout.sample(out, generator)
        score = readout.score(out, actions)
        signal = score @ b_pi.T + 0.5 * b_v  # [B, V]
        expected_trace = 0.5 * expected_trace + signal[:, post].T * traces.eprop.eligibility
        expected_length = 0.5 * expected_length + 1.0
        entropy_signal = readout.entropy_gradient(out) @ b_pi.T
        expected_entropy = (entropy_signal[:, post].T * traces.eprop.eligibility).mean(1)
        rule.record_decision(traces, Decision(out, actions, z_bar))
        assert torch.allclose(traces.recurrent, expected_trace, rtol=1e-5, atol=1e-9)
        assert torch.allclose(traces.length, expected_length)
        modulator = torch.tensor([1.0, -0.5, 0.25])
        weights_before = brain.weights[proj.synapses].clone()
        done = torch.tensor([0.0, 0.0, 1.0]) if decision == 0 else torch.ones(batch)
        rule.apply(brain.weights, traces, LearningSignal(modulator=modulator, done=done))
        expected_dw = 2.0 * (expected_trace @ (modulator / expected_length) / batch + 0.1 * expected_entropy)
        assert torch.allclose(brain.weights[proj.synapses] - weights_before, expected_dw, rtol=1e-4, atol=1e-7)
        if decision == 0:
            assert torch.all(traces.recurrent[:, 2] == 0) and traces.length[2] == 0  # the finished episode
            expected_trace[:, 2] = 0.0
            expected_length[2] = 0.0
    assert td_error(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([0.2]), torch.tensor([0.4]),
                    0.5).item() == pytest.approx(1.0)  # fmt: skip
    assert td_error(torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([0.2]), torch.tensor([0.4]),
                    0.5).item() == pytest.approx(0.8)  # fmt: skip


def _readout_rule_after_one_decision(readout: ActorCriticReadout, batch: int, entropy_coef: float,
                                     actions: torch.Tensor | None = None) -> tuple:  # fmt: skip
    """A ReadoutActorCritic (α_π 0.2, α_V 0.5, γ 0.9, λ 1) that has recorded one decision on random inputs:
    ``(rule, traces, z_bar, output, actions)``; ``actions`` default to a sample of the policy."""
    rule = ReadoutActorCritic(readout, gamma=0.9, trace_decay=1.0, learning_rate=0.2, value_learning_rate=0.5,
                              entropy_coef=entropy_coef)  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    z_bar = torch.rand(batch, readout.n_inputs, generator=generator)
    traces = rule.init_traces(batch)
    out = readout(z_bar)
    actions = readout.sample(out, generator) if actions is None else actions
    rule.record_decision(traces, Decision(out, actions, z_bar))
    return rule, traces, z_bar, out, actions


def test_readout_actor_critic_update_is_exact_and_normalised():
    readout = ActorCriticReadout(small_brain().network, 3, policy_init_std=0.3, seed=1)
    batch = 2
    rule, traces, z_bar, out, actions = _readout_rule_after_one_decision(readout, batch, 0.0, torch.tensor([0, 2]))
    norm = float(z_bar.square().sum(1).mean() + 1.0)
    assert float(rule.norm) == pytest.approx(norm, rel=1e-6)  # the first decision sets n̂
    score = readout.score(out, actions)
    before = {name: getattr(readout, name).clone() for name in ("policy_weight", "policy_bias", "value_weight")}
    delta, modulator = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 1.0])
    rule.apply(None, traces, LearningSignal(td_error=delta, modulator=modulator))
    want_policy = 0.2 * torch.einsum("b,bk,bm->km", modulator, score, z_bar) / (batch * norm)
    assert torch.allclose(readout.policy_weight - before["policy_weight"], want_policy, atol=1e-7)
    assert torch.allclose(readout.policy_bias - before["policy_bias"], 0.2 * modulator @ score / batch)
    assert torch.allclose(readout.value_weight - before["value_weight"], 0.5 * delta @ z_bar / (batch * norm))


@pytest.mark.parametrize("choice_average,ratio", [("acted", 1.0), ("batch", 1.0), ("acted", 0.25), ("batch", 0.5)])
def test_gated_readout_averages_its_choice_head_over_the_acting_decisions(choice_average, ratio):
    """A gated readout (unit 0 withholds): one brain of four acted. With "acted" its choice rows step as a lone
    decision would (α M score ⊗ z̄ / n̂), with "batch" four times less; the gate row always averages over the
    batch; a brain that withheld gives its choice rows nothing; choice_step_ratio scales the choice rows only;
    with "acted" the choice biases are normalised by n̂ like the weights (the gate's bias is not)."""
    readout = ActorCriticReadout(small_brain().network, 3, policy_init_std=0.3, seed=1, gate_action=0)
    batch = 4
    rule = ReadoutActorCritic(readout, gamma=0.9, trace_decay=1.0, learning_rate=0.2, entropy_coef=0.0,
                              choice_average=choice_average, choice_step_ratio=ratio)  # fmt: skip
    z_bar = torch.rand(batch, readout.n_inputs, generator=torch.Generator().manual_seed(0))
    traces = rule.init_traces(batch)
    out = readout(z_bar)
    actions = torch.tensor([2, 0, 0, 0])
    rule.record_decision(traces, Decision(out, actions, z_bar))
    assert (traces.choice_length is None) == (choice_average == "batch")
    norm = float(rule.norm)
    score = readout.score(out, actions)
    assert torch.equal(score[1:, 1:], torch.zeros(3, 2))  # withholding brains: no choice gradient
    before = {name: getattr(readout, name).clone() for name in ("policy_weight", "policy_bias")}
    modulator = torch.tensor([1.5, -1.0, 0.5, 2.0])
    rule.apply(None, traces, LearningSignal(td_error=torch.zeros(batch), modulator=modulator))
    gate = 0.2 * torch.einsum("b,b,bm->m", modulator, score[:, 0], z_bar) / (batch * norm)
    choice = ratio * 0.2 * 1.5 * score[0, 1:, None] * z_bar[0] / norm / (1 if choice_average == "acted" else batch)
    change = readout.policy_weight - before["policy_weight"]
    assert torch.allclose(change[0], gate, atol=1e-7)
    assert torch.allclose(change[1:], choice, atol=1e-7)
    # "acted": the choice biases step as one input among the weights' (over n̂ too); "batch": as every other row
    want_bias = ratio * 0.2 * 1.5 * score[0, 1:] / (norm if choice_average == "acted" else batch)
    assert torch.allclose((readout.policy_bias - before["policy_bias"])[1:], want_bias, atol=1e-7)
    gate_bias = 0.2 * modulator @ score[:, 0] / batch  # the gate's bias keeps its own (fast) normalisation
    assert (readout.policy_bias - before["policy_bias"])[0].item() == pytest.approx(gate_bias.item(), rel=1e-5)
    with pytest.raises(ValueError, match="choice_average"):
        ReadoutActorCritic(readout, choice_average="mean")
    with pytest.raises(ValueError, match="choice_step_ratio"):
        ReadoutActorCritic(readout, choice_step_ratio=-1.0)


@pytest.mark.parametrize("choice_average", CHOICE_AVERAGES)
def test_a_choice_head_that_reads_the_slow_copy_only_steps_on_it_normalised_by_its_own_energy(choice_average):
    """Readout of a slow and a fast copy (τ 200 and 20 ms), choice head on the slow one (choice_tau_ms=200): the
    choice rows start at zero on the fast copy and stay there however they learn; their step on the slow copy
    is the unmasked head's step with n̂_c (mean ‖z̄_slow‖² + 1) in place of n̂; the gate row reads both copies and
    steps as before. n̂_c goes through the rule's state_dict."""
    network = small_brain().network
    readout = ActorCriticReadout(network, 3, tau_ms=(200.0, 20.0), policy_init_std=0.3, seed=1, gate_action=0,
                                 choice_tau_ms=200.0)  # fmt: skip
    half = readout.n_inputs // 2
    assert readout.choice_inputs.tolist() == [True] * half + [False] * half
    assert torch.all(readout.policy_weight[1:, half:] == 0) and torch.all(readout.policy_weight[1:, :half] != 0)
    assert torch.all(readout.policy_weight[0] != 0)  # the gate reads both copies
    batch = 4
    rule = ReadoutActorCritic(readout, gamma=0.9, trace_decay=1.0, learning_rate=0.2, entropy_coef=0.05,
                              choice_average=choice_average)  # fmt: skip
    z_bar = torch.rand(batch, readout.n_inputs, generator=torch.Generator().manual_seed(0))
    z_bar[:, :half] *= 3.0  # the copies differ in energy, so n̂_c ≠ n̂ / 2
    traces = rule.init_traces(batch)
    out = readout(z_bar)
    actions = torch.tensor([2, 0, 1, 0])
    rule.record_decision(traces, Decision(out, actions, z_bar))
    norm, choice_norm = float(rule.norm), float(rule.choice_norm)
    assert choice_norm == pytest.approx(float(z_bar[:, :half].square().sum(1).mean() + 1.0), rel=1e-6)
    score, entropy = readout.score(out, actions), readout.entropy_gradient(out)
    before = readout.policy_weight.clone()
    modulator = torch.tensor([1.5, -1.0, 0.5, 2.0])
    rule.apply(None, traces, LearningSignal(td_error=torch.zeros(batch), modulator=modulator))
    change = readout.policy_weight - before
    per = 2.0 if choice_average == "acted" else batch  # acting brains (0 and 2) or the whole batch
    choice = 0.2 * (torch.einsum("b,bk,bm->km", modulator, score[:, 1:], z_bar[:, :half]) / (per * choice_norm)
                    + 0.05 * entropy[:, 1:].t() @ z_bar[:, :half] / (batch * choice_norm))  # fmt: skip
    assert torch.allclose(change[1:, :half], choice, atol=1e-7)
    assert torch.all(change[1:, half:] == 0)
    gate = 0.2 * (torch.einsum("b,b,bm->m", modulator, score[:, 0], z_bar) / (batch * norm)
                  + 0.05 * entropy[:, 0] @ z_bar / (batch * norm))  # fmt: skip
    assert torch.allclose(change[0], gate, atol=1e-7)
    for _ in range(20):  # learning never reaches the inputs the choice head does not read
        out = readout(z_bar)
        rule.record_decision(traces, Decision(out, torch.tensor([1, 2, 1, 2]), z_bar))
        rule.apply(None, traces, LearningSignal(td_error=torch.ones(batch), modulator=torch.ones(batch)))
    assert torch.all(readout.policy_weight[1:, half:] == 0) and not torch.equal(readout.policy_weight[1:], before[1:])
    restored = ReadoutActorCritic(readout)
    restored.load_state_dict(rule.state_dict())
    assert float(restored.choice_norm) == float(rule.choice_norm) > 0


def test_a_choice_head_of_values_steps_the_chosen_row_towards_the_outcome_once():
    """choice_learning="values": after a decision in which brains 0, 1 and 2 of four acted, an update that
    credits brains 0, 1 and 3 steps only the rows brains 0 and 1 chose, each by (α_Q / T) ε z̄ / (n̂ · 2) with
    ε = δ + V(s) − Q_k(s), Q = T y (two choices credited); the gate row learns by its policy gradient as before;
    brain 2's choice waits for the update that credits it, and a credited choice is not credited again."""
    readout = ActorCriticReadout(small_brain().network, 4, policy_init_std=0.3, seed=1, gate_action=0)
    batch = 4
    rule = ReadoutActorCritic(readout, gamma=0.9, trace_decay=1.0, learning_rate=0.2, entropy_coef=0.05,
                              choice_learning="values", choice_temperature=0.2, choice_value_rate=0.3)  # fmt: skip
    z_bar = torch.rand(batch, readout.n_inputs, generator=torch.Generator().manual_seed(0))
    traces = rule.init_traces(batch)
    out = readout(z_bar)
    actions = torch.tensor([2, 1, 3, 0])
    rule.record_decision(traces, Decision(out, actions, z_bar))
    norm = float(rule.norm)
    score = readout.score(out, actions)
    before_w, before_b = readout.policy_weight.clone(), readout.policy_bias.clone()
    delta, modulator = torch.tensor([1.0, -0.5, -0.2, 0.3]), torch.tensor([1.5, -1.0, 0.5, 2.0])
    credited = torch.tensor([1.0, 1.0, 0.0, 1.0])  # brain 2's choice is not credited by this update
    rule.apply(None, traces, LearningSignal(td_error=delta * credited, modulator=modulator, credited=credited))
    q = 0.2 * out.policy  # Q = T y
    change_w, change_b = readout.policy_weight - before_w, readout.policy_bias - before_b
    step = 0.3 / (0.2 * norm * 2)  # two choices credited
    for brain, row in ((0, 2), (1, 1)):
        error = delta[brain] + out.value[brain] - q[brain, row]
        assert torch.allclose(change_w[row], step * error * z_bar[brain], atol=1e-7)
        assert change_b[row].item() == pytest.approx((step * error).item(), rel=1e-5)
    assert torch.all(change_w[3] == 0) and change_b[3] == 0  # brain 2 waits its turn
    entropy = readout.entropy_gradient(out)
    gate = 0.2 * (torch.einsum("b,b,bm->m", modulator, score[:, 0], z_bar) / (batch * norm)
                  + 0.05 * entropy[:, 0] @ z_bar / (batch * norm))  # fmt: skip
    assert torch.allclose(change_w[0], gate, atol=1e-7)
    before_w = readout.policy_weight.clone()  # the next update credits brain 2 only: brain 0's choice is spent
    rule.apply(None, traces, LearningSignal(td_error=torch.tensor([0.0, 0.0, -0.2, 0.0]), modulator=torch.zeros(4)))
    error = -0.2 + out.value[2] - q[2, 3]
    step = 0.3 / (0.2 * float(rule.norm))  # one choice credited
    assert torch.allclose((readout.policy_weight - before_w)[3], step * error * z_bar[2], atol=1e-7)
    assert torch.all((readout.policy_weight - before_w)[[1, 2]] == 0)
    with pytest.raises(ValueError, match="choice_learning"):
        ReadoutActorCritic(readout, choice_learning="q")
    with pytest.raises(ValueError, match="choice_temperature"):
        ReadoutActorCritic(readout, choice_learning="values", choice_temperature=0.0)
    with pytest.raises(ValueError, match="choice_value_rate"):
        ReadoutActorCritic(readout, choice_learning="values", choice_value_rate=float("nan"))


def test_choice_tau_ms_errors():
    network = small_brain().network
    with pytest.raises(ValueError, match="gated readout"):
        ActorCriticReadout(network, 3, tau_ms=(200.0, 20.0), choice_tau_ms=200.0)
    with pytest.raises(ValueError, match="time constants of the readout's tau_ms"):
        ActorCriticReadout(network, 3, tau_ms=(200.0, 20.0), gate_action=0, choice_tau_ms=50.0)
    with pytest.raises(ValueError, match="time constants of the readout's tau_ms"):
        ActorCriticReadout(network, 3, tau_ms=(200.0, 20.0), gate_action=0, choice_tau_ms=(200.0, 200.0))
    with pytest.raises(ValueError, match="choice_tau_ms must be"):
        ActorCriticReadout(network, 3, tau_ms=(200.0, 20.0), gate_action=0, choice_tau_ms="slow")
    every = ActorCriticReadout(network, 3, tau_ms=(200.0, 20.0), gate_action=0, choice_tau_ms=(20.0, 200.0))
    assert every.choice_inputs is None  # every copy: nothing masked


def test_continuous_readout_steps_are_natural_and_keep_log_std_bounded():
    """Gaussian policy: the mean's step is the score times σ² and log σ's the score over its Fisher
    information 2 (entropy included); log σ never leaves LOG_STD_BOUNDS, however large the third factor."""
    net = small_brain().network
    readout = ActorCriticReadout(net, 2, continuous=True, policy_init_std=0.3, seed=1)
    batch = 3
    rule, traces, z_bar, out, actions = _readout_rule_after_one_decision(readout, batch, 0.1)
    mean, sigma = torch.tanh(out.policy), readout.log_std.exp()
    before = {name: getattr(readout, name).clone() for name in ("policy_bias", "log_std")}
    modulator = torch.tensor([0.5, -1.0, 2.0])
    rule.apply(None, traces, LearningSignal(td_error=torch.zeros(batch), modulator=modulator))
    want_bias = 0.2 * modulator @ ((actions - mean) * (1 - mean**2)) / batch
    want_log_std = 0.2 * (modulator @ ((((actions - mean) / sigma) ** 2 - 1) / 2) / batch + 0.1 * 0.5)
    assert torch.allclose(readout.policy_bias - before["policy_bias"], want_bias, atol=1e-6)
    assert torch.allclose(readout.log_std - before["log_std"], want_log_std, atol=1e-6)
    for sign in (1e4, -1e4):  # a wild third factor pins log σ at a bound instead of overflowing σ
        traces = rule.init_traces(batch)
        out = readout(z_bar)
        rule.record_decision(traces, Decision(out, out.policy.tanh() + 3.0, z_bar))  # (a − μ)/σ ≫ 1
        rule.apply(None, traces, LearningSignal(td_error=torch.zeros(batch), modulator=torch.full((batch,), sign)))
        assert readout.log_std.tolist() == [LOG_STD_BOUNDS[1 if sign > 0 else 0]] * 2
    with pytest.raises(ValueError, match="log_std_init"):
        ActorCriticReadout(net, 2, continuous=True, log_std_init=1.0)


def test_readout_learning_is_stable_on_long_episodes():
    """The value readout converges to a constant return at γ = 0.99 with a large input and a large step; the
    unnormalised update of issue 9 diverged here."""
    net = small_brain().network
    readout = ActorCriticReadout(net, 2, seed=0)
    rule = ReadoutActorCritic(readout, gamma=0.99, trace_decay=1.0, value_learning_rate=0.4)
    generator = torch.Generator().manual_seed(0)
    traces = rule.init_traces(4)
    previous = None
    values = []
    for _ in range(2000):  # reward 1 per step forever: V* = 100
        z_bar = 5.0 * torch.rand(4, readout.n_inputs, generator=generator)  # ‖z̄‖² in the hundreds
        out = readout(z_bar)
        if previous is not None:
            delta = td_error(torch.ones(4), torch.zeros(4), previous.value, out.value, 0.99)
            rule.apply(None, traces, LearningSignal(td_error=delta, modulator=torch.zeros(4)))
        rule.record_decision(traces, Decision(out, out.policy.argmax(1), z_bar))
        previous = out
        values.append(float(out.value.mean()))
    assert all(math.isfinite(v) for v in values)
    assert max(abs(v) for v in values) < 500
    assert abs(sum(values[-200:]) / 200 - 100.0) < 25.0


def test_learning_signals_reject_nan_and_wrong_shapes(brain10):
    net, w = brain10.network, brain10.weights
    proj = select_projection(net, w, [("prefrontal", "premotor")])
    readout = LeakyReadout(net, 2)
    eprop = EProp(net, proj, readout)
    traces = eprop.init_traces(2)
    with pytest.raises(ValueError, match="NaN"):
        eprop.learning_signal(torch.tensor([[0.0, float("nan")], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="shape"):
        eprop.learning_signal(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="shape"):
        eprop.gradient(traces, torch.zeros(2, proj.n_post + 1))
    with pytest.raises(ValueError, match="feedback"):
        EProp(net, proj, readout, feedback="transpose")
    ac = ActorCriticReadout(net, 2)
    rule = RewardEProp(net, proj, ac)
    rtraces = rule.init_traces(2)
    with pytest.raises(ValueError, match="NaN"):
        rule.weight_update(w, rtraces, LearningSignal(modulator=torch.tensor([0.0, float("inf")])))
    with pytest.raises(ValueError, match="shape"):
        rule.weight_update(w, rtraces, LearningSignal(modulator=torch.zeros(3)))
    with pytest.raises(ValueError, match="gamma"):
        RewardEProp(net, proj, ac, gamma=1.5)
    with pytest.raises(ValueError, match="ActorCriticReadout"):
        RewardEProp(net, proj, readout)
    stdp = RewardModulatedSTDP(net, proj)
    straces = stdp.init_traces(2)
    with pytest.raises(ValueError, match="NaN"):
        stdp.weight_update(w, straces, LearningSignal(modulator=torch.tensor([float("nan"), 0.0])))
    with pytest.raises(ValueError, match="shape"):
        stdp.weight_update(w, straces, LearningSignal(modulator=torch.zeros(2, 1)))
    baseline = RewardBaseline(2)
    with pytest.raises(ValueError, match="NaN"):
        baseline.modulator(torch.tensor([float("nan"), 1.0]))
    scaling = SynapticScaling(net, incoming_projection(net, w, "premotor"))
    with pytest.raises(ValueError, match="elapsed_ms"):
        scaling.weight_update(w, scaling.init_traces(2), LearningSignal(elapsed_ms=float("nan")))
    with pytest.raises(ValueError, match="excitatory"):
        SynapticScaling(net, incoming_projection(net, w, "premotor", excitatory_only=False))


# ------------------------------------------------------------------------------------------ STDP window


def test_stdp_window_uses_arrival_times_and_feeds_a_slow_tag(brain10):
    net, w = brain10.network, brain10.weights
    proj = select_projection(net, w, [("prefrontal", "premotor")])
    rule = RewardModulatedSTDP(net, proj, a_plus_mv=1.0, a_minus_mv=2.0, tau_plus_ms=20.0,
                               tau_minus_ms=10.0, tau_eligibility_ms=500.0)  # fmt: skip
    k = int(torch.argmax(proj.delay_steps))
    pre, post, delay = int(proj.pre[k]), int(proj.post[k]), int(proj.delay_steps[k])
    assert delay > 3

    def run(pre_time: int, post_time: int, steps: int):
        traces = rule.init_traces(1)
        for t in range(1, steps + 1):
            spikes = torch.zeros(1, net.n_neurons)
            if t == pre_time:
                spikes[0, pre] = 1.0
            if t == post_time:
                spikes[0, post] = 1.0
            rule.step(traces, spikes)
        return traces.eligibility[k, 0].item()

    arrival = 10 + delay
    # post 4 steps after the *arrival*: LTP A₊ e^{−4/20}, then the tag decays with τ_e
    assert run(10, arrival + 4, arrival + 4) == pytest.approx(math.exp(-4 / 20), rel=1e-5)
    assert run(10, arrival + 4, arrival + 104) == pytest.approx(math.exp(-4 / 20 - 100 / 500), rel=1e-5)
    # post after the emission but 3 steps before the arrival: LTD −A₋ e^{−3/10}
    assert run(10, arrival - 3, arrival) == pytest.approx(-2.0 * math.exp(-3 / 10), rel=1e-5)
    # same step as the arrival counts as pre-before-post
    assert run(10, arrival, arrival) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------ learning tests
# The experiments live in scripts/plasticity_experiments.py (run it for several seeds); here one seed each.


def test_supervised_eprop_learns_a_pattern_with_a_fixed_readout(record_property):
    result = experiments.pattern_generation(seed=0, iterations=120)
    record_property("pattern", result)
    print(f"pattern generation: loss {result['loss_first']:.3f} -> {result['loss_last10']:.3f} "
          f"(zero output {result['loss_zero_output']:.3f})")  # fmt: skip
    assert result["loss_last10"] < 0.5 * result["loss_first"]
    assert result["loss_last10"] < 0.6 * result["loss_zero_output"]  # it generates the pattern, not just 0


@pytest.mark.parametrize(
    "mode,eligibility",
    [("learn", "exact"), ("zero_td", "exact"), ("readout_only", "exact"), ("learn", "midpoint")],
    ids=["learn", "zero_td", "readout_only", "learn-midpoint"],
)
def test_reward_eprop_learns_a_contextual_bandit_only_with_td_error_and_recurrent_learning(
    mode, eligibility, record_property
):
    result = experiments.contextual_bandit(seed=0, trials=120, steps=80, mode=mode, eligibility=eligibility)
    record_property("bandit", result)
    print(f"bandit ({mode}, {eligibility}): rewarded {result['reward_first50']:.3f} -> {result['reward_last50']:.3f}")
    if mode == "learn":
        assert result["reward_last50"] > 0.68  # 800 choices: chance is 0.5 ± 0.018
        assert result["reward_last50"] > result["reward_first50"] + 0.12
    else:  # δ = 0: no learning; readout only: the motor readout does not see the context
        assert result["reward_last50"] < 0.58
    if mode == "zero_td":
        assert result["mean_abs_dw_mv"] < 0.05  # only the (tiny) entropy bonus moved the weights


@pytest.fixture
def alif_small_brain(monkeypatch):
    """``experiments.small_brain`` with half of the premotor/motor excitatory neurons (the projections' targets
    and the readout's inputs) adaptive, so that e-prop uses the ALIF eligibility."""
    plain_brain = experiments.small_brain
    monkeypatch.setattr(experiments, "small_brain",
                        lambda seed=0, **overrides: plain_brain(seed, **{**ALIF_TARGETS, **overrides}))  # fmt: skip


@pytest.mark.slow
@pytest.mark.usefixtures("alif_small_brain")
def test_supervised_eprop_still_learns_the_pattern_when_the_targets_adapt(record_property):
    # measured (120 iterations, seeds 0/1): LIF 8.2 -> 1.5 / 14.3 -> 4.4, ALIF 9.5 -> 2.9 / 10.7 -> 3.2, zero
    # output 4.5 / 5.6: learning works with adaptive targets; which is better depends on the seed
    result = experiments.pattern_generation(seed=0, iterations=120)
    record_property("pattern_alif", result)
    print(f"pattern generation, ALIF targets: loss {result['loss_first']:.3f} -> {result['loss_last10']:.3f} "
          f"(zero output {result['loss_zero_output']:.3f})")  # fmt: skip
    assert result["loss_last10"] < 0.5 * result["loss_first"]
    assert result["loss_last10"] < 0.75 * result["loss_zero_output"]


@pytest.mark.slow
@pytest.mark.usefixtures("alif_small_brain")
def test_reward_eprop_still_learns_the_bandit_when_the_targets_adapt(record_property):
    result = experiments.contextual_bandit(seed=0, trials=120, steps=80)
    record_property("bandit_alif", result)
    print(f"bandit, ALIF targets: rewarded {result['reward_first50']:.3f} -> {result['reward_last50']:.3f}")
    assert result["reward_last50"] > 0.68 and result["reward_last50"] > result["reward_first50"] + 0.12


def test_reward_eprop_learns_a_continuous_contextual_bandit(record_property):
    result = experiments.contextual_bandit(seed=0, trials=120, steps=80, continuous=True)
    record_property("continuous_bandit", result)
    print(
        f"continuous bandit: reward {result['reward_first50']:.3f} -> {result['reward_last50']:.3f}, "
        f"error of the mean action {result['mean_error_first50']:.3f} -> {result['mean_error_last50']:.3f}"
    )
    assert result["mean_error_last50"] < 0.25  # 0.5 when the mean action ignores the context
    assert result["reward_last50"] > result["reward_first50"] + 0.1


@pytest.mark.parametrize("contingent", [True, False], ids=["reward-after-pairing", "random-reward"])
def test_three_factor_stdp_solves_the_distal_reward_problem(contingent, record_property):
    result = experiments.distal_reward(seed=0, trials=4, contingent=contingent)
    record_property("distal", result)
    kind = "contingent" if contingent else "random"
    print(f"distal reward ({kind}): target Δw {result['dw_target_mv']:.2e} mV, "
          f"controls {result['dw_controls_mean_mv']:.2e} ± {result['dw_controls_std_mv']:.2e}, "
          f"z {result['target_z']:.1f}, rank {result['target_rank']}/{result['n_controls']}")  # fmt: skip
    if contingent:
        assert result["target_rank"] <= 2 and result["target_z"] > 3.0
    else:
        assert abs(result["target_z"]) < 3.0


def test_homeostatic_scaling_moves_the_rate_toward_its_target(record_property):
    up = experiments.homeostasis(15.0)
    down = experiments.homeostasis(3.0)
    control = experiments.homeostasis(15.0, scaling=False)
    record_property("homeostasis", {"up": up, "down": down, "control": control})
    print(
        f"homeostasis: no scaling {control['rate_last_hz']:.2f} Hz; target 15: {up['rate_first_hz']:.2f} -> "
        f"{up['rate_last_hz']:.2f} Hz; target 3: {down['rate_first_hz']:.2f} -> {down['rate_last_hz']:.2f} Hz"
    )
    assert abs(control["rate_last_hz"] - control["rate_first_hz"]) < 0.5
    assert up["rate_last_hz"] > control["rate_last_hz"] + 4.0
    assert abs(up["rate_last_hz"] - 15.0) < 0.5 * abs(up["rate_first_hz"] - 15.0)
    assert down["rate_last_hz"] < control["rate_last_hz"] - 0.7  # the background drive sets a floor


# ------------------------------------------------------------------------------------------ devices and seeds


#: ALIF neurons in the targets of the rule tests' projections (premotor and motor cortex).
ALIF_TARGETS = dict(alif_roles=("premotor", "motor"), alif_fraction=0.5, tau_adaptation_ms=200.0, adaptation_mv=2.0)


def _rule_results(device: str, backend: str, alif: bool = False) -> list[torch.Tensor]:
    """Traces and updates of the three rule families after 60 steps of the same synthetic activity."""
    brain = small_brain(device=device, backend=backend, **(ALIF_TARGETS if alif else {}))
    net = brain.network
    readout = ActorCriticReadout(net, 2, seed=0)
    proj = select_projection(net, brain.weights, [("prefrontal", "premotor"), ("prefrontal", "motor")])
    rules = (RewardEProp(net, proj, readout, seed=0), RewardModulatedSTDP(net, proj),
             SynapticScaling(net, incoming_projection(net, brain.weights, "premotor")))  # fmt: skip
    traces = [rule.init_traces(4) for rule in rules]
    generator = torch.Generator().manual_seed(0)  # the same synthetic activity on every device
    for _ in range(60):
        spikes = (torch.rand(4, net.n_neurons, generator=generator) < 0.05).float().to(device)
        voltage = (25.0 * torch.rand(4, net.n_neurons, generator=generator)).to(device)
        adaptation = (2.0 * torch.rand(4, net.n_neurons, generator=generator)).to(device) * net.is_adaptive
        state = type("Activity", (), {"spikes": spikes, "v_pre_reset": voltage, "adaptation": adaptation})()
        for rule, trace in zip(rules, traces, strict=True):
            rule.step(trace, state)
    reward_traces = traces[0]
    assert rules[0].params.use_alif == alif and (not alif or reward_traces.eprop.adaptation.abs().sum() > 0)
    z_bar = torch.rand(4, readout.n_inputs, generator=generator).to(device)
    out = readout(z_bar)
    rules[0].record_decision(reward_traces, Decision(out, out.policy.argmax(1), z_bar))
    signal = LearningSignal(modulator=torch.tensor([1.0, -1.0, 0.5, 0.0], device=device), elapsed_ms=10.0)
    updates = [rule.weight_update(brain.weights, t, signal).cpu() for rule, t in zip(rules, traces, strict=True)]
    # the applied update (the numba path fuses Δw, the clamp and the cleared entropy term into one pass)
    before = brain.weights.index_select(0, proj.synapses).cpu()
    done = torch.tensor([False, True, False, False], device=device)
    mean_abs = rules[0].apply(brain.weights, reward_traces, signal._replace(done=done))["mean_abs_dw_mv"]
    after = brain.weights.index_select(0, proj.synapses).cpu()
    assert not torch.equal(before, after)
    return [reward_traces.eprop.eligibility.cpu(), *updates, after, mean_abs.cpu().reshape(1),
            reward_traces.recurrent.cpu(), reward_traces.entropy_recurrent.cpu() + 1.0]  # fmt: skip


def _assert_same_results(first: list[torch.Tensor], second: list[torch.Tensor]) -> None:
    for a, b in zip(first, second, strict=True):
        assert a.abs().max() > 0
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6 * float(a.abs().max()) + 1e-12)


@pytest.mark.parametrize("alif", [False, True], ids=["lif", "alif-targets"])
def test_rules_give_the_same_traces_and_updates_with_numba_and_torch(alif):
    _assert_same_results(_rule_results("cpu", "numba", alif), _rule_results("cpu", "torch", alif))


def _reward_eprop_on_alif_targets(backend: str, batch: int, nmda: bool = False, eligibility: str = "exact") -> tuple:
    """(network, RewardEProp on prefrontal → premotor/motor with ALIF targets (and NMDA onto them if ``nmda``),
    its traces for ``batch``, the brain's weights)."""
    brain = small_brain(backend=backend, **ALIF_TARGETS, **({"nmda_roles": ("premotor", "motor")} if nmda else {}))
    net = brain.network
    proj = select_projection(net, brain.weights, [("prefrontal", "premotor"), ("prefrontal", "motor")])
    rule = RewardEProp(net, proj, ActorCriticReadout(net, 2, seed=0), seed=0, eligibility=eligibility)
    return net, rule, rule.init_traces(batch), brain.weights


def _activity(spikes: torch.Tensor, voltage: torch.Tensor, adaptation: torch.Tensor) -> object:
    """A stand-in brain state with the three fields the e-prop traces read."""
    return type("Activity", (), {"spikes": spikes, "v_pre_reset": voltage, "adaptation": adaptation})()


@pytest.mark.parametrize("eligibility", ELIGIBILITY_MODES)
@pytest.mark.parametrize("nmda", [False, True], ids=["ampa", "nmda"])
@pytest.mark.parametrize("batch", [1, 3])
def test_deferred_numba_traces_match_torch_across_resets_and_partial_windows(batch, nmda, eligibility):
    """The numba path records ψ per step and advances ē over the recorded steps when ē is read: reading it
    mid-window, resetting some brains with steps pending, and running past the window size all give the
    torch path's traces (batch 1 and batch > 1 take different compiled loops); with ``"midpoint"`` both
    paths defer, and agree."""
    results, weight_changes = {}, set()  # weight_changes: the positions of the Δw snapshots
    for backend in ("numba", "torch"):
        net, rule, traces, weights = _reward_eprop_on_alif_targets(backend, batch, nmda, eligibility)
        assert rule.params.use_nmda == nmda and rule.params.use_alif
        generator = torch.Generator().manual_seed(1)
        snapshots = []
        for step in range(60):
            spikes = (torch.rand(batch, net.n_neurons, generator=generator) < 0.05).float()
            voltage = 25.0 * torch.rand(batch, net.n_neurons, generator=generator)
            adaptation = 2.0 * torch.rand(batch, net.n_neurons, generator=generator) * net.is_adaptive
            rule.step(traces, _activity(spikes, voltage, adaptation))
            if step == 30:
                snapshots.append(traces.eprop.eligibility.clone())  # read mid-window
            if step == 37:  # with steps pending
                rule.reset_traces(traces, torch.tensor([True, False, True][:batch]))
        snapshots += [traces.eprop.eligibility.clone(), traces.eprop.adaptation.clone()]
        # two decisions, each recorded and applied (the numba path's fused passes at batch 1): the γλ-filtered
        # traces, the entropy direction and each weight change (not the weights: Δw is tiny beside them)
        for modulator in ([0.7, -1.0, 0.4], [-0.5, 0.3, 1.0]):
            z_bar = torch.rand(batch, rule.readout.n_inputs, generator=generator)
            out = rule.readout(z_bar)
            rule.record_decision(traces, Decision(out, out.policy.argmax(1), z_bar))
            snapshots.append(traces.entropy_recurrent.clone())
            before = weights.index_select(0, rule.projection.synapses)
            rule.apply(weights, traces, LearningSignal(modulator=torch.tensor(modulator[:batch])))
            snapshots.append(traces.recurrent.clone())
            weight_changes.add(len(snapshots))
            snapshots.append(weights.index_select(0, rule.projection.synapses) - before)
        results[backend] = snapshots
    # The midpoint coefficients are summed in another order by the two paths (ē agrees to ~1e-7 relative), and a
    # weight change is a difference of weights: there it is known to a few of the weights' float32 units, not better.
    floor = 4 * torch.finfo(torch.float32).eps * float(weights.abs().max()) if eligibility == "midpoint" else 0.0
    for position, (numba_value, torch_value) in enumerate(zip(results["numba"], results["torch"], strict=True)):
        assert numba_value.abs().max() > 0
        tolerance = max(1e-6 * float(torch_value.abs().max()), floor if position in weight_changes else 0.0)
        assert torch.allclose(numba_value, torch_value, rtol=1e-4, atol=tolerance)


def _midpoint_reference(params, xs: list, psis: list, eligibility, epsilon) -> tuple:
    """ē and ε^a advanced over one window of recorded steps by the exact recursion (float64) with every synapse's
    presynaptic trace held at the mean of its values at the window's two middle steps: the ``"midpoint"`` rule's
    definition, written out step by step (``xs``: ``[P, B]`` per step, ``psis``: ``[V, B]`` per step)."""
    steps = len(xs)
    arrived = 0.5 * (xs[(steps - 1) // 2] + xs[steps // 2])
    post, index = params.projection.post_local, params.alif_synapses
    beta = torch.zeros(params.projection.n_synapses, 1, dtype=torch.float64)
    beta[index] = params.alif_adaptation_mv.double()
    adaptive = torch.zeros_like(eligibility)
    adaptive[index] = epsilon
    for psi in psis:
        psi_syn = psi[post]
        correction = adaptive * beta * psi_syn
        eligibility = eligibility * params.kappa + psi_syn * arrived - correction
        adaptive = adaptive * params.decay_adaptation + arrived * psi_syn - correction
    return eligibility, adaptive[index]


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_midpoint_eligibility_is_the_exact_recursion_with_the_trace_held_at_mid_window(backend):
    """``eligibility="midpoint"`` against its definition written out (windows of 10 steps, one of 3, reads after
    a reset), and equal to the exact rule when ē is read every step (a one-step window holds x exactly)."""
    batch = 2
    _, exact_rule, exact, _ = _reward_eprop_on_alif_targets("torch", batch, nmda=True)
    net, rule, traces, _ = _reward_eprop_on_alif_targets(backend, batch, nmda=True, eligibility="midpoint")
    params = exact_rule.params
    post_neurons, post_beta = params.projection.post_neurons, params.post_adaptation_mv
    eligibility = torch.zeros(params.projection.n_synapses, batch, dtype=torch.float64)
    epsilon = torch.zeros(params.alif_synapses.numel(), batch, dtype=torch.float64)
    generator = torch.Generator().manual_seed(3)
    xs, psis = [], []
    ends = {9, 19, 22, 32, 40, *range(41, 46)}  # windows of 10, 10, 3, 10, 8 steps, then of 1 step
    for step in range(46):
        spikes = (torch.rand(batch, net.n_neurons, generator=generator) < 0.05).float()
        voltage = 25.0 * torch.rand(batch, net.n_neurons, generator=generator)
        adaptation = 2.0 * torch.rand(batch, net.n_neurons, generator=generator) * net.is_adaptive
        activity = _activity(spikes, voltage, adaptation)
        exact_rule.step(exact, activity)
        rule.step(traces, activity)
        xs.append(history_gather(exact.eprop.history, exact.eprop.time).double())
        adaptive_threshold = voltage[:, post_neurons].t() - post_beta * adaptation[:, post_neurons].t()
        psis.append(pseudo_derivative(adaptive_threshold, params.threshold_mv, params.gamma_pd).double())
        if step in ends:
            eligibility, epsilon = _midpoint_reference(params, xs, psis, eligibility, epsilon)
            xs, psis = [], []
            assert torch.allclose(traces.eprop.eligibility.double(), eligibility, rtol=1e-4, atol=1e-7)
            assert torch.allclose(traces.eprop.adaptation.double(), epsilon, rtol=1e-4, atol=1e-7)
        if step >= 41:  # read every step from here on: the exact rule's values, advanced from the same start
            if step == 41:
                exact.eprop._eligibility.copy_(traces.eprop.eligibility)
                exact.eprop._adaptation.copy_(traces.eprop.adaptation)
            else:
                assert torch.allclose(traces.eprop.eligibility, exact.eprop.eligibility, rtol=1e-5, atol=1e-8)
                assert torch.allclose(traces.eprop.adaptation, exact.eprop.adaptation, rtol=1e-5, atol=1e-8)
    assert float(eligibility.abs().max()) > 0 and float(epsilon.abs().max()) > 0


def test_midpoint_eligibility_tracks_the_exact_one_on_a_running_brain():
    """On the small brain's own activity (input switching every 100 ms), ē read once per 10 ms decision:
    the midpoint approximation stays within a few percent of the exact ē (measured: cosine 0.9994, relative
    error 3.4 % over 3 s at 96×10)."""
    brain = small_brain(**ALIF_TARGETS, nmda_roles=("premotor", "motor"))
    net = brain.network
    pairs = [("prefrontal", "premotor"), ("prefrontal", "motor"), ("visual", "prefrontal")]
    projection = select_projection(net, brain.weights, pairs)
    readout = ActorCriticReadout(net, 2, seed=0)
    rules = [RewardEProp(net, projection, readout, seed=0, eligibility=mode) for mode in ("exact", "midpoint")]
    assert rules[0].params.use_alif and rules[0].params.use_nmda
    traces = [rule.init_traces(1) for rule in rules]
    state, generator, current = brain.initial_state(1), torch.Generator().manual_seed(0), None
    errors, cosines = [], []
    for step in range(1500):
        if step % 100 == 0:
            current = 15.0 * (torch.rand(1, net.n_neurons, generator=generator) < 0.2).float()
        state = brain.step(state, current)
        for rule, trace in zip(rules, traces, strict=True):
            rule.step(trace, state)
        if step % 10 == 9 and step > 300:
            exact, midpoint = (trace.eprop.eligibility.view(-1) for trace in traces)
            errors.append(float((midpoint - exact).norm() / exact.norm()))
            cosines.append(float(torch.nn.functional.cosine_similarity(midpoint, exact, dim=0)))
    assert max(errors) < 0.1 and min(cosines) > 0.99
    assert sum(errors) / len(errors) > 1e-3  # an approximation, not the exact rule


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs numba with 2 threads")
@pytest.mark.parametrize("eligibility", ELIGIBILITY_MODES)
def test_numba_synapse_passes_give_the_same_values_on_one_and_two_threads(monkeypatch, eligibility):
    """At batch 1 the per-synapse passes (e-prop's eligibility, reward e-prop's record and apply) run on numba's
    threads when there are several (synapses are split into blocks): ē, ε^a, ẽ and the weights are bit-identical to
    the one-thread passes, mean |Δw| (summed in another order) equal to rounding, and torch's thread count is left
    as it was."""
    monkeypatch.setattr(eprop_kernel, "PARALLEL_MIN_SYNAPSES", 1)  # a small brain's projection, in parallel too
    results, previous = [], numba.get_num_threads()
    torch_threads = torch.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            net, rule, traces, weights = _reward_eprop_on_alif_targets("numba", 1, True, eligibility)
            generator = torch.Generator().manual_seed(2)
            for _ in range(25):
                spikes = (torch.rand(1, net.n_neurons, generator=generator) < 0.05).float()
                voltage = 25.0 * torch.rand(1, net.n_neurons, generator=generator)
                adaptation = 2.0 * torch.rand(1, net.n_neurons, generator=generator) * net.is_adaptive
                rule.step(traces, _activity(spikes, voltage, adaptation))
            result = [traces.eprop.eligibility.clone(), traces.eprop.adaptation.clone()]
            z_bar = torch.rand(1, rule.readout.n_inputs, generator=generator)
            out = rule.readout(z_bar)
            rule.record_decision(traces, Decision(out, out.policy.argmax(1), z_bar))
            before = weights.index_select(0, rule.projection.synapses)
            mean_abs = rule.apply(weights, traces, LearningSignal(modulator=torch.tensor([0.8])))["mean_abs_dw_mv"]
            delta = weights.index_select(0, rule.projection.synapses) - before
            results.append([*result, traces.recurrent.clone(), delta, mean_abs.reshape(1)])
            assert torch.get_num_threads() == torch_threads
    finally:
        numba.set_num_threads(previous)
    *traces_one, mean_one = results[0]
    *traces_two, mean_two = results[1]
    for one, two in zip(traces_one, traces_two, strict=True):
        assert one.abs().max() > 0 and torch.equal(one, two)
    assert mean_one.item() > 0 and mean_one.item() == pytest.approx(mean_two.item(), rel=1e-6)  # a float64 sum


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_eprop_trace_step_refuses_activity_of_another_shape(backend):
    """The compiled passes do not check bounds, so a wrong batch or neuron count must raise before them (and
    the torch path says the same)."""
    net, rule, traces, _ = _reward_eprop_on_alif_targets(backend, 2)
    n = net.n_neurons
    good = torch.zeros(2, n)
    for spikes, voltage, adaptation, name in [
        (torch.zeros(3, n), torch.zeros(3, n), torch.zeros(3, n), "spikes"),
        (good[:, :10], good[:, :10], good[:, :10], "spikes"),
        (good, torch.zeros(3, n), good, "v_pre_reset"),
        (good, good, torch.zeros(2, n - 1), "adaptation"),
    ]:
        with pytest.raises(ValueError, match=rf"{name} must have shape \[2, {n}\]"):
            eprop_trace_step(rule.params, traces.eprop, spikes, voltage, adaptation)
    assert traces.eprop.time == 0


def test_numba_traces_never_go_subnormal_after_a_long_silence():
    """Traces of silent neurons decay toward zero; in float32 they would become subnormal (slow arithmetic on
    x86) within seconds. The numba pass sets them to zero below 1e-20 and otherwise agrees with torch."""
    results = {}
    for backend in ("numba", "torch"):
        net, rule, traces, _ = _reward_eprop_on_alif_targets(backend, 1)
        generator = torch.Generator().manual_seed(0)
        adaptation = torch.ones(1, net.n_neurons) * net.is_adaptive
        voltage = torch.full((1, net.n_neurons), 15.0)
        for step in range(4000):  # 40 ms of activity, then 3.96 s of silence at threshold-near voltages
            spikes = (torch.rand(1, net.n_neurons, generator=generator) < (0.2 if step < 40 else 0.0)).float()
            rule.step(traces, _activity(spikes, voltage, adaptation))
        results[backend] = traces.eprop
    tiny = torch.finfo(torch.float32).tiny
    numba_traces = results["numba"]
    for name in ("current", "membrane", "current_nmda", "membrane_nmda", "eligibility", "adaptation"):
        tensor = getattr(numba_traces, name)
        if tensor is not None:
            assert not bool(((tensor != 0) & (tensor.abs() < tiny)).any()), f"subnormal values in {name}"
            torch_tensor = getattr(results["torch"], name)
            assert torch.allclose(tensor, torch_tensor, rtol=1e-4, atol=1e-19)
    assert bool(((results["torch"].membrane != 0) & (results["torch"].membrane.abs() < tiny)).any()), (
        "the silence is long enough to make unflushed traces subnormal"
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("alif", [False, True], ids=["lif", "alif-targets"])
def test_rules_give_the_same_traces_and_updates_on_cuda(alif):
    _assert_same_results(_rule_results("cpu", "auto", alif), _rule_results("cuda", "auto", alif))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bandit_and_distal_reward_over_more_seeds(seed):
    learned = experiments.contextual_bandit(seed=seed)
    control = experiments.contextual_bandit(seed=seed, mode="zero_td")
    assert learned["reward_last50"] > 0.7 and control["reward_last50"] < 0.58
    # 8 trials: at 4 the test had little margin (seed 4: z 3.16) and seed 2 ranked the target 3rd (z 2.63) once the
    # exact-mean noise bank (commit 0f98f39) changed its noise; at 8, seeds 0-4 rank it first (z 4.7-6.5) and the
    # random-reward control leaves it at |z| <= 2.4
    distal = experiments.distal_reward(seed=seed, trials=8)
    assert distal["target_rank"] <= 2 and distal["target_z"] > 3.0
    assert abs(experiments.distal_reward(seed=seed, trials=8, contingent=False)["target_z"]) < 3.0


# ------------------------------------------------------------------------------ objects of another network


@pytest.fixture(scope="module")
def seed1_brain() -> SpikingBrain:
    return small_brain(seed=1)  # same size as brain10, another wiring


def test_a_projection_of_another_brain_is_refused(brain10, seed1_brain):
    """Before: a projection of brain A (seed 0) changed 1,519 of brain B's (seed 1) weights, 5 of them inhibitory."""
    proj_a = select_projection(brain10.network, brain10.weights, [("prefrontal", "premotor")])
    with pytest.raises(ValueError, match="projection made for seed=0, the network has 1"):
        RewardModulatedSTDP(seed1_brain.network, proj_a)
    for make in (lambda: EProp(seed1_brain.network, proj_a, LeakyReadout(seed1_brain.network, 1)),
                 lambda: RewardEProp(seed1_brain.network, proj_a, ActorCriticReadout(seed1_brain.network, 2)),
                 lambda: SynapticScaling(seed1_brain.network, incoming_projection(brain10.network, brain10.weights,
                                                                                  "premotor"))):  # fmt: skip
        with pytest.raises(ValueError, match="another network"):
            make()
    before = seed1_brain.weights.clone()
    with pytest.raises(ValueError, match=r"another network|synapses"):
        apply_weight_update(seed1_brain.weights, proj_a, torch.ones(proj_a.n_synapses))
    assert torch.equal(seed1_brain.weights, before)


def test_a_rule_refuses_another_brains_weights_state_and_traces(brain10):
    same_size = small_brain(seed=0, tau_m_ms=25.0)  # the same wiring and number of synapses, another network
    assert same_size.network.n_synapses == brain10.network.n_synapses
    proj = select_projection(brain10.network, brain10.weights, [("prefrontal", "premotor")])
    stdp = RewardModulatedSTDP(brain10.network, proj)
    traces = stdp.init_traces(1)
    before = same_size.weights.clone()
    with pytest.raises(ValueError, match=r"weights made for tau_m_ms=25.0, the projection has 20.0"):
        stdp.apply(same_size.weights, traces, LearningSignal(modulator=torch.ones(1)))
    assert torch.equal(same_size.weights, before)
    with pytest.raises(ValueError, match=r"weights made for tau_m_ms=25.0"):
        stdp.weight_update(same_size.weights, traces, LearningSignal(modulator=torch.ones(1)))
    # a clone of the right length carries no identity
    stdp.apply(brain10.weights.clone(), traces, LearningSignal(modulator=torch.ones(1)))
    with pytest.raises(ValueError, match=r"state made for tau_m_ms=25.0"):
        stdp.step(traces, same_size.initial_state(1))
    other = RewardModulatedSTDP(brain10.network, select_projection(brain10.network, brain10.weights,
                                                                   [("prefrontal", "motor")]))  # fmt: skip
    with pytest.raises(ValueError, match="another rule or projection"):
        other.weight_update(brain10.weights, traces, LearningSignal(modulator=torch.ones(1)))
    with pytest.raises(ValueError, match="another rule or projection"):
        other.step(traces, brain10.initial_state(1))


def test_a_projection_of_the_connectome_is_refused_on_its_null_model():
    brain = small_brain()
    rewired = small_brain(connectome="tvb96:rewired:3")
    proj = select_projection(brain.network, brain.weights, [("prefrontal", "premotor")])
    with pytest.raises(ValueError, match="connectome='tvb96', the network has 'tvb96:rewired:3'"):
        RewardModulatedSTDP(rewired.network, proj)


def test_a_readout_of_another_brain_is_refused(brain10):
    """Before: a readout of a 96×20 brain in a rule on a 96×10 brain gave a raw IndexError."""
    larger = SpikingBrain(BrainConfig(neurons_per_region=20, long_range_connection_prob=0.2, device=CPU))
    readout = ActorCriticReadout(larger.network, 2)
    proj = select_projection(brain10.network, brain10.weights, [("prefrontal", "premotor")])
    with pytest.raises(ValueError, match="readout made for neurons_per_region=20, the network has 10"):
        RewardEProp(brain10.network, proj, readout, feedback="symmetric")
    with pytest.raises(ValueError, match="readout made for"):
        EProp(brain10.network, proj, LeakyReadout(larger.network, 1))
    trace = readout.init_trace(1)
    with pytest.raises(ValueError, match=r"expected spikes .* made for tvb96, 1920 neurons"):
        readout.filter_spikes(trace, brain10.initial_state(1).spikes)
    with pytest.raises(ValueError, match="state made for neurons_per_region=10, the readout has 20"):
        readout.filter_spikes(trace, brain10.initial_state(1))
    readout.filter_spikes(trace, larger.initial_state(1))  # its own brain's state is accepted
