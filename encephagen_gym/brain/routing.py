"""Routing: which region roles take the input, which hold it, and which decide — and the pathways between them.

A brain that acts in a task must carry what the encoder puts into the sensory regions to the regions its
readout reads (the action regions), across the task's delays. The plain connectome brain does not: at
96 × 20 neurons a motor neuron receives on average 0.3 long-range synapses from any one region, and issue 10's
probe found stimulus identity decodable in visual cortex but at chance in motor and premotor cortex. The
agent's brain therefore adds *pathways* (``BrainConfig.pathways``): a fixed number of excitatory inputs per
neuron, along the connectome's edges, from the input roles to the association roles and from both to the
action roles — the synapses that learning strengthens (they are the agent's default plastic projection).

| group | roles | why |
|---|---|---|
| input | visual, auditory, somatosensory, thalamus, amygdala | driven by the encoder (senses, cues, the US) |
| association | prefrontal, temporal, parietal | can hold information across a delay |
| action | premotor, motor, basal_ganglia | read by the actor-critic readout |

Defaults (``pathway_in_degree`` 20, ``pathway_j_mv`` 0.2 mV) were measured so that the spontaneous rates of
the target roles rise by at most 15 % (96 × 20, 2 s, 4 brains: association 8.0–8.2 → 9.1–9.4 Hz, action
7.5–7.9 → 8.6–9.2 Hz; at 0.5 mV they rose by 40 %).

Stronger pathways carry more, at a cost (issue 10's probe, Conditioning, 96 × 20, 3 seeds × 200 trials; the
spontaneous state from ``scripts/brain_activity.py --agent-brain --brain pathway_j_mv=J``): at 1.0 mV the CS is
decodable from the action regions while it is on screen (0.94; 0.54 at 0.2 mV) and from the ALIF association
cells' rates in the response window, 200 ms after it (0.86 ± 0.14; chance 0.52), but the action regions' spontaneous
rates rise from ≈ 8 to 13–15 Hz (ISI CV 0.72 → 0.67). Pattern classes and the working-memory sample are not held
at either strength.

``pathway_inhibition`` f (off by default) lets strong pathways also drive the target regions' inhibitory neurons
(``pathway_in_degree`` synapses of f × ``pathway_j_mv`` each, from the same sources). At 1 mV it brings the
*excitatory* rates back while the CS still reaches the action regions, at the price of fast-firing interneurons
(one brain, 3 s, ``scripts/brain_activity.py --agent-brain --brain pathway_j_mv=1.0 pathway_inhibition=f``, E / I
rates in Hz; probe as above, one seed, 100 trials):

| pathway_j_mv, f | action E | action I | all E / all I | CS in action E: on screen / 200 ms trace at the response |
|---|---|---|---|---|
| 0.2, 0 (default) | 8.4–9.0 | 7.2–8.2 | 7.6 / 8.4 | 0.54 / — |
| 1.0, 0 | 13.9–16.4 | 7.5–8.6 | 10.3 / 8.8 | 0.99 / 0.74 |
| 1.0, 4 | 10.5–12.9 | 29–35 | 9.0 / 22.9 | 1.00 / 0.72 |
| 1.0, 8 | 9.0–11.6 | 45–55 | 8.4 / 34.6 | 1.00 / 0.78 |
| 2.0, 8 | 14.2–21.4 | 86–106 | 11.1 / 57.0 | 1.00 / 0.94 (3 seeds × 200 trials) |

At 1 mV, f = 8 and a 200 ms readout filter, ``BrainAgent`` (reward e-prop, Conditioning, seed 0, 200 k steps,
16 envs) still ended responding in every response window (discrimination 0.00). At **2 mV, f = 8** it learns: the
association cells hold the CS through the trace (probe, 3 seeds × 200 trials: ALIF rates in the response window
0.96), the action regions' filtered activity at the response carries it (0.94), and reward e-prop with a 200 ms
readout filter reaches a discrimination of 0.95 ± 0.03 in 200 k steps (5 seeds; the readout alone on the same
brain 0.45 ± 0.23, frozen −0.00 ± 0.05; on the rewired null model 0.96 ± 0.02, 3 seeds); after learning the action
regions' rates in the trace interval carry the CS (0.64 → 1.00). The slow readout filter is necessary (20 ms:
0.00 on 2 seeds), the ALIF cells are not (without them 0.97, 0.96); without NMDA or without the feedforward
inhibition 2 of 3 seeds learn. That is the Conditioning preset of
``agents/hyperparams/brain.yml``. It is not the default: the target regions' excitatory neurons fire at 11–21 Hz
and their interneurons at 86–106 Hz (all neurons 20 Hz, ISI CV 0.45–0.56 in the targets), far from the plain
brain's spontaneous state.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

__all__ = ["ACTION_ROLES", "AGENT_PATHWAYS", "ASSOCIATION_ROLES", "INPUT_ROLES", "agent_pathways"]

INPUT_ROLES: tuple[str, ...] = ("visual", "auditory", "somatosensory", "thalamus", "amygdala")
ASSOCIATION_ROLES: tuple[str, ...] = ("prefrontal", "temporal", "parietal")
ACTION_ROLES: tuple[str, ...] = ("premotor", "motor", "basal_ganglia")


def agent_pathways(association_inputs: Sequence[str] = INPUT_ROLES) -> tuple[tuple[str, str], ...]:
    """:data:`AGENT_PATHWAYS` with only the input roles ``association_inputs`` feeding the association roles
    (every input role still feeds the action roles). E.g. ``("visual",)``: the association regions hold what is
    seen, not the cue or other senses — issue 10's probe found the pattern class and the working-memory sample
    held better that way (README). ValueError for a role that is not an input role."""
    if isinstance(association_inputs, str):
        raise ValueError(f"association_inputs must be a sequence of input roles, got the string {association_inputs!r}")
    unknown = sorted(set(association_inputs) - set(INPUT_ROLES))
    if unknown:
        raise ValueError(f"association_inputs {unknown} are not input roles; input roles: {list(INPUT_ROLES)}")
    chosen = tuple(role for role in INPUT_ROLES if role in set(association_inputs))
    return tuple(itertools.product(chosen, ASSOCIATION_ROLES)) + tuple(
        itertools.product(INPUT_ROLES + ASSOCIATION_ROLES, ACTION_ROLES)
    )


#: The pathways of the agent's brain: input → association, and input and association → action.
AGENT_PATHWAYS: tuple[tuple[str, str], ...] = agent_pathways()
