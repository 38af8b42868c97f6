"""Synthetic visible-infrared person re-identification data in the official SYSU-MM01, RegDB and LLCM layouts.

The real datasets cannot be downloaded everywhere, so tests, the demo and throughput benchmarks use this
generator. It writes byte-for-byte deterministic files in exactly the folder layouts the dataset loaders
read (see :func:`write_sysu`, :func:`write_regdb` and :func:`write_llcm`).

Generative model
----------------
Every identity (:class:`Identity`, drawn by :func:`sample_identity`) is a paper-doll figure built from body
parts in *figure coordinates* ``(u, v)``: ``v`` runs from the top of the head (0) to the soles (1) and
``u`` is the horizontal offset from the body axis, in the same unit. Each part is labelled with a
*material* (skin, hair, upper garment, lower garment, shoes, hat, bag), and the identity carries

* cues SHARED by both modalities: body proportions (figure height in the frame, head size, shoulder and
  hip width, hip height, leg and arm width), clothing *geometry* (sleeve length; trousers, shorts or
  skirt; long or short hair) and garment *pattern geometry* (plain, horizontal/vertical/diagonal stripes
  or checks, with frequency, orientation, duty cycle and phase fixed to the body), plus accessories
  placed consistently (hat; shoulder bag with its strap, backpack straps or hand bag on a fixed side);
* cues seen in ONE modality only: a visible palette (RGB colour of every material and of both pattern
  phases) and an independent thermal palette (emissivity of every material, rendered as a single-channel
  intensity). With ``shared_ir = 0`` the two palettes are independent, so the infrared brightness of a
  garment is not a function of its visible colour: skin is warm (bright) and bags are cold (dark) whatever
  their colour, and garment emissivities are uniform draws. With ``shared_ir = s > 0`` the infrared
  intensity of garments, shoes, hat and bag is ``(1 - s) x`` its emissivity draw ``+ s x`` the fixed
  near-infrared response of its visible colour (:func:`nir_response`, :data:`NIR_WEIGHTS`: reds bright,
  greens dark; unlike grey luminance), so a model *can* learn to predict infrared brightness from colour
  (a supervised model does), while a model that only saw grey or single-channel copies of visible images
  cannot match it directly (the source-pretrained start of the demo).

An image is rendered per (identity, camera, image index): a per-camera style (:class:`CameraStyle`: wall
and floor background, horizon, zoom, gain, colour tint or sensor offset, blur and noise; SYSU cameras 1
and 2 are indoor RGB, 4 and 5 outdoor RGB, 3 indoor infrared and 6 outdoor infrared), background clutter
(random rectangles and ellipses plus smooth low-frequency texture), a per-image pose (:class:`Pose`:
shift, slight scale, horizontal flip, leg stride, arm swing), illumination jitter, an occasional occluding
block over part of the body, Gaussian blur and pixel noise. Infrared images are single-channel (PIL mode
``"L"``), blurrier and noisier; visible images are RGB.

Every random draw comes from its own :class:`numpy.random.SeedSequence` keyed by
``(seed, layout, stream, pid, camera, image index)``, so output never depends on the number of worker
processes or on the order of rendering, and the same arguments always give byte-identical files
(fixed JPEG quality, no timestamps). :func:`generate` writes into a temporary sibling ``DIR.tmp-XXXX``
and renames it to ``DIR`` at the end, and refuses to touch a non-empty ``DIR`` unless ``overwrite``.

Knobs
-----
:class:`SyntheticParams` holds every knob (each can be overridden, also from ``tools/make_synthetic_vireid.py``):

* size: ``ids`` / ``test_ids`` (identities), ``height`` x ``width`` (rendered size; the loaders resize),
  ``vis_per_cam`` / ``ir_per_cam`` (images per id per camera it appears in), ``count_jitter`` (the per
  (id, camera) count varies by up to +- that much), ``vis_cam_prob`` / ``ir_cam_prob`` (how many cameras
  see an id);
* modality gap: ``shared_ir`` (above; 0 = the widest gap, only geometry is shared);
* what the shared geometry looks like: ``pattern_freq`` (stripe / check frequencies; low ones survive small
  images and infrared blur);
* nuisances: ``clutter`` (background shapes per image), ``pose_jitter`` (scale of the pose variation),
  ``occlusion_prob`` (occluding blocks).

Knobs at their defaults draw exactly the random numbers of earlier versions, so a preset that does not set
them gives byte-identical images.

Presets
-------
:data:`PRESETS` maps a preset name to per-layout :class:`SyntheticParams`; any field can be overridden:

* ``tiny`` (unit tests, about a second): SYSU 8 train+val (6 train, 2 val) + 4 test ids, 64x32 images,
  2 images per id per visible camera and 3 per infrared camera; RegDB 12 ids (6 test per trial),
  4 visible + 4 thermal images per id, 64x32.
* ``demo`` (the proving ground: CPU training in minutes, where methods can show their effect): SYSU 128
  (96 train, 32 val) + 48 test ids, 128x64 (trained at 64x32), 4 +- 2 images per id per visible camera and
  5 +- 2 per infrared camera (about 1,600 visible + 1,100 infrared train+val images), ``shared_ir``
  0.9, patterns of 3-8 cycles per figure height; RegDB 64 ids (32 test per trial), 10 + 10 images,
  128x64, the same ``shared_ir`` and patterns. Measured in ``docs/demo.md``: supervised AGW learns the
  cross-modality task (all-search mAP about 40 after 1,000 CPU iterations), a visible-only source
  pre-training does not (about 11), HOG of the grey image gives about 18, and within-modality retrieval is
  far easier than cross-modality.
* ``demo-v1`` (the former ``demo``): SYSU 64 (48 train, 16 val) + 32 test ids, 128x64, 3 images per visible
  and 4 per infrared camera, independent palettes (``shared_ir`` 0), patterns of 7-16 cycles; RegDB 64 ids
  (32 test per trial), 10 + 10 images, 128x64. Nothing learns the cross-modality task on it at demo
  budgets: supervised AGW stays at the level of the untrained HOG descriptor.
* ``sysu-scale`` (GPU throughput work): SYSU 395 (296 train, 99 val) + 96 test ids, 288x144, 19 images per
  visible and 18 per infrared camera an id appears in (about 22k visible and 12k infrared train+val
  images, like the real set); RegDB at real size: 412 ids, 206 test per trial, 10 + 10 images, 128x64.
"""
from __future__ import annotations

import colorsys
import contextlib
import dataclasses
import functools
import json
import math
import multiprocessing
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
from PIL import Image

__all__ = [
    "CAMERAS",
    "LAYOUTS",
    "PRESETS",
    "CameraStyle",
    "Identity",
    "Pose",
    "SyntheticParams",
    "generate",
    "plan_regdb",
    "plan_sysu",
    "render_image",
    "resolve_params",
    "sample_camera",
    "sample_identity",
    "sample_pose",
    "plan_llcm",
    "write_llcm",
    "write_regdb",
    "write_sysu",
]

LAYOUTS = ("sysu", "regdb", "llcm")
JPEG_QUALITY = 90
META_FILE = "synthetic_meta.json"
FORMAT_VERSION = 1

#: ``camera id -> (modality, indoor)`` for each layout. RegDB has one visible and one thermal camera.
CAMERAS: dict[str, dict[int, tuple[str, bool]]] = {
    "sysu": {
        1: ("visible", True),
        2: ("visible", True),
        3: ("infrared", True),
        4: ("visible", False),
        5: ("visible", False),
        6: ("infrared", False),
    },
    "regdb": {1: ("visible", False), 2: ("infrared", False)},
    # LLCM: cameras 1..9 record visible images (style key k) and near-infrared ones (style key 10 + k).
    "llcm": {**{k: ("visible", k <= 3) for k in range(1, 10)}, **{10 + k: ("infrared", k <= 3) for k in range(1, 10)}},
}

# Materials of the label map; palette row of (material, pattern phase) is ``2 * material + phase``.
BACKGROUND, SKIN, HAIR, UPPER, LOWER, SHOES, HAT, BAG, OCCLUDER = range(9)
N_MATERIALS = 8  # OCCLUDER is painted per image, not part of an identity's palette

_LAYOUT_CODE = {"sysu": 1, "regdb": 2, "llcm": 3}
# Independent random streams: identity appearance, camera style, per-image pose (RegDB: shared by a
# visible/thermal pair), per-image rendering, id splits, per-id layout (SYSU cameras, RegDB file names).
_STREAM_IDENTITY, _STREAM_CAMERA, _STREAM_POSE, _STREAM_IMAGE, _STREAM_SPLIT, _STREAM_ID_LAYOUT = range(1, 7)


def _rng(seed: int, layout: str, stream: int, *keys: int) -> np.random.Generator:
    """An independent generator for one ``(seed, layout, stream, *keys)`` tuple."""
    return np.random.default_rng(np.random.SeedSequence([seed, _LAYOUT_CODE[layout], stream, *keys]))


# --------------------------------------------------------------------------------------------------
# Parameters and presets
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyntheticParams:
    """Size of a synthetic dataset. Fields not used by a layout are ignored by it.

    ids: SYSU: number of train+val ids (``val_fraction`` of them go to ``val_id.txt``); RegDB: all ids.
    test_ids: SYSU: number of test ids; RegDB: test ids per trial (the rest are that trial's train ids).
    height, width: image size in pixels.
    vis_per_cam, ir_per_cam: images per id per visible / infrared camera the id appears in (RegDB: per
        id per modality, every id appears in both).
    val_fraction: SYSU share of the train+val ids written to ``val_id.txt``.
    vis_cam_prob, ir_cam_prob: SYSU probability that an id appears in a given visible / infrared camera
        (every id gets at least one of each; test ids always appear in cam3 and in cam1 or cam2).
    trials: RegDB number of random train/test splits (``idx/*_{1..trials}.txt``).
    occlusion_prob: probability that an image gets an occluding block over part of the body.
    shared_ir: share of the infrared intensity of garments, shoes, hat and bag that follows from their
        visible colour through the fixed near-infrared response :func:`nir_response` (the rest is an
        independent emissivity draw): 0 = independent palettes (widest modality gap), 1 = infrared
        brightness fully predictable from colour (by a rule that is not grey luminance).
    pattern_freq: ``(low, high)`` range of garment pattern frequencies, cycles per figure height; low
        frequencies stay legible in small images and in the blurrier infrared images.
    clutter: ``(low, high)``: each image gets ``low <= n < high`` background clutter shapes.
    pose_jitter: scale of the per-image pose variation (shift, scale, stride, arm swing, head offset).
    count_jitter: SYSU images per (id, camera) drawn uniformly in ``[n - count_jitter, n + count_jitter]``
        (at least 1) around ``vis_per_cam`` / ``ir_per_cam``, so ids differ in images per modality and camera.
    """

    ids: int
    test_ids: int
    height: int
    width: int
    vis_per_cam: int
    ir_per_cam: int
    val_fraction: float = 0.25
    vis_cam_prob: float = 0.74
    ir_cam_prob: float = 0.8
    trials: int = 10
    occlusion_prob: float = 0.1
    shared_ir: float = 0.0
    pattern_freq: tuple[float, float] = (7.0, 16.0)
    clutter: tuple[int, int] = (3, 9)
    pose_jitter: float = 1.0
    count_jitter: int = 0

    def validate(self, layout: str) -> None:
        """Raise ``ValueError`` if the parameters cannot produce a valid ``layout`` dataset."""
        checks = [
            (self.ids >= 1, "ids must be >= 1"),
            (self.test_ids >= 1, "test_ids must be >= 1"),
            (self.height >= 16 and self.width >= 8, "images must be at least 16x8 (height x width)"),
            (self.vis_per_cam >= 1 and self.ir_per_cam >= 1, "images per camera must be >= 1"),
            (0.0 <= self.val_fraction < 1.0, "val_fraction must be in [0, 1)"),
            (0.0 < self.vis_cam_prob <= 1.0 and 0.0 < self.ir_cam_prob <= 1.0, "camera probs in (0, 1]"),
            (self.trials >= 1, "trials must be >= 1"),
            (0.0 <= self.occlusion_prob <= 1.0, "occlusion_prob must be in [0, 1]"),
            (0.0 <= self.shared_ir <= 1.0, "shared_ir must be in [0, 1]"),
            (len(self.pattern_freq) == 2 and 0.0 < self.pattern_freq[0] <= self.pattern_freq[1],
             "pattern_freq must be (low, high) with 0 < low <= high"),
            (len(self.clutter) == 2 and 0 <= self.clutter[0] < self.clutter[1], "clutter must be (low, high), "
             "0 <= low < high"),
            (self.pose_jitter >= 0.0, "pose_jitter must be >= 0"),
            (self.count_jitter >= 0, "count_jitter must be >= 0"),
        ]
        if layout == "regdb":
            checks.append((self.test_ids < self.ids, "RegDB test_ids must be smaller than ids"))
        if layout == "sysu":
            checks.append((max(self.vis_per_cam, self.ir_per_cam) + self.count_jitter <= 9999,
                           "at most 9999 images per camera"))
        for ok, message in checks:
            if not ok:
                raise ValueError(f"invalid {layout} parameters {self}: {message}")


PRESETS: dict[str, dict[str, SyntheticParams]] = {
    # Unit tests: a second or two, every split and camera populated.
    "tiny": {
        "sysu": SyntheticParams(ids=8, test_ids=4, height=64, width=32, vis_per_cam=2, ir_per_cam=3),
        "regdb": SyntheticParams(ids=12, test_ids=6, height=64, width=32, vis_per_cam=4, ir_per_cam=4),
    },
    # The proving ground (docs/demo.md): the cross-modality task is learnable in CPU minutes, yet not by a
    # visible-only source model, and clearly harder than within-modality retrieval.
    "demo": {
        "sysu": SyntheticParams(ids=128, test_ids=48, height=128, width=64, vis_per_cam=4, ir_per_cam=5,
                                shared_ir=0.9, pattern_freq=(3.0, 8.0), count_jitter=2),
        "regdb": SyntheticParams(ids=64, test_ids=32, height=128, width=64, vis_per_cam=10, ir_per_cam=10,
                                 shared_ir=0.9, pattern_freq=(3.0, 8.0)),
    },
    # The first demo set (independent palettes): the cross-modality task is not learnable at demo budgets.
    "demo-v1": {
        "sysu": SyntheticParams(ids=64, test_ids=32, height=128, width=64, vis_per_cam=3, ir_per_cam=4),
        "regdb": SyntheticParams(ids=64, test_ids=32, height=128, width=64, vis_per_cam=10, ir_per_cam=10),
    },
    # Real-set scale for GPU throughput work (SYSU: ~22k visible + ~12k infrared train+val images).
    "sysu-scale": {
        "sysu": SyntheticParams(ids=395, test_ids=96, height=288, width=144, vis_per_cam=19, ir_per_cam=18),
        "regdb": SyntheticParams(ids=412, test_ids=206, height=128, width=64, vis_per_cam=10, ir_per_cam=10),
    },
}


# LLCM (:func:`plan_llcm`): ``ids`` train ids, ``test_ids`` test ids; an id appears in each of the 9 cameras with
# probability ``vis_cam_prob`` (visible) / ``ir_cam_prob`` (infrared), ``vis_per_cam`` / ``ir_per_cam`` images each.
PRESETS["tiny"]["llcm"] = SyntheticParams(ids=8, test_ids=4, height=64, width=32, vis_per_cam=2, ir_per_cam=2,
                                          vis_cam_prob=0.3, ir_cam_prob=0.3)
PRESETS["demo"]["llcm"] = SyntheticParams(ids=64, test_ids=32, height=128, width=64, vis_per_cam=3, ir_per_cam=3,
                                          vis_cam_prob=0.35, ir_cam_prob=0.35)
# Real-set scale: 713 train + 351 test ids, about 46k images.
PRESETS["sysu-scale"]["llcm"] = SyntheticParams(ids=713, test_ids=351, height=288, width=144, vis_per_cam=7,
                                                ir_per_cam=7, vis_cam_prob=0.35, ir_cam_prob=0.35)


def resolve_params(layout: str, preset: str, **overrides) -> SyntheticParams:
    """The ``preset`` parameters for ``layout`` with every non-``None`` override applied and validated."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {tuple(PRESETS)}")
    known = {f.name for f in dataclasses.fields(SyntheticParams)}
    unknown = set(overrides) - known
    if unknown:
        raise TypeError(f"unknown parameter(s) {sorted(unknown)}; expected some of {sorted(known)}")
    overrides = {name: value for name, value in overrides.items() if value is not None}
    if layout not in PRESETS[preset]:
        raise ValueError(f"preset {preset!r} has no {layout} parameters; it has {sorted(PRESETS[preset])}")
    params = dataclasses.replace(PRESETS[preset][layout], **overrides)
    params.validate(layout)
    return params


# --------------------------------------------------------------------------------------------------
# Identities, cameras and poses
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Garment:
    """Pattern geometry of a garment, attached to the body (shared by both modalities)."""

    kind: str  # "plain", "hstripes", "vstripes", "diagonal" or "checks"
    freq: float  # cycles per figure height
    angle: float  # stripe normal direction in radians
    duty: float  # share of a period in the primary phase
    phase: float  # offset in periods


@dataclass(frozen=True)
class Accessory:
    kind: str  # hat: "cap" or "beanie"; bag: "shoulder", "backpack" or "hand"
    side: int  # +1 or -1 (figure's left or right in the unflipped image)
    size: float  # in figure heights


@dataclass(frozen=True)
class Identity:
    """One person: shared body/clothing geometry and two modality-specific palettes.

    ``palette_rgb`` (``2 * N_MATERIALS x 3``) and ``palette_ir`` (``2 * N_MATERIALS x 1``) give the colour /
    thermal intensity of each (material, pattern phase) in ``[0, 1]``; they are sampled independently.
    """

    pid: int
    height_frac: float  # figure height as a share of the image height (before camera zoom)
    head_r: float
    shoulder_w: float  # half-widths in figure heights
    hip_w: float
    hip_v: float  # v of the hip line
    leg_w: float
    arm_w: float
    sleeve: float  # share of the arm covered by the upper garment
    lower_style: str  # "trousers", "shorts" or "skirt"
    long_hair: bool
    upper: Garment
    lower: Garment
    hat: Accessory | None
    bag: Accessory | None
    palette_rgb: np.ndarray = field(repr=False)
    palette_ir: np.ndarray = field(repr=False)

    @property
    def head_v(self) -> float:
        """v of the centre of the head."""
        return 1.2 * self.head_r

    @property
    def shoulder_v(self) -> float:
        """v of the shoulder line (top of the torso)."""
        return 2.4 * self.head_r + 0.02


def _hsv(rng: np.random.Generator, h=(0.0, 1.0), s=(0.0, 1.0), v=(0.0, 1.0)) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb(rng.uniform(*h) % 1.0, rng.uniform(*s), rng.uniform(*v))


_PATTERNS = ("plain", "hstripes", "vstripes", "diagonal", "checks")


def _sample_garment(rng: np.random.Generator, kinds: tuple[str, ...], probs: tuple[float, ...],
                    freq: tuple[float, float] = (7.0, 16.0)) -> Garment:
    kind = str(rng.choice(kinds, p=probs))
    angle = {"hstripes": math.pi / 2, "vstripes": 0.0}.get(kind, rng.choice([-1, 1]) * rng.uniform(0.5, 1.1))
    return Garment(kind, rng.uniform(*freq), float(angle), rng.uniform(0.35, 0.65), rng.uniform(0.0, 1.0))


def _sample_accessory(rng: np.random.Generator, prob: float, kinds: tuple[str, ...]) -> Accessory | None:
    if rng.random() >= prob:
        return None
    return Accessory(str(rng.choice(kinds)), int(rng.choice([-1, 1])), rng.uniform(0.8, 1.2))


def _sample_palette_rgb(rng: np.random.Generator) -> np.ndarray:
    """Visible colours: garments uniform in hue, skin/hair/shoes from plausible ranges."""
    pal = np.zeros((N_MATERIALS, 2, 3), np.float32)
    pal[SKIN] = _hsv(rng, h=(0.02, 0.11), s=(0.25, 0.6), v=(0.35, 0.95))
    pal[HAIR] = _hsv(rng, h=(0.02, 0.12), s=(0.2, 0.7), v=(0.04, 0.45))
    for material in (UPPER, LOWER):
        pal[material, 0] = _hsv(rng, s=(0.05, 1.0), v=(0.12, 0.95))
        pal[material, 1] = _hsv(rng, s=(0.05, 1.0), v=(0.12, 0.95))
    pal[SHOES] = _hsv(rng, s=(0.0, 0.3), v=rng.choice([(0.03, 0.25), (0.7, 0.95)]))
    pal[HAT] = _hsv(rng, s=(0.1, 0.9), v=(0.1, 0.9))
    pal[BAG] = _hsv(rng, s=(0.1, 0.9), v=(0.1, 0.8))
    return pal.reshape(2 * N_MATERIALS, 3)


def _sample_palette_ir(rng: np.random.Generator) -> np.ndarray:
    """Thermal intensities: warm skin, cool accessories, garment emissivities independent of colour."""
    pal = np.zeros((N_MATERIALS, 2, 1), np.float32)
    pal[SKIN] = rng.uniform(0.78, 0.95)
    pal[HAIR] = rng.uniform(0.3, 0.55)
    for material in (UPPER, LOWER):
        base = rng.uniform(0.3, 0.85)
        pal[material, 0] = base
        pal[material, 1] = np.clip(base + rng.choice([-1, 1]) * rng.uniform(0.08, 0.25), 0.15, 0.95)
    pal[SHOES] = rng.uniform(0.2, 0.45)
    pal[HAT] = rng.uniform(0.3, 0.6)
    pal[BAG] = rng.uniform(0.08, 0.4)
    return pal.reshape(2 * N_MATERIALS, 1)


#: Near-infrared response of dyes, ``clip(rgb @ weights + bias)``: reds and magentas bright, greens dark. Over
#: the garment colours it correlates 0.84 with the red channel but only 0.36 with grey luminance, so grey or
#: single-channel copies of visible images only approximate the infrared ones.
NIR_WEIGHTS, NIR_BIAS = np.array([0.9, -0.6, 0.3], np.float32), np.float32(0.3)
_NIR_MATERIALS = (UPPER, LOWER, SHOES, HAT, BAG)  # skin and hair keep their thermal (body heat) intensity


def nir_response(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` visible colours in ``[0, 1]`` -> ``(..., 1)`` near-infrared intensities in ``[0.05, 0.95]``."""
    return np.clip(rgb @ NIR_WEIGHTS + NIR_BIAS, 0.05, 0.95)[..., None].astype(np.float32)


def _share_ir(palette_ir: np.ndarray, palette_rgb: np.ndarray, shared: float) -> np.ndarray:
    """Blend the independent infrared palette with :func:`nir_response` of the visible one (``shared_ir``)."""
    rows = np.asarray([2 * m + phase for m in _NIR_MATERIALS for phase in (0, 1)])
    out = palette_ir.copy()
    out[rows] = (1.0 - shared) * palette_ir[rows] + shared * nir_response(palette_rgb[rows])
    return out


def sample_identity(rng: np.random.Generator, pid: int = 0, shared_ir: float = 0.0,
                    pattern_freq: tuple[float, float] = (7.0, 16.0)) -> Identity:
    """Draw one identity (see the module docstring for what is shared and what is modality-specific).

    ``shared_ir`` and ``pattern_freq`` are the :class:`SyntheticParams` fields; the random draws do not depend
    on them, so an identity differs between two values only in what they control.
    """
    shoulder_w = rng.uniform(0.095, 0.15)
    upper = _sample_garment(rng, _PATTERNS, (0.3, 0.2, 0.15, 0.2, 0.15), pattern_freq)
    lower = _sample_garment(rng, _PATTERNS, (0.6, 0.1, 0.1, 0.1, 0.1), pattern_freq)
    ident = Identity(
        pid=pid,
        height_frac=rng.uniform(0.76, 0.92),
        head_r=rng.uniform(0.055, 0.072),
        shoulder_w=shoulder_w,
        hip_w=shoulder_w * rng.uniform(0.72, 0.98),
        hip_v=rng.uniform(0.5, 0.56),
        leg_w=rng.uniform(0.036, 0.056),
        arm_w=rng.uniform(0.026, 0.04),
        sleeve=rng.choice([rng.uniform(0.25, 0.45), 1.0]),
        lower_style=str(rng.choice(["trousers", "shorts", "skirt"], p=[0.6, 0.2, 0.2])),
        long_hair=bool(rng.random() < 0.35),
        upper=upper,
        lower=lower,
        hat=_sample_accessory(rng, 0.25, ("cap", "beanie")),
        bag=_sample_accessory(rng, 0.45, ("shoulder", "backpack", "hand")),
        palette_rgb=_sample_palette_rgb(rng),
        palette_ir=_sample_palette_ir(rng),
    )
    if shared_ir > 0.0:
        ident = dataclasses.replace(ident, palette_ir=_share_ir(ident.palette_ir, ident.palette_rgb, shared_ir))
    return ident


@dataclass(frozen=True)
class CameraStyle:
    """Per-camera appearance. Colours are RGB triples for visible cameras and 1-tuples for infrared."""

    cam: int
    modality: str  # "visible" or "infrared"
    indoor: bool
    zoom: float  # scales the figure
    gain: float
    tint: tuple[float, ...]  # per-channel gain
    offset: float  # additive level (sensor black level)
    blur: float  # Gaussian sigma in pixels at 128 px image height
    noise: float  # std of additive pixel noise
    wall: tuple[float, ...]
    floor: tuple[float, ...]
    horizon: float  # share of the height where the wall meets the floor

    @property
    def channels(self) -> int:
        return 3 if self.modality == "visible" else 1


def sample_camera(rng: np.random.Generator, cam: int, modality: str, indoor: bool) -> CameraStyle:
    """Draw the style of one camera; indoor visible cameras are warm and dim, outdoor ones bright."""
    common = dict(cam=cam, modality=modality, indoor=indoor, zoom=rng.uniform(0.9, 1.05),
                  gain=rng.uniform(0.85, 1.05) if indoor else rng.uniform(1.0, 1.2))
    if modality == "visible":
        hue = (0.02, 0.16) if indoor else (0.0, 1.0)  # indoor walls are warm
        tint = rng.uniform(0.85, 1.15, 3) * ((1.08, 1.0, 0.88) if indoor else (1.0, 1.0, 1.0))
        return CameraStyle(**common, tint=tuple(float(t) for t in tint), offset=rng.uniform(-0.03, 0.03),
                           blur=rng.uniform(0.4, 0.8), noise=rng.uniform(0.01, 0.035),
                           wall=_hsv(rng, h=hue, s=(0.05, 0.35), v=(0.4, 0.75) if indoor else (0.55, 0.9)),
                           floor=_hsv(rng, h=hue, s=(0.0, 0.25), v=(0.25, 0.55)),
                           horizon=rng.uniform(0.45, 0.7))
    # Infrared: indoor walls are lukewarm, outdoor sky/buildings cold and the ground warm.
    return CameraStyle(**common, tint=(1.0,), offset=rng.uniform(0.0, 0.06), blur=rng.uniform(0.9, 1.4),
                       noise=rng.uniform(0.02, 0.04),
                       wall=(rng.uniform(0.25, 0.4) if indoor else rng.uniform(0.08, 0.25),),
                       floor=(rng.uniform(0.2, 0.35) if indoor else rng.uniform(0.25, 0.45),),
                       horizon=rng.uniform(0.4, 0.7))


@dataclass(frozen=True)
class Pose:
    dx: float  # horizontal shift, share of the width
    dy: float  # vertical shift, share of the height
    scale: float
    flip: bool
    stride: float  # outward slope of the legs
    swing: float  # outward slope of the arms
    head_dx: float  # in figure heights


def sample_pose(rng: np.random.Generator, jitter: float = 1.0) -> Pose:
    """Per-image pose jitter; ``jitter`` (``SyntheticParams.pose_jitter``) scales every range (1: as drawn)."""
    dx, dy, scale = rng.uniform(-0.06, 0.06), rng.uniform(-0.03, 0.03), rng.uniform(0.93, 1.04)
    flip, stride, swing = bool(rng.random() < 0.5), rng.uniform(0.0, 0.14), rng.uniform(-0.05, 0.15)
    head_dx = rng.uniform(-0.012, 0.012)
    if jitter != 1.0:
        dx, dy, scale, stride, swing, head_dx = (jitter * dx, jitter * dy, 1.0 + jitter * (scale - 1.0),
                                                 jitter * stride, jitter * swing, jitter * head_dx)
    return Pose(dx=dx, dy=dy, scale=scale, flip=flip, stride=stride, swing=swing, head_dx=head_dx)


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    return y + 0.5, x + 0.5


def _ellipse(u, v, cu, cv, ru, rv) -> np.ndarray:
    return ((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2 <= 1.0


def _band(u, v, centre_u, half_w, v0, v1) -> np.ndarray:
    """Pixels within ``half_w`` of the (possibly slanted) line ``u = centre_u`` with ``v0 <= v < v1``."""
    return (np.abs(u - centre_u) <= half_w) & (v >= v0) & (v < v1)


def _pattern_phase(g: Garment, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """0/1 pattern phase of a garment at body coordinates ``(u, v)``."""
    if g.kind == "plain":
        return np.zeros(u.shape, np.int8)
    if g.kind == "checks":
        return (((u * g.freq + g.phase) % 1.0 < 0.5) ^ ((v * g.freq + g.phase) % 1.0 < 0.5)).astype(np.int8)
    t = u * math.cos(g.angle) + v * math.sin(g.angle)
    return ((t * g.freq + g.phase) % 1.0 >= g.duty).astype(np.int8)


def _lower_body(ident: Identity, pose: Pose, u, v) -> Iterator[tuple[int, np.ndarray]]:
    """Legs (slanted outwards by the stride) in trousers, shorts or a skirt, and shoes."""
    hip, leg_w = ident.hip_v, ident.leg_w
    legs = np.zeros(u.shape, bool)
    for side in (-1, 1):
        centre = side * (ident.hip_w - 0.8 * leg_w + pose.stride * (v - hip))
        legs |= _band(u, v, centre, leg_w, hip - 0.02, 0.96)
    if ident.lower_style == "trousers":
        yield LOWER, legs
    elif ident.lower_style == "shorts":
        yield SKIN, legs
        yield LOWER, legs & (v < hip + 0.17)
    else:
        yield SKIN, legs
        yield LOWER, (np.abs(u) <= ident.hip_w + 0.7 * (v - hip)) & (v >= hip - 0.02) & (v < hip + 0.24)
    foot_u = ident.hip_w - 0.8 * leg_w + pose.stride * (1.0 - hip)
    yield SHOES, (np.abs(np.abs(u) - foot_u) <= 1.2 * leg_w) & (v >= 0.955) & (v <= 1.0)


def _upper_body(ident: Identity, pose: Pose, u, v) -> Iterator[tuple[int, np.ndarray]]:
    """Neck, a trapezoid torso with rounded shoulders, arms with sleeves, and long hair beside the neck."""
    top, hip, sw = ident.shoulder_v, ident.hip_v, ident.shoulder_w
    au = np.abs(u)
    yield SKIN, (au <= 0.45 * ident.head_r) & (v >= ident.head_v) & (v < top + 0.01)
    yield UPPER, _ellipse(u, v, 0.0, top + 0.04, sw + ident.arm_w, 0.045)
    torso_w = sw + (ident.hip_w - sw) * (v - top) / (hip - top)
    yield UPPER, (au <= torso_w) & (v >= top + 0.03) & (v < hip + 0.01)
    arm_len = hip - top + 0.08
    for side in (-1, 1):
        arm = _band(u, v, side * (sw + 0.6 * ident.arm_w + pose.swing * (v - top)), ident.arm_w,
                    top + 0.02, top + arm_len)
        sleeve_end = top + ident.sleeve * arm_len
        yield UPPER, arm & (v < sleeve_end)
        yield SKIN, arm & (v >= sleeve_end)
    if ident.long_hair:
        hair_u = au / ident.head_r
        yield HAIR, (hair_u >= 0.55) & (hair_u <= 1.05) & (v >= ident.head_v) & (v < top + 0.09)


def _head(ident: Identity, pose: Pose, u, v) -> Iterator[tuple[int, np.ndarray]]:
    """Face, hair on top, and a beanie or a cap with its brim to one side."""
    hr, head_u, head_v = ident.head_r, pose.head_dx, ident.head_v
    yield SKIN, _ellipse(u, v, head_u, head_v, hr, 1.2 * hr)
    yield HAIR, _ellipse(u, v, head_u, head_v - 0.1 * hr, 1.07 * hr, 1.2 * hr) & (v < head_v - 0.35 * hr)
    if ident.hat is not None:
        s = ident.hat.size
        yield HAT, _ellipse(u, v, head_u, head_v - 0.3 * hr, 1.15 * hr * s, hr * s) & (v < head_v - 0.4 * hr)
        if ident.hat.kind == "cap":
            brim_u = head_u + ident.hat.side * 0.5 * hr
            yield HAT, _band(u, v, brim_u, 1.2 * hr, head_v - 0.5 * hr, head_v - 0.3 * hr)


def _bag(ident: Identity, pose: Pose, u, v) -> Iterator[tuple[int, np.ndarray]]:
    """A shoulder bag with a diagonal strap, backpack straps, or a hand bag, always on the same side."""
    bag, top, hip, sw = ident.bag, ident.shoulder_v, ident.hip_v, ident.shoulder_w
    if bag is None:
        return
    side, size = bag.side, 0.11 * bag.size
    if bag.kind == "backpack":
        for strap in (-1, 1):
            yield BAG, _band(u, v, strap * 0.55 * sw, 0.012, top, top + 0.2)
        yield BAG, _band(u, v, side * (sw + 0.01), 0.02, top + 0.02, top + 0.25)
    elif bag.kind == "shoulder":
        strap_u, bag_u, bag_v = -side * 0.7 * sw, side * (ident.hip_w + 0.3 * size), hip - 0.02
        du, dv = bag_u - strap_u, bag_v - top
        distance = np.abs((u - strap_u) * dv - (v - top) * du) / math.hypot(du, dv)
        yield BAG, (distance <= 0.012) & (v >= top) & (v <= bag_v)
        yield BAG, _band(u, v, bag_u, 0.5 * size, bag_v - 0.4 * size, bag_v + 0.6 * size)
    else:
        yield BAG, _band(u, v, side * (sw + ident.arm_w + 0.5 * size), 0.45 * size, hip + 0.08,
                         hip + 0.08 + 1.1 * size)


_BODY_PARTS = (_lower_body, _upper_body, _head, _bag)  # painting order: later parts cover earlier ones


def _label_map(ident: Identity, pose: Pose, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Material label and pattern phase of every pixel."""
    labels = np.zeros(u.shape, np.int8)
    for part in _BODY_PARTS:
        for material, mask in part(ident, pose, u, v):
            labels[mask] = material
    phase = np.zeros(u.shape, np.int8)
    for material, garment, v0 in ((UPPER, ident.upper, ident.shoulder_v), (LOWER, ident.lower, ident.hip_v)):
        if garment.kind != "plain":
            mask = labels == material
            phase[mask] = _pattern_phase(garment, u[mask], v[mask] - v0)
    return labels, phase


def _random_colour(rng: np.random.Generator, channels: int, lo: float = 0.05, hi: float = 0.9) -> np.ndarray:
    if channels == 3:
        return np.asarray(_hsv(rng, s=(0.0, 0.8), v=(lo, hi)), np.float32)
    return np.asarray([rng.uniform(lo, hi)], np.float32)


_SUBPIXEL_BITS = 4  # cv2 drawing takes fixed-point coordinates with this many fractional bits


def _draw_blob(img: np.ndarray, rng: np.random.Generator, box: tuple[float, float, float, float],
               colour) -> None:
    """Fill a rectangle or an ellipse with centre and half-size ``box = (cy, cx, ry, rx)`` (pixels)."""
    cy, cx, ry, rx = (round(value * (1 << _SUBPIXEL_BITS)) for value in box)
    colour = tuple(float(c) for c in np.atleast_1d(colour))
    if rng.random() < 0.5:
        cv2.rectangle(img, (cx - rx, cy - ry), (cx + rx, cy + ry), colour, -1, cv2.LINE_8, _SUBPIXEL_BITS)
    else:
        cv2.ellipse(img, (cx, cy), (rx, ry), 0, 0, 360, colour, -1, cv2.LINE_8, _SUBPIXEL_BITS)


@functools.lru_cache(maxsize=8)
def _noise_bank(height: int, width: int, channels: int) -> np.ndarray:
    """A fixed standard-normal field twice the image size; each image adds a random crop of it (fast)."""
    rng = np.random.default_rng(np.random.SeedSequence([height, width, channels]))
    return rng.standard_normal((2 * height, 2 * width, channels), dtype=np.float32)


def _background(camera: CameraStyle, rng: np.random.Generator, height: int, width: int,
                clutter: tuple[int, int] = (3, 9)) -> np.ndarray:
    """Wall and floor with smooth texture and ``clutter[0] <= n < clutter[1]`` random clutter shapes,
    ``(height, width, channels)``."""
    c = camera.channels
    horizon = min(height, max(0, round(height * (camera.horizon + rng.uniform(-0.05, 0.05)))))
    img = np.empty((height, width, c), np.float32)
    img[:horizon], img[horizon:] = camera.wall, camera.floor
    for _ in range(rng.integers(*clutter)):
        box = (rng.uniform(0, height), rng.uniform(0, width),
               rng.uniform(0.05, 0.3) * height, rng.uniform(0.08, 0.45) * width)
        _draw_blob(img, rng, box, _random_colour(rng, c, hi=0.9 if c == 3 else 0.65))  # few hot objects
    coarse = rng.normal(0.0, 0.06, (4, 3, c)).astype(np.float32)
    img += cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).reshape(height, width, c)
    return img


def _shading(camera: CameraStyle, ident: Identity, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Cylinder-like shading across the body and top lighting (weaker for emitted infrared light)."""
    strength = 0.35 if camera.modality == "visible" else 0.15
    across = np.clip(np.abs(u) / (1.6 * ident.shoulder_w), 0.0, 1.0) ** 2
    return (1.0 - strength * across) * (1.0 + strength * 0.4 * (0.5 - v))


def _occlude(img: np.ndarray, labels: np.ndarray, rng: np.random.Generator, camera: CameraStyle,
             body_box: tuple[float, float, float, float]) -> None:
    """Cover part of the body with a textured block (a passer-by, a pole, a bag on a bench)."""
    top, bottom, left, right = body_box
    fig_h, fig_w = bottom - top, right - left
    box = (rng.uniform(top + 0.2 * fig_h, bottom), rng.uniform(left, right),
           rng.uniform(0.08, 0.18) * fig_h, rng.uniform(0.25, 0.6) * fig_w)
    mask = np.zeros(labels.shape, np.uint8)
    _draw_blob(mask, rng, box, 1)
    mask = mask.astype(bool)
    colour = _random_colour(rng, camera.channels, 0.1, 0.8)
    img[mask] = colour + 0.03 * rng.standard_normal((int(mask.sum()), camera.channels), dtype=np.float32)
    labels[mask] = OCCLUDER


def render_image(ident: Identity, camera: CameraStyle, pose: Pose, rng: np.random.Generator, height: int,
                 width: int, occlusion_prob: float = 0.0, return_labels: bool = False,
                 clutter: tuple[int, int] = (3, 9)):
    """Render one ``uint8`` image, ``(height, width, 3)`` for visible and ``(height, width)`` for infrared.

    With ``return_labels`` also returns the ``int8`` material map (``OCCLUDER`` where occluded), aligned
    with the image (flipped with it).
    """
    y, x = _pixel_grid(height, width)
    fig_h = height * ident.height_frac * camera.zoom * pose.scale
    top = (height - fig_h) / 2 + pose.dy * height
    centre = width / 2 + pose.dx * width
    u, v = (x - centre) / fig_h, (y - top) / fig_h
    labels, phase = _label_map(ident, pose, u, v)
    palette = ident.palette_rgb if camera.modality == "visible" else ident.palette_ir
    person = (labels > BACKGROUND)[..., None]
    body = np.take(palette, 2 * labels + phase, axis=0) * _shading(camera, ident, u, v)[..., None]
    img = np.where(person, body, _background(camera, rng, height, width, clutter))
    if rng.random() < occlusion_prob:
        half_w = (ident.shoulder_w + 2 * ident.arm_w) * fig_h
        _occlude(img, labels, rng, camera, (top, top + fig_h, centre - half_w, centre + half_w))
    if camera.modality == "visible":
        img = img * (np.asarray(camera.tint, np.float32) * camera.gain * rng.uniform(0.85, 1.15))
    else:
        img = img * (camera.gain * rng.uniform(0.92, 1.08)) + rng.uniform(-0.04, 0.04)
    img = cv2.GaussianBlur(img + camera.offset, (0, 0), camera.blur * height / 128.0).reshape(img.shape)
    oy, ox = rng.integers(0, height), rng.integers(0, width)
    img += camera.noise * _noise_bank(height, width, camera.channels)[oy:oy + height, ox:ox + width]
    out = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if camera.modality == "infrared":
        out = out[..., 0]
    if pose.flip:
        out, labels = out[:, ::-1], labels[:, ::-1]
    out = np.ascontiguousarray(out)
    return (out, np.ascontiguousarray(labels)) if return_labels else out


def _save_image(img: np.ndarray, path: Path) -> None:
    """Write ``img`` (mode RGB or L by its shape) as JPEG or BMP according to the suffix of ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pil = Image.fromarray(img)  # uint8 (H, W, 3) -> RGB, (H, W) -> L
    if path.suffix == ".jpg":
        pil.save(path, format="JPEG", quality=JPEG_QUALITY)
    else:
        pil.save(path, format="BMP")


# --------------------------------------------------------------------------------------------------
# Layout planning (what differs between SYSU-MM01 and RegDB)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageJob:
    """One file to render. ``pose_cam`` keys the pose RNG (RegDB: shared by the paired v/t images)."""

    relpath: str
    cam: int
    index: int
    pose_cam: int


@dataclass
class DatasetPlan:
    """Everything a layout writes: images grouped per id, text files, (possibly empty) folders, counts."""

    jobs: dict[int, list[ImageJob]]
    text_files: dict[str, str]
    dirs: list[str]
    counts: dict


def _split_ids(rng: np.random.Generator, pids: list[int], sizes: list[int]) -> list[list[int]]:
    """Randomly partition ``pids`` into consecutive groups of ``sizes`` (the last takes the rest), sorted."""
    perm = [pids[i] for i in rng.permutation(len(pids))]
    bounds = np.cumsum([0, *sizes, len(pids) - sum(sizes)])
    return [sorted(perm[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def _sysu_cameras(rng: np.random.Generator, params: SyntheticParams, is_test: bool) -> list[int]:
    """Cameras an id appears in: at least one visible and one infrared; test ids in cam3 and cam1 or cam2."""
    visible = [cam for cam in (1, 2, 4, 5) if rng.random() < params.vis_cam_prob]
    infrared = [cam for cam in (3, 6) if rng.random() < params.ir_cam_prob]
    if is_test and not {1, 2} & set(visible):
        visible.append(int(rng.choice([1, 2])))
    if not visible:
        visible.append(int(rng.choice([1, 2, 4, 5])))
    if is_test and 3 not in infrared:
        infrared.append(3)
    if not infrared:
        infrared.append(int(rng.choice([3, 6])))
    return sorted(visible + infrared)


def plan_sysu(params: SyntheticParams, seed: int) -> DatasetPlan:
    """SYSU-MM01: ``camK/<pid:04d>/<img:04d>.jpg`` and ``exp/{train,val,test}_id.txt`` (one CSV line each)."""
    pids = list(range(1, params.ids + params.test_ids + 1))
    n_val = round(params.ids * params.val_fraction)
    test, val, train = _split_ids(_rng(seed, "sysu", _STREAM_SPLIT), pids, [params.test_ids, n_val])
    test_set = set(test)
    jobs, per_cam = {}, {cam: 0 for cam in CAMERAS["sysu"]}
    images = {"train_val": {"visible": 0, "infrared": 0}, "test": {"visible": 0, "infrared": 0}}
    for pid in pids:
        jobs[pid] = []
        for cam in _sysu_cameras(_rng(seed, "sysu", _STREAM_ID_LAYOUT, pid), params, pid in test_set):
            modality = CAMERAS["sysu"][cam][0]
            n = params.vis_per_cam if modality == "visible" else params.ir_per_cam
            if params.count_jitter:
                jitter = _rng(seed, "sysu", _STREAM_ID_LAYOUT, pid, cam).integers(-params.count_jitter,
                                                                                   params.count_jitter + 1)
                n = max(1, n + int(jitter))
            jobs[pid] += [ImageJob(f"cam{cam}/{pid:04d}/{i:04d}.jpg", cam, i, cam) for i in range(1, n + 1)]
            per_cam[cam] += n
            images["test" if pid in test_set else "train_val"][modality] += n
    text_files = {f"exp/{name}_id.txt": ",".join(map(str, ids)) + "\n"
                  for name, ids in (("train", train), ("val", val), ("test", test))}
    counts = {"ids": {"train": len(train), "val": len(val), "test": len(test)}, "images": images,
              "images_per_camera": {f"cam{cam}": n for cam, n in per_cam.items()},
              "total_images": sum(per_cam.values())}
    return DatasetPlan(jobs, text_files, [f"cam{cam}" for cam in CAMERAS["sysu"]] + ["exp"], counts)


def _regdb_names(rng: np.random.Generator, pid: int, n: int, letter: str) -> list[str]:
    """RegDB-style names ``<sex>_<view>_<v|t>_<frame:05d>_<pid>.bmp``; v and t of a frame share a number."""
    sex, view = rng.choice(["female", "male"]), rng.choice(["front", "back"])
    start = int(rng.integers(0, 900)) * 10
    return [f"{sex}_{view}_{letter}_{start + 10 * k:05d}_{pid}.bmp" for k in range(n)]


def plan_regdb(params: SyntheticParams, seed: int) -> DatasetPlan:
    """RegDB: ``{Visible,Thermal}/<pid>/<name>.bmp`` and ``idx/{train,test}_{visible,thermal}_{t}.txt``."""
    pids = list(range(1, params.ids + 1))
    modalities = (("Visible", "visible", "v", 1, params.vis_per_cam),
                  ("Thermal", "thermal", "t", 2, params.ir_per_cam))
    files: dict[str, dict[int, list[str]]] = {folder: {} for folder, *_ in modalities}
    jobs = {pid: [] for pid in pids}
    for pid in pids:
        for folder, _, letter, cam, n in modalities:
            names = _regdb_names(_rng(seed, "regdb", _STREAM_ID_LAYOUT, pid), pid, n, letter)
            files[folder][pid] = [f"{folder}/{pid}/{name}" for name in names]
            jobs[pid] += [ImageJob(path, cam, k, 0) for k, path in enumerate(files[folder][pid])]
    text_files = {}
    for trial in range(1, params.trials + 1):
        test, train = _split_ids(_rng(seed, "regdb", _STREAM_SPLIT, trial), pids, [params.test_ids])
        for split, ids in (("train", train), ("test", test)):
            for folder, name, *_ in modalities:
                lines = [f"{path} {label}" for label, pid in enumerate(ids) for path in files[folder][pid]]
                text_files[f"idx/{split}_{name}_{trial}.txt"] = "\n".join(lines) + "\n"
    counts = {"ids": len(pids), "train_ids_per_trial": len(pids) - params.test_ids,
              "test_ids_per_trial": params.test_ids, "trials": params.trials,
              "images": {"visible": len(pids) * params.vis_per_cam, "thermal": len(pids) * params.ir_per_cam},
              "total_images": len(pids) * (params.vis_per_cam + params.ir_per_cam)}
    return DatasetPlan(jobs, text_files, ["Visible", "Thermal", "idx"], counts)


LLCM_INFRARED_CAMS = (1, 2, 4, 5, 6, 7, 8, 9)  # no near-infrared camera 3, as in the official test split


def _llcm_cameras(rng: np.random.Generator, params: SyntheticParams, is_test: bool) -> tuple[list[int], list[int]]:
    """Visible and infrared cameras of an id: at least one of each, two for a test id (so that every query has
    a match from another camera, the only ones LLCM's protocol keeps)."""
    need = 2 if is_test else 1
    cams = []
    for choices, prob in ((range(1, 10), params.vis_cam_prob), (LLCM_INFRARED_CAMS, params.ir_cam_prob)):
        picked = [cam for cam in choices if rng.random() < prob]
        missing = [cam for cam in choices if cam not in picked]
        picked += [int(cam) for cam in rng.choice(missing, max(0, need - len(picked)), replace=False)]
        cams.append(sorted(picked))
    return cams[0], cams[1]


def plan_llcm(params: SyntheticParams, seed: int) -> DatasetPlan:
    """LLCM: train images ``{vis,nir}/<pid:04d>/<name>`` listed in ``idx/train_{vis,nir}.txt`` (``<path> <label>``,
    labels 0..N-1 shared by both modalities), ``idx/test_id.txt`` (one CSV line) and test images
    ``test_{vis,nir}/cam<k>/<pid:04d>/<name>``; names ``<pid:04d>_c<cam:02d>_s<seq:06d>_f<frame:04d>_<vis|nir>.jpg``."""
    pids = list(range(1, params.ids + params.test_ids + 1))
    test, train = _split_ids(_rng(seed, "llcm", _STREAM_SPLIT), pids, [params.test_ids])
    label = {pid: i for i, pid in enumerate(train)}
    lines = {"vis": [], "nir": []}
    jobs = {pid: [] for pid in pids}
    images = {split: {"visible": 0, "infrared": 0} for split in ("train", "test")}
    for pid in pids:
        rng = _rng(seed, "llcm", _STREAM_ID_LAYOUT, pid)
        split = "train" if pid in label else "test"
        for tag, modality, key_offset, n, cams in zip(("vis", "nir"), ("visible", "infrared"), (0, 10),
                                                      (params.vis_per_cam, params.ir_per_cam),
                                                      _llcm_cameras(rng, params, split == "test")):
            for cam in cams:
                seq, first = int(rng.integers(0, 240000)), int(rng.integers(0, 5000))
                for i in range(n):
                    name = f"{pid:04d}_c{cam:02d}_s{seq:06d}_f{first + 7 * i:04d}_{tag}.jpg"
                    folder = f"{tag}/{pid:04d}" if split == "train" else f"test_{tag}/cam{cam}/{pid:04d}"
                    jobs[pid].append(ImageJob(f"{folder}/{name}", key_offset + cam, i, key_offset + cam))
                    if split == "train":
                        lines[tag].append(f"{folder}/{name} {label[pid]}")
                images[split][modality] += n
    text_files = {f"idx/train_{tag}.txt": "\n".join(lines[tag]) + "\n" for tag in lines}
    text_files["idx/test_id.txt"] = ",".join(map(str, test)) + "\n"
    dirs = ["vis", "nir", "idx"] + [f"test_vis/cam{k}" for k in range(1, 10)]
    dirs += [f"test_nir/cam{k}" for k in LLCM_INFRARED_CAMS]
    counts = {"ids": {"train": len(train), "test": len(test)}, "images": images,
              "total_images": sum(n for split in images.values() for n in split.values())}
    return DatasetPlan(jobs, text_files, dirs, counts)


_PLANNERS: dict[str, Callable[[SyntheticParams, int], DatasetPlan]] = {"sysu": plan_sysu, "regdb": plan_regdb,
                                                                        "llcm": plan_llcm}


# --------------------------------------------------------------------------------------------------
# Writing (shared by both layouts)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _RenderContext:
    root: Path
    seed: int
    layout: str
    height: int
    width: int
    occlusion_prob: float
    cameras: dict[int, CameraStyle]
    params: SyntheticParams


def _render_identity(ctx: _RenderContext, task: tuple[int, list[ImageJob]]) -> int:
    """Render and save all images of one id (runs in a worker process when ``workers > 1``)."""
    pid, jobs = task
    p = ctx.params
    ident = sample_identity(_rng(ctx.seed, ctx.layout, _STREAM_IDENTITY, pid), pid, p.shared_ir, p.pattern_freq)
    for job in jobs:
        pose = sample_pose(_rng(ctx.seed, ctx.layout, _STREAM_POSE, pid, job.pose_cam, job.index), p.pose_jitter)
        rng = _rng(ctx.seed, ctx.layout, _STREAM_IMAGE, pid, job.cam, job.index)
        img = render_image(ident, ctx.cameras[job.cam], pose, rng, ctx.height, ctx.width, ctx.occlusion_prob,
                           clutter=p.clutter)
        _save_image(img, ctx.root / job.relpath)
    return len(jobs)


def _init_worker() -> None:
    cv2.setNumThreads(1)


def _run_tasks(ctx: _RenderContext, tasks: list[tuple[int, list[ImageJob]]], workers: int) -> int:
    render = functools.partial(_render_identity, ctx)
    if workers <= 1 or len(tasks) <= 1:
        return sum(map(render, tasks))
    with multiprocessing.Pool(min(workers, len(tasks)), initializer=_init_worker) as pool:
        return sum(pool.imap_unordered(render, tasks))


def _is_non_empty(path: Path) -> bool:
    return path.is_file() or path.is_symlink() or (path.is_dir() and any(path.iterdir()))


def _sibling(path: Path, tag: str) -> Path:
    """Create and return a fresh directory ``<path>.<tag>-XXXXXXXX`` next to ``path``."""
    while True:
        candidate = path.with_name(f"{path.name}.{tag}-{secrets.token_hex(4)}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue


@contextlib.contextmanager
def _atomic_directory(out: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary sibling of ``out`` and rename it to ``out`` on success (removed on failure)."""
    if _is_non_empty(out) and not overwrite:
        raise FileExistsError(f"output directory {out} exists and is not empty (use overwrite / --overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(out, "tmp")
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.is_dir() and not out.is_symlink():
        if any(out.iterdir()):
            old = _sibling(out, "old")
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old)
            return
        out.rmdir()
    elif out.exists() or out.is_symlink():
        out.unlink()
    os.replace(tmp, out)


def generate(layout: str, out: str | os.PathLike, preset: str = "tiny", seed: int = 0, workers: int = 1,
             overwrite: bool = False, **overrides) -> dict:
    """Write a synthetic ``layout`` dataset to ``out`` atomically and return its metadata (also saved as
    ``out/synthetic_meta.json``). ``overrides`` replace fields of the preset's :class:`SyntheticParams`."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    params = resolve_params(layout, preset, **overrides)
    out = Path(out)
    plan = _PLANNERS[layout](params, int(seed))
    cameras = {cam: sample_camera(_rng(seed, layout, _STREAM_CAMERA, cam), cam, modality, indoor)
               for cam, (modality, indoor) in CAMERAS[layout].items()}
    start = time.perf_counter()
    with _atomic_directory(out, overwrite) as tmp:
        for folder in plan.dirs:
            (tmp / folder).mkdir(parents=True, exist_ok=True)
        for relpath, text in plan.text_files.items():
            (tmp / relpath).write_text(text, encoding="utf-8")
        ctx = _RenderContext(root=tmp, seed=int(seed), layout=layout, height=params.height,
                             width=params.width, occlusion_prob=params.occlusion_prob, cameras=cameras,
                             params=params)
        written = _run_tasks(ctx, sorted(plan.jobs.items()), workers)
        assert written == plan.counts["total_images"], (written, plan.counts)
        meta = {"generator": __name__, "format_version": FORMAT_VERSION, "layout": layout, "preset": preset,
                "seed": int(seed), "params": dataclasses.asdict(params), "counts": plan.counts}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return {**meta, "seconds": round(time.perf_counter() - start, 3), "out": str(out)}


def write_sysu(out: str | os.PathLike, **kwargs) -> dict:
    """:func:`generate` with ``layout="sysu"``."""
    return generate("sysu", out, **kwargs)


def write_regdb(out: str | os.PathLike, **kwargs) -> dict:
    """:func:`generate` with ``layout="regdb"``."""
    return generate("regdb", out, **kwargs)


def write_llcm(out: str | os.PathLike, **kwargs) -> dict:
    """:func:`generate` with ``layout="llcm"``."""
    return generate("llcm", out, **kwargs)
