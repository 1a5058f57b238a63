"""Articulated figures: a 3-D stick skeleton with 15 joints (JHMDB order), posed by an action
(walk, run, wave, jump), turned by a yaw angle, projected orthographically and drawn with textured
limbs back to front. Each pixel also gets a body-part class (VIP ids), so the keypoints and the
part maps are exact by construction.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .scenes import Scene, make_background, make_lighting, make_sprite, object_track
from .textures import flat_texture, random_colour, random_texture, sample_bilinear

# JHMDB joint order (joint_positions.mat, pos_img[:, j, t]).
JOINTS = ("neck", "belly", "face", "right_shoulder", "left_shoulder", "right_hip", "left_hip",
          "right_elbow", "left_elbow", "right_knee", "left_knee", "right_wrist", "left_wrist",
          "right_ankle", "left_ankle")
J = {name: i for i, name in enumerate(JOINTS)}

# VIP / LIP part classes (Category_ids values).
VIP_CLASSES = ("background", "hat", "hair", "sun-glasses", "upper-clothes", "dress", "coat", "socks",
               "pants", "gloves", "scarf", "skirt", "torso-skin", "face", "right-arm", "left-arm",
               "right-leg", "left-leg", "right-shoe", "left-shoe")
C = {name: i for i, name in enumerate(VIP_CLASSES)}

ACTIONS = ("walk", "run", "wave", "jump")

# Body proportions in units of the standing height.
THIGH, SHIN, UPPER_ARM, FOREARM, HAND = 0.245, 0.235, 0.165, 0.15, 0.055
TORSO, NECK, HEAD_R = 0.29, 0.05, 0.062
SHOULDER_HALF, HIP_HALF, FOOT = 0.11, 0.07, 0.075
HIP_HEIGHT = THIGH + SHIN + 0.035  # pelvis above the ground when standing straight
MIN_FIGURE_PIXELS = 40             # smallest figure height that still has visible limbs


# ------------------------------------------------------------------------------------------------
# Kinematics (person's frame: x to the person's left, y up, z forward towards the camera)
# ------------------------------------------------------------------------------------------------

def _limb_direction(side: float, abduction, flexion) -> np.ndarray:
    """Unit vector of a limb hanging down, raised sideways by `abduction` then forwards by `flexion`."""
    abduction = np.asarray(abduction, np.float64)
    flexion = np.asarray(flexion, np.float64)
    return np.stack([side * np.sin(abduction), -np.cos(abduction) * np.cos(flexion),
                     np.cos(abduction) * np.sin(flexion)], axis=-1)


@dataclass
class Action:
    """One action's rhythm; `angles(t)` gives the per-frame joint angles (radians)."""
    name: str
    period: float          # frames per cycle
    phase: float
    amplitude: float
    wave_side: float = -1.0  # which arm waves (-1 right, +1 left)

    def angles(self, t: np.ndarray) -> dict[str, np.ndarray]:
        ph = 2 * np.pi * t / self.period + self.phase
        z = np.zeros_like(t, dtype=np.float64)
        a = self.amplitude
        if self.name in ("walk", "run"):
            run = self.name == "run"
            leg = a * (1.5 if run else 1.0)
            knee_amp = 1.2 if run else 0.6
            return dict(
                thigh_r=leg * np.sin(ph), thigh_l=-leg * np.sin(ph),
                knee_r=0.1 + knee_amp * 0.5 * (1 + np.sin(ph + 1.2)),
                knee_l=0.1 + knee_amp * 0.5 * (1 - np.sin(ph + 1.2)),
                leg_abd_r=z + 0.04, leg_abd_l=z + 0.04,
                arm_r=-0.9 * leg * np.sin(ph), arm_l=0.9 * leg * np.sin(ph),
                arm_abd_r=z + 0.12, arm_abd_l=z + 0.12,
                elbow_r=z + (1.3 if run else 0.3), elbow_l=z + (1.3 if run else 0.3),
                fore_abd_r=z + 0.12, fore_abd_l=z + 0.12,
                bounce=(0.03 if run else 0.012) * np.cos(2 * ph), lean=z + (0.15 if run else 0.03))
        if self.name == "wave":
            up = 2.35 + 0.15 * np.sin(0.5 * ph)
            waving = up + 0.35 + 0.45 * np.sin(ph)
            rest = 0.1 + 0.05 * np.sin(0.5 * ph)
            right = self.wave_side < 0
            return dict(
                thigh_r=z + 0.02, thigh_l=z - 0.02, knee_r=z + 0.05, knee_l=z + 0.05,
                leg_abd_r=z + 0.06 + 0.02 * np.sin(0.5 * ph), leg_abd_l=z + 0.06 - 0.02 * np.sin(0.5 * ph),
                arm_r=z + 0.1, arm_l=z + 0.1,
                arm_abd_r=up if right else rest, arm_abd_l=rest if right else up,
                elbow_r=z + 0.1, elbow_l=z + 0.1,
                fore_abd_r=waving if right else rest + 0.05, fore_abd_l=rest + 0.05 if right else waving,
                bounce=0.005 * np.sin(ph), lean=z + 0.02 * np.sin(0.5 * ph))
        if self.name == "jump":  # jumping jacks: arms and legs open as the body leaves the ground
            open_ = 0.5 * (1 - np.cos(ph))
            crouch = np.maximum(0.0, -np.sin(ph)) * 0.5
            arms = 0.15 + 2.4 * open_
            return dict(
                thigh_r=z + crouch * 0.6, thigh_l=z + crouch * 0.6, knee_r=crouch * 1.2, knee_l=crouch * 1.2,
                leg_abd_r=0.03 + 0.3 * open_, leg_abd_l=0.03 + 0.3 * open_,
                arm_r=z + 0.05, arm_l=z + 0.05, arm_abd_r=arms, arm_abd_l=arms,
                elbow_r=z + 0.15, elbow_l=z + 0.15, fore_abd_r=arms + 0.15, fore_abd_l=arms + 0.15,
                bounce=0.08 * np.maximum(0.0, np.sin(ph)) - 0.06 * crouch, lean=z)
        raise ValueError(f"unknown action {self.name!r}; expected one of {ACTIONS}")


def skeleton(angles: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """3-D joints (T, 15, 3) relative to the pelvis on the ground line, plus extra points
    (head centre is the face joint; toes, hand tips, head top) for drawing."""
    t_count = len(angles["bounce"])
    joints = np.zeros((t_count, len(JOINTS), 3))
    lean = angles["lean"]
    pelvis = np.stack([np.zeros(t_count), HIP_HEIGHT + angles["bounce"], np.zeros(t_count)], -1)
    spine = np.stack([np.zeros(t_count), np.cos(lean), np.sin(lean)], -1)
    neck = pelvis + TORSO * spine
    joints[:, J["belly"]] = pelvis + 0.06 * spine
    joints[:, J["neck"]] = neck
    joints[:, J["face"]] = neck + (NECK + HEAD_R) * spine
    extra: dict[str, np.ndarray] = {}
    for side_name, side in (("right", -1.0), ("left", 1.0)):
        s = side_name[0]
        shoulder = neck + np.array([side * SHOULDER_HALF, -0.02, 0.0])
        hip = pelvis + np.array([side * HIP_HALF, 0.0, 0.0])
        elbow = shoulder + UPPER_ARM * _limb_direction(side, angles[f"arm_abd_{s}"], angles[f"arm_{s}"])
        fore = _limb_direction(side, angles[f"fore_abd_{s}"], angles[f"arm_{s}"] + angles[f"elbow_{s}"])
        wrist = elbow + FOREARM * fore
        knee = hip + THIGH * _limb_direction(side, angles[f"leg_abd_{s}"], angles[f"thigh_{s}"])
        ankle = knee + SHIN * _limb_direction(side, angles[f"leg_abd_{s}"],
                                              angles[f"thigh_{s}"] - angles[f"knee_{s}"])
        joints[:, J[f"{side_name}_shoulder"]] = shoulder
        joints[:, J[f"{side_name}_hip"]] = hip
        joints[:, J[f"{side_name}_elbow"]] = elbow
        joints[:, J[f"{side_name}_wrist"]] = wrist
        joints[:, J[f"{side_name}_knee"]] = knee
        joints[:, J[f"{side_name}_ankle"]] = ankle
        extra[f"{side_name}_hand"] = wrist + HAND * fore
        extra[f"{side_name}_toe"] = ankle + np.array([0.0, -0.025, FOOT])
    extra["head_top"] = joints[:, J["face"]] + HEAD_R * spine
    return joints, extra


def project(points: np.ndarray, yaw: np.ndarray, scale: float, origin: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Turn by `yaw` (T,) about the vertical axis, project orthographically: (…, 2) pixels (x, y)
    and depth (larger = nearer the camera). `origin` (T, 2) is the pelvis ground point in pixels."""
    c = np.cos(yaw)[:, None]
    s = np.sin(yaw)[:, None]
    if points.ndim == 2:
        points = points[:, None, :]
    x = points[..., 0] * c + points[..., 2] * s
    depth = -points[..., 0] * s + points[..., 2] * c
    px = origin[:, 0:1] + scale * x
    py = origin[:, 1:2] - scale * points[..., 1]
    return np.stack([px, py], -1), depth


# ------------------------------------------------------------------------------------------------
# Drawing
# ------------------------------------------------------------------------------------------------

@dataclass
class Look:
    """A figure's clothing: textures per garment and which parts are bare."""
    shirt: np.ndarray
    pants: np.ndarray
    skin: np.ndarray
    hair: np.ndarray
    shoes: np.ndarray
    hat: np.ndarray | None
    sleeve: float          # fraction of the upper arm covered by the shirt
    shorts: bool           # shins bare (legs classes) instead of trousers
    offsets: dict = field(default_factory=dict)  # per-part texture offsets (y, x)


def random_look(rng: np.random.Generator, photo_fraction: float, size: int = 128) -> Look:
    skin_tone = np.array([rng.uniform(0.35, 0.95)] * 3, np.float32) * np.array([1.0, 0.78, 0.62], np.float32)
    look = Look(
        shirt=random_texture(rng, size, size, photo_fraction),
        pants=random_texture(rng, size, size, photo_fraction),
        skin=flat_texture(rng, size, size, skin_tone, 0.12),
        hair=flat_texture(rng, size, size, random_colour(rng, (0.2, 0.7), (0.05, 0.5)), 0.25),
        shoes=flat_texture(rng, size, size, random_colour(rng, (0.0, 0.8), (0.05, 0.6)), 0.2),
        hat=random_texture(rng, size, size, 0.0) if rng.random() < 0.3 else None,
        sleeve=float(rng.uniform(0.35, 0.9)),
        shorts=bool(rng.random() < 0.5),
    )
    return look


@dataclass
class Part:
    name: str
    a: np.ndarray          # (2,) pixels
    b: np.ndarray
    r0: float              # radius at a (pixels)
    r1: float              # radius at b
    depth: float
    texture: np.ndarray
    label: int
    split_at: float = 2.0  # along-fraction beyond which `label_after` / `texture_after` apply
    label_after: int = 0
    texture_after: np.ndarray | None = None
    polygon: np.ndarray | None = None  # extra convex region (torso)


def _bbox(points: np.ndarray, pad: float, h: int, w: int):
    x0 = max(0, int(np.floor(points[:, 0].min() - pad)))
    x1 = min(w, int(np.ceil(points[:, 0].max() + pad)) + 1)
    y0 = max(0, int(np.floor(points[:, 1].min() - pad)))
    y1 = min(h, int(np.ceil(points[:, 1].max() + pad)) + 1)
    return x0, x1, y0, y1


def _in_convex(px, py, poly: np.ndarray) -> np.ndarray:
    """Inside test for a convex polygon given in either winding order."""
    signs = []
    for k in range(len(poly)):
        ax, ay = poly[k]
        bx, by = poly[(k + 1) % len(poly)]
        signs.append((bx - ax) * (py - ay) - (by - ay) * (px - ax))
    signs = np.stack(signs)
    return np.all(signs >= 0, axis=0) | np.all(signs <= 0, axis=0)


def draw_part(canvas: np.ndarray, labels: np.ndarray, part: Part, offset: tuple[float, float]) -> None:
    """Draw a tapered capsule (plus an optional convex polygon) with its texture glued to the limb."""
    h, w = canvas.shape[:2]
    pts = np.stack([part.a, part.b] + ([] if part.polygon is None else list(part.polygon)))
    x0, x1, y0, y1 = _bbox(pts, max(part.r0, part.r1) + 1, h, w)
    if x0 >= x1 or y0 >= y1:
        return
    py, px = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    d = part.b - part.a
    length = float(np.hypot(*d))
    if length < 1e-6:
        d, length = np.array([0.0, 1.0]), 1e-6
    axis = d / length
    rel_x, rel_y = px - part.a[0], py - part.a[1]
    along = rel_x * axis[0] + rel_y * axis[1]
    across = -rel_x * axis[1] + rel_y * axis[0]
    frac = np.clip(along / length, 0, 1)
    dist = np.hypot(along - frac * length, across)
    inside = dist <= part.r0 + (part.r1 - part.r0) * frac
    if part.polygon is not None:
        inside |= _in_convex(px, py, part.polygon)
    if not inside.any():
        return
    size = part.texture.shape[0]
    ty = along[inside] + offset[0]
    tx = across[inside] + offset[1]
    colour = sample_bilinear(part.texture, np.mod(ty, size - 1), np.mod(tx, size - 1))
    label = np.full(colour.shape[0], part.label, np.uint8)
    if part.split_at < 1.0:
        after = frac[inside] > part.split_at
        if part.texture_after is not None and after.any():
            colour[after] = sample_bilinear(part.texture_after, np.mod(ty[after], size - 1),
                                            np.mod(tx[after], size - 1))
        label[after] = part.label_after
    canvas[y0:y1, x0:x1][inside] = colour
    labels[y0:y1, x0:x1][inside] = label


def draw_head(canvas, labels, centre, up, radius, yaw, look: Look, offset) -> None:
    """Head disc: face below the hair line, hair above it (and at the back of the head when turned)."""
    h, w = canvas.shape[:2]
    x0, x1, y0, y1 = _bbox(centre[None], radius * 1.25 + 1, h, w)
    if x0 >= x1 or y0 >= y1:
        return
    py, px = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    rx, ry = px - centre[0], py - centre[1]
    along = rx * up[0] + ry * up[1]        # towards the head top
    across = -rx * up[1] + ry * up[0]      # towards the image right for an upright head
    inside = rx * rx + ry * ry <= radius * radius
    size = look.skin.shape[0]
    oy, ox = offset
    colour = sample_bilinear(look.skin, np.mod(along + oy, size - 1), np.mod(across + ox, size - 1))
    label = np.full(along.shape, C["face"], np.uint8)
    back = -np.sign(np.sin(yaw)) * across > radius * (1.05 - 0.7 * abs(np.sin(yaw)))
    hair = (along > radius * 0.35) | back
    hair_colour = sample_bilinear(look.hair, np.mod(along + oy, size - 1), np.mod(across + ox, size - 1))
    colour[hair] = hair_colour[hair]
    label[hair] = C["hair"]
    if look.hat is not None:
        brim = (rx * rx + ry * ry <= (radius * 1.2) ** 2) & (along > radius * 0.5)
        hat_colour = sample_bilinear(look.hat, np.mod(along + oy, size - 1), np.mod(across + ox, size - 1))
        colour[brim] = hat_colour[brim]
        label[brim] = C["hat"]
        inside |= brim
    canvas[y0:y1, x0:x1][inside] = colour[inside]
    labels[y0:y1, x0:x1][inside] = label[inside]


# ------------------------------------------------------------------------------------------------
# A figure in a clip
# ------------------------------------------------------------------------------------------------

@dataclass
class Figure:
    action: str
    joints2d: np.ndarray      # (T, 15, 2) pixel coordinates (x, y), 0-based pixel centres
    depth: np.ndarray         # (T, 15)
    extra2d: dict             # name -> (T, 2)
    extra_depth: dict
    yaw: np.ndarray           # (T,)
    scale: float              # pixels per unit height
    look: Look

    def parts(self, t: int) -> list[Part]:
        p, d, s, look = self.joints2d[t], self.depth[t], self.scale, self.look
        e = {k: v[t] for k, v in self.extra2d.items()}
        ed = {k: v[t] for k, v in self.extra_depth.items()}
        parts = []
        torso_idx = [J["right_shoulder"], J["left_shoulder"], J["left_hip"], J["right_hip"]]
        parts.append(Part("torso", p[J["belly"]], p[J["neck"]], 0.075 * s, 0.07 * s,
                          float(d[torso_idx].mean()) - 0.02, look.shirt, C["upper-clothes"],
                          polygon=p[torso_idx]))
        head_base = p[J["neck"]] + (p[J["face"]] - p[J["neck"]]) * (NECK / (NECK + HEAD_R))
        parts.append(Part("neck", p[J["neck"]], head_base, 0.03 * s, 0.028 * s, float(d[J["neck"]]) - 0.01,
                          look.skin, C["torso-skin"]))
        for side in ("right", "left"):
            arm_label = C[f"{side}-arm"]
            sh, el, wr = p[J[f"{side}_shoulder"]], p[J[f"{side}_elbow"]], p[J[f"{side}_wrist"]]
            parts.append(Part(f"{side}_upper_arm", sh, el, 0.034 * s, 0.03 * s,
                              float(d[[J[f"{side}_shoulder"], J[f"{side}_elbow"]]].mean()),
                              look.shirt, C["upper-clothes"], split_at=look.sleeve,
                              label_after=arm_label, texture_after=look.skin))
            parts.append(Part(f"{side}_forearm", el, wr, 0.028 * s, 0.024 * s,
                              float(d[[J[f"{side}_elbow"], J[f"{side}_wrist"]]].mean()) + 0.001,
                              look.skin, arm_label))
            parts.append(Part(f"{side}_hand", wr, e[f"{side}_hand"], 0.026 * s, 0.022 * s,
                              float(ed[f"{side}_hand"]) + 0.002, look.skin, arm_label))
            hp, kn, an = p[J[f"{side}_hip"]], p[J[f"{side}_knee"]], p[J[f"{side}_ankle"]]
            parts.append(Part(f"{side}_thigh", hp, kn, 0.05 * s, 0.04 * s,
                              float(d[[J[f"{side}_hip"], J[f"{side}_knee"]]].mean()), look.pants, C["pants"]))
            leg_label = C[f"{side}-leg"] if look.shorts else C["pants"]
            parts.append(Part(f"{side}_shin", kn, an, 0.038 * s, 0.03 * s,
                              float(d[[J[f"{side}_knee"], J[f"{side}_ankle"]]].mean()) + 0.001,
                              look.skin if look.shorts else look.pants, leg_label))
            parts.append(Part(f"{side}_shoe", an, e[f"{side}_toe"], 0.032 * s, 0.03 * s,
                              float(ed[f"{side}_toe"]) + 0.002, look.shoes, C[f"{side}-shoe"]))
        return sorted(parts, key=lambda part: part.depth)

    def draw(self, canvas: np.ndarray, labels: np.ndarray, t: int) -> None:
        """Draw frame t's figure in place (back to front); `labels` receives the VIP classes."""
        head_depth = float(self.depth[t, J["face"]])
        head_drawn = False
        for part in self.parts(t):
            if not head_drawn and part.depth > head_depth:
                self._head(canvas, labels, t)
                head_drawn = True
            draw_part(canvas, labels, part, self.look.offsets.get(part.name, (0.0, 0.0)))
        if not head_drawn:
            self._head(canvas, labels, t)

    def _head(self, canvas, labels, t):
        face = self.joints2d[t, J["face"]]
        up = self.joints2d[t, J["face"]] - self.joints2d[t, J["neck"]]
        up = up / (np.hypot(*up) + 1e-9)
        draw_head(canvas, labels, face, up, HEAD_R * self.scale, float(self.yaw[t]), self.look,
                  self.look.offsets.get("head", (0.0, 0.0)))


def random_figure(rng: np.random.Generator, action: str, frames: int, height: int, width: int,
                  photo_fraction: float) -> Figure:
    """A figure doing `action` whose every joint stays inside the frame in every frame."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {ACTIONS}")
    t = np.arange(frames, dtype=np.float64)
    moving = action in ("walk", "run")
    period = rng.uniform(10, 16) if action != "run" else rng.uniform(7, 10)
    act = Action(action, period=period, phase=rng.uniform(0, 2 * np.pi), amplitude=rng.uniform(0.35, 0.5),
                 wave_side=float(rng.choice([-1.0, 1.0])))
    joints3d, extra3d = skeleton(act.angles(t))
    direction = float(rng.choice([-1.0, 1.0]))
    if moving:
        yaw = np.full(frames, direction * rng.uniform(0.5, 1.3))
    else:
        yaw = rng.uniform(-0.5, 0.5) + 0.15 * np.sin(2 * np.pi * t / rng.uniform(frames, 3 * frames))
    # figure size and path in pixels; shrink until the whole motion fits with a margin
    scale = rng.uniform(0.6, 0.8) * height
    travel = (rng.uniform(0.25, 0.5) if moving else rng.uniform(0.0, 0.1)) * width * direction
    def layout(scale, travel):
        path_x = travel * t / max(frames - 1, 1)
        origin = np.stack([path_x, np.zeros(frames)], -1)
        every = np.concatenate([joints3d, np.stack(list(extra3d.values()), 1)], 1)
        pts, _ = project(every, yaw, scale, origin)
        return origin, pts, (HEAD_R * 1.25 + 0.01) * scale + 1

    for _ in range(20):
        origin, pts, margin = layout(scale, travel)
        span_x = pts[..., 0].max() - pts[..., 0].min() + 2 * margin
        span_y = pts[..., 1].max() - pts[..., 1].min() + 2 * margin
        fit = min((width - 1) / span_x, (height - 1) / span_y)
        if fit >= 1.0:
            break
        scale *= fit * 0.97
        travel *= fit * 0.97
    else:
        raise ValueError(f"{height}x{width} frames are too small for a {action} figure")
    lo_x = margin - pts[..., 0].min()
    hi_x = width - 1 - margin - pts[..., 0].max()
    lo_y = margin - pts[..., 1].min()
    hi_y = height - 1 - margin - pts[..., 1].max()
    shift = np.array([rng.uniform(lo_x, max(lo_x, hi_x)), rng.uniform(lo_y, max(lo_y, hi_y))])
    origin = origin + shift
    j2d, jdepth = project(joints3d, yaw, scale, origin)
    extra2d, extra_depth = {}, {}
    for name, pts3 in extra3d.items():
        p2, dp = project(pts3, yaw, scale, origin)
        extra2d[name], extra_depth[name] = p2[:, 0], dp[:, 0]
    look = random_look(rng, photo_fraction)
    names = ["torso", "neck", "head"] + [f"{s}_{p}" for s in ("right", "left")
                                         for p in ("upper_arm", "forearm", "hand", "thigh", "shin", "shoe")]
    look.offsets = {n: (float(rng.uniform(0, 64)), float(rng.uniform(0, 64))) for n in names}
    return Figure(action, j2d, jdepth, extra2d, extra_depth, yaw, float(scale), look)


@dataclass
class FigureClip:
    """A figure over a panning background with a few distractor objects behind it."""
    scene: Scene
    figure: Figure

    @property
    def frames(self) -> int:
        return self.scene.frames

    def render(self, t: int, figure: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Frame t (float32 RGB) and its part labels (uint8 VIP classes, 0 = background)."""
        canvas, _ = self.scene.render(t, light=False)
        labels = np.zeros(canvas.shape[:2], np.uint8)
        if figure:
            self.figure.draw(canvas, labels, t)
        return self.scene.light(canvas, t), labels


def figure_clip(rng: np.random.Generator, action: str, frames: int, height: int, width: int, *,
                pan_speed: float, light: float, photo_fraction: float, distractors: int = 1) -> FigureClip:
    if height < MIN_FIGURE_PIXELS + 16 or width < MIN_FIGURE_PIXELS:
        raise ValueError(f"{height}x{width} frames are too small for the articulated figures")
    bg, pan = make_background(rng, height, width, frames, pan_speed, photo_fraction)
    scene = Scene(height, width, bg, pan, make_lighting(rng, frames, light))
    short = min(height, width)
    for _ in range(distractors):
        radius = rng.uniform(0.08, 0.16) * short
        scene.sprites.append(make_sprite(rng, radius, photo_fraction))
        scene.tracks.append(object_track(rng, "drift", frames, height, width, radius))
    scene.z_order = list(range(distractors))
    return FigureClip(scene, random_figure(rng, action, frames, height, width, photo_fraction))
