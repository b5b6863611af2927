"""Agents that act in encephagen-gym tasks (installed as ``encephagen_gym.agents``).

The spiking-brain agent and the baseline presets arrive with their own issues; the package exists now so that
the layout and install mapping are fixed from the start.
"""
