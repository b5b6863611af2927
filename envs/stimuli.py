"""Visual stimuli for the cognitive tasks: 8×8 "retina" images with values in [0, 1].

Images that define a task (prototypes, the digits train/test split) come from an explicit ``task_seed`` so that
every copy of an env (for instance the members of a vector env, which get different episode seeds) poses the
same task. Everything sampled per trial (which image, noise, jitter) uses the env's ``np_random``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

RETINA_SHAPE = (8, 8)
RETINA_SIZE = RETINA_SHAPE[0] * RETINA_SHAPE[1]


def binary_prototypes(
    n_images: int,
    task_seed: int,
    *,
    fraction_on: float = 0.3,
    min_distance: int = 14,
    max_tries: int = 10_000,
) -> np.ndarray:
    """Random binary 8×8 images, pairwise at least ``min_distance`` pixels apart even after a ±1-pixel shift.

    Returns a ``float32`` array of shape ``(n_images, 8, 8)``. The same ``task_seed`` always gives the same set.
    Candidates are drawn one by one and kept when far enough from every image kept so far (each candidate is
    compared with all ±1-pixel shifts of the kept images at once), so a thousand images take well under a second.
    """
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    rng = np.random.default_rng(task_seed)
    n_on = max(1, round(fraction_on * RETINA_SIZE))
    images: list[np.ndarray] = []
    # Pixels (rows) × every ±1 shift of each kept image (columns), and each column's count of lit pixels: the
    # distance of a binary candidate with lit pixels ``on`` to column j is n_on + count_j − 2·Σ_{i∈on} S[i, j].
    shifted = np.zeros((RETINA_SIZE, 9 * n_images), dtype=np.int16)
    counts = np.zeros(9 * n_images, dtype=np.int16)
    for _ in range(max_tries):
        on = rng.choice(RETINA_SIZE, size=n_on, replace=False)
        columns = 9 * len(images)
        if columns:
            overlap = shifted[on, :columns].sum(axis=0)
            if (n_on + counts[:columns] - 2 * overlap).min() < min_distance:
                continue
        image = np.zeros(RETINA_SIZE, dtype=np.float32)
        image[on] = 1.0
        image = image.reshape(RETINA_SHAPE)
        views = np.stack([shift(image, dy, dx).ravel() for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
        shifted[:, columns : columns + 9] = views.T
        counts[columns : columns + 9] = views.sum(axis=1)
        images.append(image)
        if len(images) == n_images:
            return np.stack(images)
    raise ValueError(
        f"could not draw {n_images} prototypes at least {min_distance} pixels apart in {max_tries} tries; "
        "ask for fewer images or a smaller min_distance"
    )


def shift(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Shift an image by whole pixels, filling the uncovered border with zeros (no wrap-around)."""
    out = np.zeros_like(image)
    h, w = image.shape
    src_y = slice(max(0, -dy), h - max(0, dy))
    dst_y = slice(max(0, dy), h - max(0, -dy))
    src_x = slice(max(0, -dx), w - max(0, dx))
    dst_x = slice(max(0, dx), w - max(0, -dx))
    out[dst_y, dst_x] = image[src_y, src_x]
    return out


def shifted_copies(images: np.ndarray, jitter: int) -> np.ndarray:
    """Every shift of up to ±``jitter`` pixels (rows and columns) of each image: ``[M, (2·jitter+1)², 8, 8]``."""
    offsets = range(-jitter, jitter + 1)
    return np.stack([np.stack([shift(img, dy, dx) for dy in offsets for dx in offsets]) for img in images])


def flip_pixels(image: np.ndarray, rng: np.random.Generator, flip_prob: float) -> np.ndarray:
    """Each pixel flipped (x → 1 − x) independently with probability ``flip_prob``."""
    if not flip_prob:
        return image
    flips = rng.random(image.shape, dtype=np.float32) < flip_prob
    return np.abs(image - flips, dtype=np.float32)  # |x − 1| = 1 − x where flipped, x elsewhere


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)
    return images, data.target.astype(np.int64)


def digits_split_indices(split: str, n_classes: int, task_seed: int, *, test_fraction: float = 0.25) -> np.ndarray:
    """Indices into scikit-learn's digits of one split: stratified per class, fixed by ``task_seed``.

    The test split takes ``test_fraction`` of each class and the train split the rest, so the two never share an
    image.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not 1 <= n_classes <= 10:
        raise ValueError(f"the digits dataset has 10 classes; n_classes must be in 1..10, got {n_classes}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    _, labels = _digits()
    rng = np.random.default_rng(task_seed)
    chosen: list[np.ndarray] = []
    for label in range(n_classes):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n_test = round(test_fraction * len(idx))
        chosen.append(idx[:n_test] if split == "test" else idx[n_test:])
    return np.sort(np.concatenate(chosen))


def digits_split(split: str, n_classes: int, task_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8×8 handwritten digits (1,797 images from UCI optdigits), classes
    ``0..n_classes-1``, one split of :func:`digits_split_indices`.

    Returns ``(images (M, 8, 8) float32 in [0, 1], labels (M,) int64)``.
    """
    images, labels = _digits()
    index = digits_split_indices(split, n_classes, task_seed)
    return images[index], labels[index]
