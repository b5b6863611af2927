"""What the console shows the brain: named 8×8 images, tones and touches, as input currents (mV) per neuron.

Every encoding drives only excitatory neurons of the regions of one role, with a current between 0 and the
amplitude (mV: the steady depolarisation it would cause, see :mod:`encephagen_gym.brain.simulator`):

- **Images** (``look``, ``teach``, ``memory``): :func:`image_current`. The visual regions' excitatory neurons are
  listed region by region (file order) and neuron j of that list is driven by pixel ``j mod 64`` (row-major), so
  each pixel owns its own, disjoint subset of visual neurons spread over the visual regions (20 neurons per pixel
  on the 96×200 brain). A neuron's current is the amplitude times its pixel's value (0 to 1: digits are grey
  levels). With fewer than 64 visual excitatory neurons, neuron j takes the mean of pixels j, j + n, j + 2n, …
  This is the console's own mapping, kept in this one function so that the shared observation encoder of
  ``encephagen_gym.brain`` can replace it.
- **Tones** (``sound HZ``): :func:`tone_current`, a tonotopic map in every auditory region: its excitatory neurons
  prefer frequencies spaced evenly in octaves from 125 Hz to 8 kHz and respond with a Gaussian tuning curve of
  ``TONE_TUNING_OCTAVES`` (1 octave) standard deviation, so a tone drives about a third of them.
- **Touch** (``touch SIDE``): :func:`touch_current`, all excitatory neurons of the somatosensory regions of the
  hemisphere opposite the touched side (both hemispheres for ``both``), as the body maps onto contralateral
  cortex.
- **US** (``teach``): :func:`role_current` into the amygdala.

Patterns: ``A``–``E`` are the seeded binary prototypes of ``Encephagen-PatternRecognition-v0`` (its defaults:
5 classes, ``task_seed=0``); ``0``–``9`` are the first image of each class in scikit-learn's digits (the task's
train split, ``task_seed=0``).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from encephagen_gym.brain.network import Network

__all__ = [
    "PATTERN_NAMES",
    "SIDES",
    "TONE_RANGE_HZ",
    "image_current",
    "pattern_image",
    "role_current",
    "tone_current",
    "touch_current",
]

PROTOTYPE_NAMES = ("A", "B", "C", "D", "E")
DIGIT_NAMES = tuple(str(d) for d in range(10))
PATTERN_NAMES = PROTOTYPE_NAMES + DIGIT_NAMES
SIDES = ("left", "right", "both")
#: Frequencies the console accepts (Hz) and the span of the tonotopic map (Hz).
TONE_RANGE_HZ = (20.0, 20000.0)
TONOTOPIC_MAP_HZ = (125.0, 8000.0)
TONE_TUNING_OCTAVES = 1.0
N_PIXELS = 64


@lru_cache(maxsize=1)
def _prototypes() -> np.ndarray:
    from encephagen_gym.envs.pattern_recognition import PatternRecognitionEnv

    return PatternRecognitionEnv(n_classes=len(PROTOTYPE_NAMES), task_seed=0).prototypes


@lru_cache(maxsize=1)
def _digit_examples() -> np.ndarray:
    from encephagen_gym.envs.stimuli import digits_split

    images, labels = digits_split("train", 10, task_seed=0)
    return np.stack([images[np.flatnonzero(labels == d)[0]] for d in range(10)])


def pattern_image(name: str) -> np.ndarray:
    """The 8×8 image (float32 in [0, 1]) called ``name`` (``A``–``E`` or ``0``–``9``); ValueError otherwise."""
    key = name.upper() if isinstance(name, str) else name
    if key in PROTOTYPE_NAMES:
        return _prototypes()[PROTOTYPE_NAMES.index(key)].astype(np.float32)
    if key in DIGIT_NAMES:
        return _digit_examples()[int(key)].astype(np.float32)
    raise ValueError(f"unknown pattern {name!r}; patterns are A-E (task prototypes) and 0-9 (digits)")


def _excitatory_of(network: Network, regions: np.ndarray) -> torch.Tensor:
    return network.neurons_of_regions(regions, excitatory_only=True)


def image_current(network: Network, image: np.ndarray, amplitude_mv: float) -> torch.Tensor:
    """``[N]`` current (mV) that shows the 8×8 ``image`` (values in [0, 1]) to the visual regions (see the
    module docstring for the pixel → neuron mapping)."""
    pixels = np.asarray(image, dtype=np.float32).reshape(-1)
    if pixels.shape != (N_PIXELS,) or not np.all((pixels >= 0) & (pixels <= 1)):
        raise ValueError("image must be 8x8 with values in [0, 1]")
    neurons = _excitatory_of(network, network.connectome.regions_with_role("visual"))
    n = neurons.numel()
    if n >= N_PIXELS:
        drive = pixels[np.arange(n) % N_PIXELS]
    else:  # fewer neurons than pixels: each neuron averages the pixels that map onto it
        drive = np.array([pixels[j::n].mean() for j in range(n)], dtype=np.float32)
    current = torch.zeros(network.n_neurons, device=network.device)
    current[neurons] = torch.as_tensor(drive * amplitude_mv, device=network.device)
    return current


def tone_current(network: Network, hz: float, amplitude_mv: float) -> torch.Tensor:
    """``[N]`` current (mV) of a pure tone of ``hz`` Hz into the auditory regions' tonotopic maps."""
    low, high = TONE_RANGE_HZ
    if not (isinstance(hz, int | float) and math.isfinite(hz) and low <= hz <= high):
        raise ValueError(f"tone frequency must be between {low:g} and {high:g} Hz, got {hz!r}")
    current = torch.zeros(network.n_neurons, device=network.device)
    n_exc = network.n_exc
    octaves = np.log2(TONOTOPIC_MAP_HZ[1] / TONOTOPIC_MAP_HZ[0])
    preferred = TONOTOPIC_MAP_HZ[0] * 2.0 ** (octaves * np.arange(n_exc) / max(1, n_exc - 1))
    distance = np.log2(hz / preferred)
    drive = amplitude_mv * np.exp(-0.5 * (distance / TONE_TUNING_OCTAVES) ** 2)
    for region in network.connectome.regions_with_role("auditory"):
        neurons = _excitatory_of(network, np.array([region]))
        current[neurons] = torch.as_tensor(drive, dtype=torch.float32, device=network.device)
    return current


def touch_current(network: Network, side: str, amplitude_mv: float) -> torch.Tensor:
    """``[N]`` current (mV) of a touch on the ``left``, ``right`` or ``both`` sides of the body: into the
    somatosensory regions of the opposite hemisphere (both for ``both``)."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {', '.join(SIDES)}, got {side!r}")
    connectome = network.connectome
    regions = connectome.regions_with_role("somatosensory")
    if side != "both":
        hemisphere = "R" if side == "left" else "L"
        regions = regions[np.asarray(connectome.hemisphere)[regions] == hemisphere]
    current = torch.zeros(network.n_neurons, device=network.device)
    current[_excitatory_of(network, regions)] = float(amplitude_mv)
    return current


def role_current(network: Network, role: str, amplitude_mv: float) -> torch.Tensor:
    """``[N]`` current (mV) into every excitatory neuron of the regions with ``role``."""
    current = torch.zeros(network.n_neurons, device=network.device)
    current[network.neurons_with_role(role, excitatory_only=True)] = float(amplitude_mv)
    return current
