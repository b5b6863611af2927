"""encephagen-gym: neuroscience and embodiment tasks for Gymnasium, and a connectome-wired spiking brain.

Importing the package registers the ``Encephagen-*-v0`` environment ids with Gymnasium. Entry points are
strings, so importing this package imports neither the envs nor torch.
"""

from __future__ import annotations

from encephagen_gym._registration import ENV_SPECS, register_envs

__version__ = "0.1.0"

__all__ = ["ENV_SPECS", "__version__", "register_envs"]

register_envs()
