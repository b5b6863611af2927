"""Command-line entry points of encephagen-gym (installed as ``encephagen_gym.scripts``)."""
