"""Textured objects moving over a panning textured background, with exact per-pixel object ids.

A `Scene` is a complete description of a clip (textures, shapes, per-frame poses, camera pan,
lighting); `Scene.render(t)` draws frame t and its id map, so the masks are the rendering itself.
Objects are drawn back to front (z-order), which gives real occlusions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .textures import random_texture, sample_bilinear, shift_bilinear

SHAPE_KINDS = ("ellipse", "superellipse", "polygon", "star", "blob")

# Motion families of the training videos; each stresses one kind of motion, all have a little
# of every kind. These are the class folders of the video set.
MOTIONS = ("drift", "spin", "zoom", "cross")


# ------------------------------------------------------------------------------------------------
# Shapes: inside tests in unit coordinates (the shape fits in the unit disc)
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Shape:
    kind: str
    aspect: float = 1.0          # ellipse, superellipse: minor/major axis ratio
    power: float = 2.0           # superellipse exponent (2 = ellipse, large = rectangle)
    points: int = 5              # polygon sides, star points
    inner: float = 0.5           # star inner radius (polygon: cos(pi/points))
    harmonics: tuple = ()        # blob: ((k, amplitude, phase), ...)

    def contains(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        if self.kind == "ellipse":
            return u * u + (v / self.aspect) ** 2 <= 1.0
        if self.kind == "superellipse":
            return np.abs(u) ** self.power + np.abs(v / self.aspect) ** self.power <= 1.0
        if self.kind in ("polygon", "star"):
            inner = np.cos(np.pi / self.points) if self.kind == "polygon" else self.inner
            return _star_contains(u, v, self.points, inner)
        if self.kind == "blob":
            rho = np.hypot(u, v)
            theta = np.arctan2(v, u)
            radius = np.ones_like(rho)
            for k, amp, phase in self.harmonics:
                radius += amp * np.cos(k * theta + phase)
            norm = 1.0 + sum(abs(a) for _, a, _ in self.harmonics)
            return rho <= radius / norm
        raise ValueError(f"unknown shape kind {self.kind!r}; expected one of {SHAPE_KINDS}")


def _star_contains(u, v, n: int, inner: float) -> np.ndarray:
    """Inside test for a star (or regular polygon) with outer radius 1, a vertex on +u."""
    half = np.pi / n
    theta = np.mod(np.arctan2(v, u), 2 * half)
    theta = np.where(theta > half, 2 * half - theta, theta)  # fold onto one half-sector
    rho = np.hypot(u, v)
    x, y = rho * np.cos(theta), rho * np.sin(theta)
    bx, by = inner * np.cos(half), inner * np.sin(half)
    # on the origin's side of the edge from the vertex (1, 0) to the inner corner (bx, by)
    return (bx - 1.0) * y - by * (x - 1.0) >= 0


def random_shape(rng: np.random.Generator, kinds: tuple[str, ...] = SHAPE_KINDS) -> Shape:
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "ellipse":
        return Shape(kind, aspect=float(rng.uniform(0.45, 1.0)))
    if kind == "superellipse":
        return Shape(kind, aspect=float(rng.uniform(0.5, 1.0)), power=float(rng.uniform(2.5, 6.0)))
    if kind == "polygon":
        return Shape(kind, points=int(rng.integers(3, 8)))
    if kind == "star":
        return Shape(kind, points=int(rng.integers(4, 8)), inner=float(rng.uniform(0.4, 0.65)))
    harmonics = tuple((int(k), float(rng.uniform(0.05, 0.22)), float(rng.uniform(0, 2 * np.pi)))
                      for k in rng.choice(np.arange(2, 6), size=int(rng.integers(1, 4)), replace=False))
    return Shape("blob", harmonics=harmonics)


# ------------------------------------------------------------------------------------------------
# Sprites: a shape with a texture glued to it
# ------------------------------------------------------------------------------------------------

@dataclass
class Sprite:
    shape: Shape
    texture: np.ndarray   # (S, S, 3) float32, mapped onto the unit square [-1, 1]^2
    radius: float         # pixels at scale 1


def draw_sprite(canvas: np.ndarray, ids: np.ndarray | None, sprite: Sprite, cx: float, cy: float,
                angle: float, scale: float, obj_id: int) -> int:
    """Draw `sprite` with its centre at (cx, cy) in place; returns the number of pixels drawn."""
    h, w = canvas.shape[:2]
    r = sprite.radius * scale
    if r <= 0.5:
        return 0
    x0, x1 = max(0, int(np.floor(cx - r))), min(w, int(np.ceil(cx + r)) + 1)
    y0, y1 = max(0, int(np.floor(cy - r))), min(h, int(np.ceil(cy + r)) + 1)
    if x0 >= x1 or y0 >= y1:
        return 0
    ys = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
    xs = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    u = (c * xs + s * ys) / np.float32(r)
    v = (-s * xs + c * ys) / np.float32(r)
    inside = sprite.shape.contains(u, v)
    if not inside.any():
        return 0
    size = sprite.texture.shape[0]
    tex = sample_bilinear(sprite.texture, (v[inside] + 1) * 0.5 * (size - 1), (u[inside] + 1) * 0.5 * (size - 1))
    region = canvas[y0:y1, x0:x1]
    region[inside] = tex
    if ids is not None:
        ids[y0:y1, x0:x1][inside] = obj_id
    return int(inside.sum())


# ------------------------------------------------------------------------------------------------
# Motion
# ------------------------------------------------------------------------------------------------

def _reflect(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fold a straight path into [lo, hi] (a ball bouncing between two walls)."""
    span = hi - lo
    if span <= 0:
        return np.full_like(x, (lo + hi) / 2)
    y = np.mod(x - lo, 2 * span)
    return lo + np.where(y > span, 2 * span - y, y)


def object_track(rng: np.random.Generator, motion: str, frames: int, height: int, width: int,
                 radius: float, enter: bool = False) -> np.ndarray:
    """Per-frame pose (cx, cy, angle, scale) of one object: (frames, 4) float64.

    `enter`: the object starts off-screen and crosses the frame (it enters and may leave).
    """
    t = np.arange(frames, dtype=np.float64)
    unit = min(height, width) / 128.0  # speeds are given for a 128-pixel frame
    speed = rng.uniform(0.4, 1.6) * unit
    if motion == "drift":
        speed *= 1.6
    heading = rng.uniform(0, 2 * np.pi)
    spin = rng.uniform(0.0, 0.02) * rng.choice([-1, 1])
    if motion == "spin":
        spin = rng.uniform(0.04, 0.12) * rng.choice([-1, 1])
    zoom = rng.uniform(-0.1, 0.1)
    if motion == "zoom":
        zoom = rng.uniform(0.35, 0.6) * rng.choice([-1, 1])
    scale = np.exp(zoom * (t / max(frames - 1, 1)) * 2 - zoom) if motion == "zoom" else \
        1.0 + zoom * np.sin(2 * np.pi * t / max(frames, 2) + rng.uniform(0, 2 * np.pi))
    angle = rng.uniform(0, 2 * np.pi) + spin * t
    # a gentle sideways wobble on top of the straight path
    wobble_amp = rng.uniform(0, 0.08) * min(height, width)
    wobble = wobble_amp * np.sin(2 * np.pi * t / rng.uniform(frames / 2, 2 * frames) + rng.uniform(0, 2 * np.pi))
    if enter:
        # start outside one edge, aim across the frame, fast enough to get well inside
        side = int(rng.integers(4))
        margin = radius * 0.9
        target = np.array([rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height])
        start = [np.array([-margin, rng.uniform(0.2, 0.8) * height]),
                 np.array([width + margin, rng.uniform(0.2, 0.8) * height]),
                 np.array([rng.uniform(0.2, 0.8) * width, -margin]),
                 np.array([rng.uniform(0.2, 0.8) * width, height + margin])][side]
        direction = (target - start) / np.linalg.norm(target - start)
        speed = max(speed, rng.uniform(1.0, 1.8) * np.linalg.norm(target - start) / frames)
        cx = start[0] + direction[0] * speed * t - direction[1] * wobble
        cy = start[1] + direction[1] * speed * t + direction[0] * wobble
    else:
        cx0 = rng.uniform(0.2, 0.8) * width
        cy0 = rng.uniform(0.2, 0.8) * height
        keep = radius * 0.4  # centres stay this far inside, so objects stay mostly visible
        cx = _reflect(cx0 + np.cos(heading) * speed * t - np.sin(heading) * wobble, keep, width - keep)
        cy = _reflect(cy0 + np.sin(heading) * speed * t + np.cos(heading) * wobble, keep, height - keep)
    return np.stack([cx, cy, angle, scale], axis=1)


# ------------------------------------------------------------------------------------------------
# Scenes
# ------------------------------------------------------------------------------------------------

@dataclass
class Scene:
    """A clip: background window path, lighting and objects (drawn in `z_order`, back to front)."""
    height: int
    width: int
    background: np.ndarray            # (BH, BW, 3), larger than the frame
    pan: np.ndarray                   # (T, 2) window offset (y, x) into the background
    gain: np.ndarray                  # (T, 3) per-channel lighting multiplier
    sprites: list[Sprite] = field(default_factory=list)
    tracks: list[np.ndarray] = field(default_factory=list)   # one (T, 4) pose array per sprite
    z_order: list[int] = field(default_factory=list)          # sprite indices, back to front

    @property
    def frames(self) -> int:
        return len(self.pan)

    def render_background(self, t: int) -> np.ndarray:
        oy, ox = self.pan[t]
        return shift_bilinear(self.background, float(oy), float(ox), self.height, self.width)

    def render(self, t: int, objects: bool | set[int] = True, light: bool = True
               ) -> tuple[np.ndarray, np.ndarray]:
        """Frame t as float32 (H, W, 3) in [0, 1] and its id map uint8 (H, W): sprite i has id i + 1.

        `objects`: draw all sprites (True), none (False) or only the given sprite indices.
        """
        canvas = self.render_background(t)
        ids = np.zeros((self.height, self.width), np.uint8)
        for i in self.z_order:
            if objects is True or (objects is not False and i in objects):
                cx, cy, angle, scale = self.tracks[i][t]
                draw_sprite(canvas, ids, self.sprites[i], cx, cy, angle, scale, i + 1)
        if light:
            canvas = self.light(canvas, t)
        return canvas, ids

    def light(self, canvas: np.ndarray, t: int) -> np.ndarray:
        return np.clip(canvas * self.gain[t].astype(np.float32), 0, 1)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def make_background(rng: np.random.Generator, height: int, width: int, frames: int, pan_speed: float,
                    photo_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """A texture larger than the frame and a slow straight pan across it: (texture, (T, 2) offsets)."""
    unit = min(height, width) / 128.0
    velocity = rng.uniform(-1, 1, size=2) * pan_speed * unit
    travel = np.abs(velocity) * max(frames - 1, 0)
    margin = np.ceil(travel).astype(int) + 2
    bg = random_texture(rng, height + int(margin[0]), width + int(margin[1]), photo_fraction)
    start = np.where(velocity >= 0, 0.5, margin - 1.5)
    pan = start[None, :] + velocity[None, :] * np.arange(frames)[:, None]
    return bg, pan


def make_lighting(rng: np.random.Generator, frames: int, strength: float) -> np.ndarray:
    """Slow global brightness and tint change: (T, 3) gains near 1."""
    t = np.arange(frames, dtype=np.float64)
    period = rng.uniform(1.0, 3.0) * max(frames, 2)
    base = 1.0 + strength * rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    tint = 1.0 + 0.3 * strength * np.sin(2 * np.pi * t[:, None] / period + rng.uniform(0, 2 * np.pi, size=3))
    return base[:, None] * tint


def make_sprite(rng: np.random.Generator, radius: float, photo_fraction: float,
                texture_size: int = 96, kinds: tuple[str, ...] = SHAPE_KINDS) -> Sprite:
    return Sprite(shape=random_shape(rng, kinds), texture=random_texture(rng, texture_size, texture_size,
                                                                          photo_fraction),
                  radius=float(radius))


def camouflage_texture(texture: np.ndarray, surroundings: np.ndarray, levels: int = 32) -> np.ndarray:
    """`texture` repainted in the hues of `surroundings`: each pixel keeps its luminance and takes
    the mean colour the surroundings show at that luminance (`levels` bins over [0, 1], empty
    bins interpolated from their neighbours). The pattern and shading stay; colour alone no
    longer tells the two apart."""
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    ref = surroundings.reshape(-1, 3)
    ref_lum = np.clip(ref @ weights, 0, 1)
    bins = np.minimum((ref_lum * levels).astype(np.intp), levels - 1)
    counts = np.bincount(bins, minlength=levels)
    sums = np.stack([np.bincount(bins, ref[:, c], minlength=levels) for c in range(3)], 1)
    centres = (np.arange(levels) + 0.5) / levels
    seen = counts > 0
    palette = sums[seen] / counts[seen, None]                     # (seen bins, 3)
    lum = np.clip(texture.reshape(-1, 3) @ weights, 0, 1)
    out = np.stack([np.interp(lum, centres[seen], palette[:, c]) for c in range(3)], 1)
    return out.reshape(texture.shape).astype(np.float32)


def object_scene(rng: np.random.Generator, height: int, width: int, frames: int, n_objects: int,
                 motion: str, *, pan_speed: float, light: float, photo_fraction: float,
                 radius_range: tuple[float, float] = (0.12, 0.28), enter_fraction: float = 0.0,
                 camouflage: float = 0.0) -> Scene:
    """A random scene of `n_objects` textured objects moving by `motion` (one of MOTIONS).

    `camouflage`: the chance that an object wears the background's colours
    (`camouflage_texture`); at 0 no draw is made, so scenes stay what they were without it."""
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; expected one of {MOTIONS}")
    bg, pan = make_background(rng, height, width, frames, pan_speed, photo_fraction)
    scene = Scene(height, width, bg, pan, make_lighting(rng, frames, light))
    short = min(height, width)
    for _ in range(n_objects):
        radius = rng.uniform(*radius_range) * short
        sprite = make_sprite(rng, radius, photo_fraction)
        if camouflage > 0 and rng.random() < camouflage:
            sprite.texture = camouflage_texture(sprite.texture, bg)
        enter = motion == "cross" or rng.random() < enter_fraction
        scene.sprites.append(sprite)
        scene.tracks.append(object_track(rng, motion, frames, height, width, radius, enter=enter))
    scene.z_order = [int(i) for i in rng.permutation(n_objects)]
    return scene


def visible_pixels(scene: Scene, t: int) -> np.ndarray:
    """Pixels of each sprite visible in frame t (after occlusion): (n_sprites,) int."""
    _, ids = scene.render(t, light=False)
    return np.bincount(ids.ravel(), minlength=len(scene.sprites) + 1)[1:]


def alone_pixels(scene: Scene, i: int, t: int) -> int:
    """Pixels sprite i would cover in frame t with nothing in front of it."""
    canvas = np.zeros((scene.height, scene.width, 3), np.float32)
    cx, cy, angle, scale = scene.tracks[i][t]
    return draw_sprite(canvas, None, scene.sprites[i], cx, cy, angle, scale, i + 1)
