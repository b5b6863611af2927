"""The algorithms that ``encephagen-train`` and ``encephagen-compare`` know by name: one table.

Learners are stable-baselines3 algorithms (``ppo``, ``a2c``, ``sac``, ``td3``), sb3-contrib's ``recurrent_ppo``
(the cognitive tasks have blank delay periods, so a memoryless policy cannot solve them) and the connectome
brain (``brain``). The non-learning rows ``random``, ``zero`` and ``reference`` are controls that go through the
same evaluation and output code (they have SB3's ``predict`` contract, see :mod:`encephagen_gym.agents.scripted`).

Classes are named by import strings and loaded on first use, so a missing optional part (e.g. the brain agent
on an older checkout) only fails when that row is asked for.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any

from gymnasium import spaces

__all__ = ["ALGORITHMS", "Algorithm", "get_algorithm"]


@dataclass(frozen=True)
class Algorithm:
    """One row of the table: how to build the agent and which tasks it applies to.

    Attributes:
        name: the name used on the command line and in run directories.
        target: ``"module:Class"`` of the algorithm (learners: an SB3 ``BaseAlgorithm`` subclass; controls: a
            :class:`~encephagen_gym.agents.scripted.ScriptedAgent` subclass).
        learns: False for the controls (no training, no ``model.zip``: they are only evaluated).
        default_policy: policy name passed to the constructor when a preset names none.
        action_spaces: action-space types the algorithm supports.
        description: one line for ``--help`` and the README.
        sampled_eval_spaces: action-space types in which the policy is evaluated as it acts (sampled) instead of
            greedily (SB3's default): the brain's discrete decisions are a sampled process whose greedy version
            never leaves its withhold default (a stochastic policy that responds in a window with probability p
            has an argmax that never responds), so it is evaluated as it behaves; its continuous actions are
            evaluated at the Gaussian's mean, as SB3's. A model may decide for itself
            (``BrainAgent.greedy_evaluation``: a gated head is evaluated greedily), and ``encephagen-train``
            asks it first.
    """

    name: str
    target: str
    learns: bool
    default_policy: str | None
    action_spaces: tuple[type[spaces.Space], ...]
    description: str
    sampled_eval_spaces: tuple[type[spaces.Space], ...] = ()

    def load_class(self) -> type:
        """Import and return the algorithm's class (ImportError names the row when its module is missing)."""
        module_name, _, class_name = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ImportError(
                f"algorithm {self.name!r} needs {module_name!r}, which cannot be imported: {error}"
            ) from error
        return getattr(module, class_name)

    def deterministic_eval(self, action_space: spaces.Space) -> bool:
        """Whether held-out evaluation in ``action_space`` uses the greedy policy (see ``sampled_eval_spaces``)."""
        return not isinstance(action_space, self.sampled_eval_spaces)

    def supports(self, action_space: spaces.Space) -> bool:
        """Whether the algorithm can act in ``action_space``."""
        return isinstance(action_space, self.action_spaces)

    def check_supports(self, action_space: spaces.Space, env_id: str) -> None:
        """Raise ``ValueError`` when the algorithm cannot act in ``env_id``'s ``action_space``."""
        if not self.supports(action_space):
            allowed = " or ".join(space.__name__ for space in self.action_spaces)
            raise ValueError(f"algorithm {self.name!r} needs a {allowed} action space; {env_id} has {action_space}")


_BOTH = (spaces.Discrete, spaces.Box)
_BOX = (spaces.Box,)

ALGORITHMS: dict[str, Algorithm] = {
    algo.name: algo
    for algo in (
        Algorithm(
            "brain",
            "encephagen_gym.agents.brain_agent:BrainAgent",
            True,
            "ConnectomePolicy",
            _BOTH,
            "connectome-wired spiking brain learning online with local plasticity (BrainAgent)",
            sampled_eval_spaces=(spaces.Discrete,),
        ),
        Algorithm("ppo", "stable_baselines3:PPO", True, "MlpPolicy", _BOTH, "PPO (stable-baselines3)"),
        Algorithm("a2c", "stable_baselines3:A2C", True, "MlpPolicy", _BOTH, "A2C (stable-baselines3)"),
        Algorithm("sac", "stable_baselines3:SAC", True, "MlpPolicy", _BOX, "SAC (stable-baselines3; Box actions)"),
        Algorithm("td3", "stable_baselines3:TD3", True, "MlpPolicy", _BOX, "TD3 (stable-baselines3; Box actions)"),
        Algorithm(
            "recurrent_ppo",
            "sb3_contrib:RecurrentPPO",
            True,
            "MlpLstmPolicy",
            _BOTH,
            "PPO with an LSTM policy (sb3-contrib), the memory baseline",
        ),
        Algorithm(
            "random",
            "encephagen_gym.agents.scripted:RandomAgent",
            False,
            None,
            _BOTH,
            "uniformly random actions (control)",
        ),
        Algorithm(
            "zero",
            "encephagen_gym.agents.scripted:ZeroAgent",
            False,
            None,
            _BOTH,
            "the no-op action: 0 (withhold / fixate) or zero torque (control)",
        ),
        Algorithm(
            "reference",
            "encephagen_gym.agents.scripted:ReferenceAgent",
            False,
            None,
            _BOTH,
            "the env's scripted reference policy (env.unwrapped.make_reference_policy())",
        ),
    )
}


def get_algorithm(name: str) -> Algorithm:
    """The table's row called ``name``; ``ValueError`` listing the known names otherwise."""
    try:
        return ALGORITHMS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}") from None


def constructor_kwargs(cls: type[Any]) -> set[str]:
    """Names of the keyword arguments ``cls.__init__`` accepts (for checking hyperparameter names)."""
    parameters = inspect.signature(cls.__init__).parameters
    return {name for name, p in parameters.items() if name != "self" and p.kind is not p.VAR_POSITIONAL}
