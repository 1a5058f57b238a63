"""Two unpaired image domains with the same shape families: A = shapes of one colour each
(flat, or with a fine coat of noise), B = black-and-white striped shapes (the horse→zebra
analogue), both over the same kind of background. A `DomainScene` can be rendered in either appearance, which gives the paired ground
truth (testA_gtB) and the shape masks for the A test set.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scenes import Shape, to_uint8
from .textures import apply_colour_map, colour_map, fractal_noise, hsv_colour

FAMILIES = {
    "circle": Shape("ellipse", aspect=1.0),
    "square": Shape("superellipse", aspect=1.0, power=12.0),
    "triangle": Shape("polygon", points=3),
    "hexagon": Shape("polygon", points=6),
    "star": Shape("star", points=5, inner=0.45),
}


@dataclass
class DomainShape:
    family: str
    cx: float
    cy: float
    radius: float
    angle: float
    colour: np.ndarray          # appearance A: flat colour
    stripe_period: float        # appearance B: stripes in the shape's own frame
    stripe_angle: float
    stripe_phase: float
    stripe_dark: float
    stripe_light: float


@dataclass
class DomainScene:
    size: int
    background: np.ndarray      # (S, S, 3) float32
    shapes: list[DomainShape]
    shading: np.ndarray         # (S, S) soft shading applied to both appearances
    texture: np.ndarray | None = None   # (S, S) in [0, 1]: fine texture of the A shapes
    texture_contrast: float = 0.0

    def render(self, appearance: str) -> tuple[np.ndarray, np.ndarray]:
        """uint8 RGB (S, S, 3) in appearance "A" or "B", and the shape mask uint8 {0, 255}."""
        if appearance not in ("A", "B"):
            raise ValueError(f"appearance must be 'A' or 'B', got {appearance!r}")
        img = self.background.copy()
        mask = np.zeros((self.size, self.size), np.uint8)
        yy, xx = np.mgrid[0:self.size, 0:self.size].astype(np.float32)
        for sh in self.shapes:
            c, s = np.cos(sh.angle), np.sin(sh.angle)
            dx, dy = xx - sh.cx, yy - sh.cy
            u = (c * dx + s * dy) / sh.radius
            v = (-s * dx + c * dy) / sh.radius
            inside = FAMILIES[sh.family].contains(u, v)
            if appearance == "A":
                fill = np.broadcast_to(sh.colour, img.shape)
                if self.texture is not None and self.texture_contrast > 0:
                    c = self.texture_contrast
                    fill = fill * (1 - c / 2 + c * self.texture[..., None])
            else:
                along = u * np.cos(sh.stripe_angle) + v * np.sin(sh.stripe_angle)
                wave = np.sin(2 * np.pi * along * sh.radius / sh.stripe_period + sh.stripe_phase)
                level = np.where(wave > 0, sh.stripe_light, sh.stripe_dark).astype(np.float32)
                fill = np.repeat(level[..., None], 3, axis=-1)
            shaded = fill * (0.85 + 0.3 * self.shading[..., None])
            img[inside] = shaded[inside]
            mask[inside] = 255
        return to_uint8(img), mask


def random_domain_scene(rng: np.random.Generator, size: int, max_shapes: int = 3,
                        stripes: tuple[float, float] = (0.12, 0.22), *, texture: float = 0.0,
                        background_octaves: int = 4, palette_mix: float = 0.3,
                        shape_hues: tuple[float, float] = (0.0, 1.0)) -> DomainScene:
    """A background and 1..max_shapes shapes; every appearance parameter is drawn up front.
    `stripes`: the range of the B stripe period, as a fraction of the shape's diameter;
    `texture`: contrast of a fine noise texture on the A shapes (like a horse's coat: without
    one a flat shape gives a convolutional generator nothing to hang stripes on, and the
    textured background draws them instead); `background_octaves`: detail of the background
    noise; `palette_mix`: chance of blending random colours into the earthy background;
    `shape_hues`: the A shapes' hue range (a shape of the background's hue stands out by its
    coat alone, and the generator, blind to mean colour, often loses it)."""
    ground = fractal_noise(rng, size, size, octaves=background_octaves)
    # earthy greens and browns, the same for both domains
    cmap = np.stack([hsv_colour(rng.uniform(0.08, 0.38), rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.85))
                     for _ in range(3)])
    if rng.random() < palette_mix:
        cmap = colour_map(rng, 3) * 0.6 + cmap * 0.4
    background = apply_colour_map(ground, cmap)
    shapes = []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        family = list(FAMILIES)[int(rng.integers(len(FAMILIES)))]
        radius = rng.uniform(0.18, 0.34) * size
        hue = shape_hues[0] + (shape_hues[1] - shape_hues[0]) * rng.random()  # one draw, whatever the range
        shapes.append(DomainShape(
            family=family,
            cx=float(rng.uniform(0.2, 0.8) * size), cy=float(rng.uniform(0.2, 0.8) * size),
            radius=float(radius), angle=float(rng.uniform(0, 2 * np.pi)),
            colour=hsv_colour(hue, rng.uniform(0.45, 0.9), rng.uniform(0.45, 0.95)),
            stripe_period=float(rng.uniform(*stripes) * radius * 2),
            stripe_angle=float(rng.uniform(0, np.pi)), stripe_phase=float(rng.uniform(0, 2 * np.pi)),
            stripe_dark=float(rng.uniform(0.02, 0.15)), stripe_light=float(rng.uniform(0.85, 1.0))))
    shading = fractal_noise(rng, size, size, base_cells=size / 2, octaves=2)
    # drawn last and only when used, so texture 0 leaves every other draw (and image) as it was
    coat = fractal_noise(rng, size, size, base_cells=4.0, octaves=2) if texture > 0 else None
    return DomainScene(size, background, shapes, shading, coat, texture)
