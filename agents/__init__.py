"""Agents that act in encephagen-gym tasks (installed as ``encephagen_gym.agents``).

:class:`BrainAgent` is the connectome spiking brain as a stable-baselines3 algorithm (online local learning;
policy :class:`ConnectomePolicy`); :class:`EpisodeMetricsCallback` logs every env's ``info["metrics"]`` as
``rollout/<metric>`` for any SB3 algorithm.
"""

from encephagen_gym.agents.brain_agent import RULES, BrainAgent
from encephagen_gym.agents.episode_metrics import EpisodeMetrics, EpisodeMetricsCallback
from encephagen_gym.agents.policies import DEFAULT_ACTION_ROLES, ConnectomePolicy, ConnectomeState

__all__ = [
    "DEFAULT_ACTION_ROLES",
    "RULES",
    "BrainAgent",
    "ConnectomePolicy",
    "ConnectomeState",
    "EpisodeMetrics",
    "EpisodeMetricsCallback",
]
