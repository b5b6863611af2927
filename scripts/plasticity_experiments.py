"""The learning experiments that verify the plasticity rules, on small brains (96 regions × 10 neurons).

Each experiment is a function returning its before/after numbers; ``tests/test_plasticity.py`` runs them at
test size, and this script runs them over several seeds and prints a table (the figures quoted in the
README and the issue come from here).

- ``pattern``: supervised e-prop, pattern generation (Bellec et al. 2020, Fig. 2 style). The frozen
  background noise of the brain (same initial state and noise keys each iteration) plays the role of the
  frozen input; a fixed random readout of motor/premotor excitatory neurons must reproduce a sum of four
  sinusoids (5–20 Hz) over 100 ms. Only recurrent weights learn (readout fixed), so any loss decrease is
  e-prop's.
- ``bandit``: reward-based e-prop, two-armed contextual bandit. Each 100 ms trial drives one of two halves
  of the prefrontal excitatory neurons (the context); at its end the policy readout (motor + premotor)
  picks an arm; reward 1 if arm = context. Plastic: prefrontal → premotor/motor. Controls: TD error
  replaced by zero; readout-only learning (recurrent learning rate 0).
- ``continuous``: the same with one continuous action (Gaussian around tanh), target ±0.5 by context,
  reward 1 − |a − a*|.
- ``distal``: three-factor STDP, distal reward (Izhikevich 2007). In 2 s trials one excitatory synapse
  (delay > 3 ms) is paired in a random half of the batch (its presynaptic neuron is made to fire, its
  postsynaptic neuron 5 ms after the spike arrives) and the outcome comes 1 s later: reward where the
  pairing happened; the modulator is reward minus a running baseline. Control: rewards independent of
  the pairing.
- ``homeostasis``: synaptic scaling of the excitatory inputs of the prefrontal neurons toward a target
  rate above or below the spontaneous rate, against a run without scaling.

Usage::

    python scripts/plasticity_experiments.py                 # all, 3 seeds (≈ 15 minutes on 2 cores)
    python scripts/plasticity_experiments.py --only bandit --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence

import torch

from encephagen_gym.brain import BrainConfig, SpikingBrain, clone_state
from encephagen_gym.brain.decoders import ActorCriticReadout, LeakyReadout
from encephagen_gym.plasticity import (
    ELIGIBILITY_MODES,
    Decision,
    EProp,
    LearningSignal,
    ReadoutActorCritic,
    RewardBaseline,
    RewardEProp,
    RewardModulatedSTDP,
    SynapticScaling,
    apply_weight_update,
    incoming_projection,
    select_projection,
    td_error,
)
from encephagen_gym.scripts.argtypes import int_at_least

__all__ = ["contextual_bandit", "distal_reward", "homeostasis", "main", "pattern_generation", "small_brain"]


def small_brain(seed: int = 0, **overrides: object) -> SpikingBrain:
    """96 regions × 10 neurons on the CPU, long-range connection probability 0.2 (instead of 0.02) so that
    role-to-role projections have hundreds of synapses at this size; ≈ 11 Hz spontaneous."""
    config = dict(neurons_per_region=10, long_range_connection_prob=0.2, device="cpu", seed=seed)
    return SpikingBrain(BrainConfig(**{**config, **overrides}))


def pattern_generation(
    seed: int = 0,
    iterations: int = 150,
    steps: int = 100,
    learning_rate: float = 3.0,
    feedback: str = "symmetric",
) -> dict[str, float]:
    """Supervised e-prop with a fixed readout; returns the loss of the first and of the last 10 iterations
    and the loss of a zero output (the target's energy)."""
    brain = small_brain(seed)
    net = brain.network
    readout = LeakyReadout(net, 1, seed=seed)
    pairs = [("premotor", "premotor"), ("motor", "motor"), ("prefrontal", "premotor"),
             ("prefrontal", "motor"), ("premotor", "motor")]  # fmt: skip
    projection = select_projection(net, brain.weights, pairs)
    rule = EProp(net, projection, readout, feedback=feedback)
    dt_s = net.config.dt_ms * 1e-3
    time_s = torch.arange(steps) * dt_s
    generator = torch.Generator().manual_seed(1000 + seed)
    target = torch.zeros(steps)
    for frequency in (5.0, 10.0, 15.0, 20.0):
        amplitude, phase = torch.rand(2, generator=generator).tolist()
        target += 0.5 * amplitude * torch.sin(2 * math.pi * (frequency * time_s + phase))
    start = brain.initial_state(1)
    brain.run(start, 200)
    losses = []
    for _ in range(iterations):
        state = clone_state(start)  # same initial state and noise keys: frozen background input
        traces, readout_trace = rule.init_traces(1), readout.init_trace(1)
        gradient = torch.zeros(projection.n_synapses)
        loss = torch.zeros(())
        for t in range(steps):
            state = brain.step(state)
            readout.filter_spikes(readout_trace, state.spikes)
            rule.step(traces, state)
            error = readout(readout_trace) - target[t]
            loss += 0.5 * error.square().sum()
            gradient += rule.gradient(traces, rule.learning_signal(error))
        losses.append(float(loss))
        apply_weight_update(brain.weights, projection, -learning_rate * gradient)
    return {
        "loss_first": losses[0],
        "loss_last10": sum(losses[-10:]) / 10,
        "loss_zero_output": 0.5 * float(target.square().sum()),
        "plastic_synapses": projection.n_synapses,
    }


def contextual_bandit(
    seed: int = 0,
    trials: int = 150,
    batch: int = 16,
    steps: int = 100,
    mode: str = "learn",
    learning_rate: float = 20.0,
    readout_learning_rate: float = 0.8,
    cue_mv: float = 15.0,
    continuous: bool = False,
    eligibility: str = "exact",
) -> dict[str, float]:
    """Reward-based e-prop on a two-armed contextual bandit. ``mode``: ``"learn"``, ``"zero_td"`` (TD error
    replaced by 0) or ``"readout_only"`` (recurrent learning rate 0); ``eligibility``: e-prop's ``"exact"`` or
    ``"midpoint"`` eligibility. Returns the mean reward in the first and last 50 trials (sampled actions) and
    the mean |Δw| (mV).

    Discrete (default): two actions, reward 1 if action = context (chance 0.5). ``continuous``: one action
    dimension, Gaussian around tanh, target a* = +0.5 (context 0) or −0.5 (context 1), reward
    1 − |clip(a, −1, 1) − a*|; also returns the error |tanh(y) − a*| of the mean action (0.5 at chance)."""
    if mode not in ("learn", "zero_td", "readout_only"):
        raise ValueError(f"unknown mode {mode!r}")
    brain = small_brain(seed)
    net = brain.network
    readout = ActorCriticReadout(net, 1 if continuous else 2, continuous=continuous, seed=seed)
    projection = select_projection(net, brain.weights, [("prefrontal", "premotor"), ("prefrontal", "motor")])
    recurrent_rate = 0.0 if mode == "readout_only" else learning_rate
    readout_rule = ReadoutActorCritic(readout, learning_rate=readout_learning_rate,
                                      value_learning_rate=readout_learning_rate, shared_bias_norm=True)  # fmt: skip
    rule = RewardEProp(net, projection, readout, learning_rate=recurrent_rate, feedback="random", seed=seed,
                       eligibility=eligibility)  # fmt: skip
    rules = (readout_rule, rule)
    initial = brain.weights[projection.synapses].clone()
    prefrontal = net.neurons_with_role("prefrontal", excitatory_only=True).view(-1, net.n_exc)
    halves = (prefrontal[:, : net.n_exc // 2].reshape(-1), prefrontal[:, net.n_exc // 2 :].reshape(-1))
    cues = torch.zeros(2, net.n_neurons)
    for context, neurons in enumerate(halves):
        cues[context, neurons] = cue_mv
    generator = torch.Generator().manual_seed(100 + seed)
    state, z_bar = brain.initial_state(batch), readout.init_trace(batch)
    traces = [r.init_traces(batch) for r in rules]
    rewarded, errors = [], []
    done = torch.ones(batch)
    targets = torch.tensor([0.5, -0.5])
    for _ in range(trials):
        context = torch.randint(0, 2, (batch,), generator=generator)
        current = cues.index_select(0, context)
        for _ in range(steps):
            state = brain.step(state, current)
            readout.filter_spikes(z_bar, state.spikes)
            for r, t in zip(rules, traces, strict=True):
                r.step(t, state)
        output = readout(z_bar)
        action = readout.sample(output, generator)
        for r, t in zip(rules, traces, strict=True):
            r.record_decision(t, Decision(output, action, z_bar))
        if continuous:
            target = targets.index_select(0, context)
            reward = 1.0 - (action[:, 0].clamp(-1.0, 1.0) - target).abs()
            errors.append(float((readout.mean(output)[:, 0] - target).abs().mean()))
        else:
            reward = (action == context).float()
        delta = td_error(reward, done, output.value, torch.zeros(batch), 0.99)  # one-step episodes
        if mode == "zero_td":
            delta = torch.zeros_like(delta)
        signal = LearningSignal(td_error=delta, modulator=delta, done=done)  # the raw δ as third factor
        for r, t in zip(rules, traces, strict=True):
            r.apply(brain.weights, t, signal)
        rewarded.append(float(reward.mean()))
    window = min(50, trials)
    result = {
        "reward_first50": sum(rewarded[:window]) / window,
        "reward_last50": sum(rewarded[-window:]) / window,
        "mean_abs_dw_mv": float((brain.weights[projection.synapses] - initial).abs().mean()),
        "plastic_synapses": projection.n_synapses,
    }
    if continuous:
        result["mean_error_first50"] = sum(errors[:window]) / window
        result["mean_error_last50"] = sum(errors[-window:]) / window
    return result


def distal_reward(
    seed: int = 0,
    trials: int = 3,
    batch: int = 16,
    contingent: bool = True,
    reward_delay_ms: float = 1000.0,
    trial_ms: float = 2000.0,
    background_eta: float = 0.6,
) -> dict[str, float]:
    """Three-factor STDP on the distal-reward problem, in trials (Frémaux & Gerstner 2016's success signal).

    Each ``trial_ms`` trial, in a random half of the batch elements, one target synapse (excitatory, delay
    > 3 ms) is paired at 0.5 s: its presynaptic neuron is made to fire and its postsynaptic neuron 5 ms
    after the spike arrives. The outcome comes ``reward_delay_ms`` after the pairing time: R = 1 where the
    pairing happened (``contingent``), or R ~ Bernoulli(0.5) independent of it (control). The modulator
    M = R − R̄ (running baseline, τ 10 trials, starting at the mean reward 0.5) gates the synaptic tags
    once per trial, at the outcome. Background η 0.6 (≈ 2 Hz spontaneous, Izhikevich's low-rate regime).

    Returns the target's Δw, the control synapses' mean and std, the target's z-score and rank among the
    other excitatory synapses (0 = the target changed most) and the number of rewards."""
    brain = small_brain(seed, background_eta=background_eta)
    net = brain.network
    dt = net.config.dt_ms
    projection = select_projection(net, brain.weights, [("prefrontal", "premotor"), ("premotor", "premotor")])
    rule = RewardModulatedSTDP(net, projection, tau_eligibility_ms=1000.0)
    initial = brain.weights[projection.synapses].clone()
    generator = torch.Generator().manual_seed(seed)
    candidates = (projection.is_excitatory & (projection.delay_steps > 3)).nonzero().squeeze(1)
    target = int(candidates[torch.randint(len(candidates), (1,), generator=generator)])
    pre, post = int(projection.pre[target]), int(projection.post[target])
    delay = int(projection.delay_steps[target])
    pairing_step = round(500.0 / dt)
    post_step = pairing_step + delay + round(5.0 / dt)  # post fires 5 ms after the arrival
    outcome_step = pairing_step + round(reward_delay_ms / dt)
    trial_steps = round(trial_ms / dt)
    if not post_step < outcome_step < trial_steps:
        raise ValueError("the outcome must follow the pairing within the trial")
    kick_mv = 1000.0  # a one-step kick that makes a non-refractory neuron fire
    state, traces = brain.initial_state(batch), rule.init_traces(batch)
    baseline = RewardBaseline(batch, tau_updates=10.0, initial=0.5)
    kick = torch.zeros(batch, net.n_neurons)
    n_rewards = 0
    for _ in range(trials):
        paired = torch.rand(batch, generator=generator) < 0.5
        reward = paired.float() if contingent else (torch.rand(batch, generator=generator) < 0.5).float()
        for t in range(trial_steps):
            kick.zero_()
            if t == pairing_step:
                kick[:, pre] = paired * kick_mv
            if t == post_step:
                kick[:, post] = paired * kick_mv
            state = brain.step(state, kick)
            rule.step(traces, state)
            if t == outcome_step:
                rule.apply(brain.weights, traces, LearningSignal(modulator=baseline.modulator(reward)))
                n_rewards += int(reward.sum())
    change = brain.weights[projection.synapses] - initial
    others = projection.is_excitatory & (torch.arange(projection.n_synapses) != target)
    controls = change[others]
    return {
        "dw_target_mv": float(change[target]),
        "dw_controls_mean_mv": float(controls.mean()),
        "dw_controls_std_mv": float(controls.std()),
        "target_z": float((change[target] - controls.mean()) / controls.std()),
        "target_rank": int((controls > change[target]).sum()),
        "n_controls": int(controls.numel()),
        "n_rewards": n_rewards,
    }


def homeostasis(
    target_rate_hz: float,
    seed: int = 0,
    seconds: float = 2.0,
    batch: int = 4,
    scaling: bool = True,
    tau_scaling_ms: float = 500.0,
) -> dict[str, float]:
    """Synaptic scaling of the excitatory inputs of prefrontal neurons (fast τ for a short test), on a
    96 × 50 brain with local connection probability 0.4 (so that recurrent excitation matters as in the
    full brain). Returns the prefrontal rate over the first and the last 0.5 s."""
    config = BrainConfig(neurons_per_region=50, local_connection_prob=0.4, device="cpu", seed=seed)
    brain = SpikingBrain(config)
    net = brain.network
    projection = incoming_projection(net, brain.weights, "prefrontal")
    rule = SynapticScaling(net, projection, target_rate_hz=target_rate_hz, tau_rate_ms=200.0,
                           tau_scaling_ms=tau_scaling_ms)  # fmt: skip
    state, traces = brain.initial_state(batch), rule.init_traces(batch)
    brain.run(state, 200)
    activity = brain.activity(batch)
    window = round(500.0 / net.config.dt_ms)
    update_every = 10
    rates = []
    for t in range(round(seconds * 1000.0 / net.config.dt_ms)):
        state = brain.step(state)
        rule.step(traces, state)
        activity.update(state.spikes)
        if scaling and t % update_every == update_every - 1:
            rule.apply(brain.weights, traces, LearningSignal(elapsed_ms=update_every * net.config.dt_ms))
        if activity.steps == window:
            rates.append(float(activity.role_rates_hz()["prefrontal"].mean()))
            activity.reset()
    return {"rate_first_hz": rates[0], "rate_last_hz": rates[-1], "target_hz": target_rate_hz}


def _print(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    keys = list(rows[0])
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(f"{row[k]:.4g}" if isinstance(row[k], float) else str(row[k]) for k in keys))


EXPERIMENTS = ("pattern", "bandit", "continuous", "distal", "homeostasis")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Learning experiments of the plasticity rules with their controls, on small brains (96×10).",
        epilog="experiments: pattern (supervised e-prop), bandit and continuous (reward-based e-prop with zero-TD "
        "and readout-only controls), distal (three-factor STDP with a random-reward control), homeostasis "
        "(synaptic scaling with a no-scaling control)",
    )
    parser.add_argument("--only", nargs="+", choices=EXPERIMENTS, default=list(EXPERIMENTS), help="experiments to run")
    parser.add_argument("--seeds", type=int_at_least(0), nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int_at_least(1), default=1)
    parser.add_argument("--eligibility", choices=ELIGIBILITY_MODES, default="exact",
                        help="reward e-prop's eligibility in the bandit experiments")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="the test-size versions (one seed: a few minutes)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    quick = dict(iterations=120) if args.quick else {}
    bandit = dict(trials=120, steps=80) if args.quick else {}
    bandit["eligibility"] = args.eligibility
    seeds = args.seeds[:1] if args.quick else args.seeds
    start = time.perf_counter()
    if "pattern" in args.only:
        rows = [{"seed": s, "feedback": fb, **pattern_generation(s, feedback=fb, **quick)}
                for s in seeds for fb in ("symmetric", "random")]  # fmt: skip
        _print("supervised e-prop, pattern generation (loss per 100 ms trial)", rows)
    if "bandit" in args.only:
        rows = [{"seed": s, "mode": m, **contextual_bandit(s, mode=m, **bandit)}
                for s in seeds for m in ("learn", "zero_td", "readout_only")]  # fmt: skip
        _print("reward-based e-prop, contextual bandit (fraction rewarded, chance 0.5)", rows)
    if "continuous" in args.only:
        rows = [{"seed": s, "mode": m, **contextual_bandit(s, mode=m, continuous=True, **bandit)}
                for s in seeds for m in ("learn", "zero_td", "readout_only")]  # fmt: skip
        _print("reward-based e-prop, continuous contextual bandit (mean reward; error of the mean action)", rows)
    if "distal" in args.only:
        rows = [{"seed": s, "contingent": c, **distal_reward(s, contingent=c, trials=4 if args.quick else 3)}
                for s in seeds for c in (True, False)]  # fmt: skip
        _print("three-factor STDP, distal reward (rank 0 = target potentiated most)", rows)
    if "homeostasis" in args.only:
        rows = [{"seed": s, "scaling": on, **homeostasis(target, s, scaling=on)}
                for s in seeds for target in (15.0, 3.0) for on in (True, False)]  # fmt: skip
        _print("homeostatic scaling, prefrontal rate (Hz)", rows)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
