"""Text and boxes drawn straight into RGB frames (``uint8 [H, W, 3]``), for the envs' ``render()`` pictures.

Text is rasterised by FreeType through matplotlib's ``ft2font`` (the DejaVu Sans font matplotlib ships), one
bitmap per distinct string and size, cached, then alpha-blended with numpy: a label costs microseconds after its
first use. matplotlib is imported on the first text drawn, so ``encephagen_gym.envs`` itself imports without it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

Colour = Sequence[int]


@functools.lru_cache(maxsize=1)
def _font_path() -> str:
    try:
        from matplotlib import font_manager
    except ImportError as error:  # pragma: no cover - matplotlib is a dependency of encephagen-gym
        raise ImportError("drawing text on rendered frames needs matplotlib (pip install matplotlib)") from error
    return font_manager.findfont("DejaVu Sans")


@functools.lru_cache(maxsize=8)
def _font(size_px: int):
    from matplotlib import ft2font

    font = ft2font.FT2Font(_font_path())
    font.set_size(size_px, 72)  # at 72 dpi one point is one pixel
    return font


@functools.lru_cache(maxsize=4096)
def text_bitmap(text: str, size_px: int) -> tuple[np.ndarray, int]:
    """Coverage (``float32 [h, w]`` in [0, 1]) of ``text`` at ``size_px`` pixels, and its baseline row."""
    font = _font(size_px)
    font.clear()
    font.set_text(text, 0.0)
    font.draw_glyphs_to_bitmap(antialiased=True)
    image = np.asarray(font.get_image(), dtype=np.float32) / 255.0
    descent = int(np.ceil(font.get_descent() / 64.0))
    return image, image.shape[0] - descent


@functools.lru_cache(maxsize=8)
def ascent(size_px: int) -> int:
    """Pixels from the top of a line of text at ``size_px`` to its baseline."""
    return text_bitmap("ÅHdlg|", size_px)[1]


def text_width(text: str, size_px: int) -> int:
    """Width in pixels of ``text`` drawn at ``size_px``."""
    return text_bitmap(text, size_px)[0].shape[1] if text else 0


def draw_text(
    frame: np.ndarray,
    text: str,
    x: int,
    y: int,
    *,
    size: int = 12,
    colour: Colour = (0, 0, 0),
    align: str = "left",
) -> int:
    """Draw ``text`` into ``frame`` in place with the top of its line at row ``y``; ``x`` is its left end,
    centre or right end (``align``). Parts outside the frame are clipped. Returns the text's width (pixels)."""
    if not text:
        return 0
    coverage, baseline = text_bitmap(text, size)
    w = coverage.shape[1]
    left = {"left": x, "centre": x - w // 2, "right": x - w}[align]
    top = y + ascent(size) - baseline
    blend(frame, coverage, left, top, colour)
    return w


def blend(frame: np.ndarray, coverage: np.ndarray, left: int, top: int, colour: Colour) -> None:
    """Alpha-blend ``colour`` into ``frame`` with per-pixel ``coverage`` placed at (``left``, ``top``)."""
    h, w = coverage.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, frame.shape[0]), min(left + w, frame.shape[1])
    if y0 >= y1 or x0 >= x1:
        return
    alpha = coverage[y0 - top : y1 - top, x0 - left : x1 - left, None]
    region = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = (region + alpha * (np.asarray(colour, dtype=np.float32) - region) + 0.5).astype(np.uint8)


def fill_rect(frame: np.ndarray, x0: int, y0: int, x1: int, y1: int, colour: Colour, alpha: float = 1.0) -> None:
    """Fill the rectangle ``[y0, y1) × [x0, x1)`` (clipped to the frame) with ``colour`` at opacity ``alpha``."""
    x0, x1 = sorted((int(x0), int(x1)))
    y0, y1 = sorted((int(y0), int(y1)))
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, frame.shape[1]), min(y1, frame.shape[0])
    if x0 >= x1 or y0 >= y1:
        return
    if alpha >= 1.0:
        frame[y0:y1, x0:x1] = colour
        return
    region = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = (region + alpha * (np.asarray(colour, dtype=np.float32) - region) + 0.5).astype(np.uint8)


def text_panel(
    frame: np.ndarray, lines: Sequence[str], x: int, y: int, *, size: int = 13, padding: int = 5
) -> tuple[int, int]:
    """White text lines on a translucent dark box with its top-left corner at (``x``, ``y``), for overlays
    on camera images. Returns the box's width and height (pixels)."""
    line_height = round(1.3 * size)
    width = max((text_width(line, size) for line in lines), default=0) + 2 * padding
    height = line_height * len(lines) + 2 * padding - (line_height - ascent(size) - 3)
    fill_rect(frame, x, y, x + width, y + height, (0, 0, 0), alpha=0.55)
    for i, line in enumerate(lines):
        draw_text(frame, line, x + padding, y + padding + i * line_height, size=size, colour=(255, 255, 255))
    return width, height
