"""Procedural training images with exact instance masks.

Three scene kinds, drawn at random unless one is asked for:

- ``"nuclei"``: fluorescent-nuclei-like blobs of varied size, eccentricity,
  boundary wobble, texture and brightness; some touch, some overlap (the
  intensities add, as in fluorescence, and each object keeps its full mask);
  optionally (``packed``) some of the close ones are packed instead: pressed
  against their neighbours, they fill only the space left free, so their
  masks and intensities share a boundary as in dense cultures and tissue.
- ``"cells"``: cells outlined by a bright membrane ring with a dim cytoplasm,
  most with a nucleus inside (nested objects: a click on the nucleus may mean
  the nucleus or the whole cell).
- ``"mri"``: smooth nested anatomy (a large body, an organ inside it,
  structures inside the organ), brighter or darker than their parent, under a
  bias field.

Every scene gets a background with a gradient and low-frequency texture,
optical blur, Poisson and Gaussian noise, and is returned as 8-bit, 16-bit
(with a random maximum) or float data, sometimes inverted (dark objects on a
bright background). Masks are exact: each object's mask is the support it was
drawn with; blur and noise change only the image.

>>> s = generate(0, (256, 256))
>>> s.image.shape, s.masks.shape[1:], s.masks.dtype
((256, 256), (256, 256), dtype('bool'))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np
from scipy import ndimage as ndi

KINDS = ("nuclei", "cells", "mri")
KIND_WEIGHTS = (0.6, 0.25, 0.15)
#: Range of nucleus diameters, log-uniform, in pixels of a 256 px image (scaled with the image size).
#: At the model's 512 px frame that is 8 to 180 px: nuclei of a large image shrunk to the model
#: frame are often under 20 px across, so the small end must be well covered.
NUCLEUS_DIAMETER = (4.0, 90.0)
#: Spread of nucleus brightness within a scene: the standard deviation of its logarithm, drawn per
#: scene from this range (equal ends: that value, no draw, the generator of the shipped model).
BRIGHTNESS_SIGMA = (0.35, 0.35)


@dataclass
class Sample:
    """One generated image and its objects.

    Attributes
    ----------
    image : (H, W) uint8, uint16 or float32
        The rendered, noisy image.
    masks : (N, H, W) bool
        Exact mask of each object (objects may overlap or nest).
    parents : (N,) int
        Index of the object that contains object ``i`` (nesting), or -1.
    clean : (H, W) float32
        The noise-free, blur-free foreground signal (for tests).
    kind : str
        Scene kind, one of :data:`KINDS`.
    """

    image: np.ndarray
    masks: np.ndarray
    parents: np.ndarray
    clean: np.ndarray
    kind: str
    info: dict = field(default_factory=dict)

    def labels(self) -> np.ndarray:
        """(H, W) int32 instance labels (1..N, later objects on top, 0 = none)."""
        out = np.zeros(self.masks.shape[1:], np.int32)
        for i, m in enumerate(self.masks):
            out[m] = i + 1
        return out


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Zero-mean, unit-std smooth random field with correlation length ``scale`` px."""
    small = (max(2, int(shape[0] / scale) + 2), max(2, int(shape[1] / scale) + 2))
    field_ = rng.standard_normal(small).astype(np.float32)
    zoom = (shape[0] / (small[0] - 1), shape[1] / (small[1] - 1))
    out = ndi.zoom(field_, zoom, order=1, mode="nearest", grid_mode=False)[: shape[0], : shape[1]]
    if out.shape != shape:
        out = np.pad(out, [(0, shape[0] - out.shape[0]), (0, shape[1] - out.shape[1])], mode="edge")
    return (out - out.mean()) / (out.std() + 1e-6)


def blob_mask(rng: np.random.Generator, shape: tuple[int, int], center, radius: float,
              eccentricity: float, wobble: float) -> tuple[np.ndarray, tuple[slice, slice]]:
    """A star-shaped blob: ellipse with a low-frequency wobbly boundary.

    Returns the mask inside its bounding window and that window (slices).
    """
    cy, cx = center
    a = radius * (1.0 + eccentricity)
    b = radius / (1.0 + eccentricity)
    theta0 = rng.uniform(0, np.pi)
    harm = rng.standard_normal((3, 2)) * wobble / np.arange(2, 5)[:, None]
    ext = int(np.ceil(a * (1 + 2 * wobble) + 2))
    r0, r1 = max(0, int(cy) - ext), min(shape[0], int(cy) + ext + 2)
    c0, c1 = max(0, int(cx) - ext), min(shape[1], int(cx) + ext + 2)
    dy = (np.arange(r0, r1, dtype=np.float32) - np.float32(cy))[:, None]
    dx = (np.arange(c0, c1, dtype=np.float32) - np.float32(cx))[None, :]
    u = dx * np.float32(np.cos(theta0)) + dy * np.float32(np.sin(theta0))
    v = dy * np.float32(np.cos(theta0)) - dx * np.float32(np.sin(theta0))
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    norm = np.sqrt(dx**2 + dy**2) + np.float32(1e-6)
    z1 = (dx + 1j * dy) / norm  # e^{i angle}; its powers give the harmonics without trig
    zk, edge = z1 * z1, np.ones_like(rho)
    for k in range(3):
        edge += np.float32(harm[k, 0]) * zk.real + np.float32(harm[k, 1]) * zk.imag
        zk = zk * z1
    return rho <= edge, (slice(r0, r1), slice(c0, c1))


def _place(rng, shape, radius, centers, radii, overlap: float):
    """A centre for a new blob; ``overlap`` < 1 lets it come closer than touching."""
    tries = rng.uniform(0, 1, (30, 2)) * (np.array(shape) - 1)
    if not centers:
        return tries[0]
    d = np.hypot(*(tries[:, None, :] - np.asarray(centers)[None]).transpose(2, 0, 1))
    ok = np.flatnonzero((d > overlap * (radius + np.asarray(radii))[None]).all(axis=1))
    return tries[ok[0]] if len(ok) else None


def _scene_nuclei(rng, shape, scale: float, diameter_range: tuple[float, float],
                  brightness_sigma: tuple[float, float], bright_fraction: float, packed: float = 0.0):
    """Nuclei; with ``bright_fraction`` > 0, up to that fraction of them (drawn per scene) are
    small, elongated and several times brighter, like condensed mitotic or apoptotic nuclei: the
    intensity window then leaves the ordinary nuclei dim, as in many real nuclear stains. With
    ``packed`` > 0, that fraction of the nuclei placed closer than touching are packed
    (:func:`_pack`) instead of overlapping."""
    h, w = shape
    diameter = scale * np.exp(rng.uniform(np.log(diameter_range[0]), np.log(diameter_range[1])))
    density = rng.uniform(0.15, 0.55)
    n_target = int(np.clip(density * h * w / (np.pi * (diameter / 2) ** 2), 1, 120))
    masks, clean, parents = [], np.zeros(shape, np.float32), []
    centers, radii = [], []
    occupied = np.zeros(shape, bool) if packed > 0 else None
    base_bright = rng.uniform(0.4, 1.0)
    texture = smooth_noise(rng, shape, max(2.0, diameter / 6))
    tex_amp = rng.uniform(0, 0.35)
    lo, hi = brightness_sigma
    sigma = lo if lo == hi else rng.uniform(lo, hi)  # no draw at equal ends: older scenes unchanged
    p_bright = rng.uniform(0, bright_fraction) if bright_fraction > 0 else 0.0
    for _ in range(n_target):
        r = diameter / 2 * np.exp(rng.normal(0, 0.25))
        condensed = p_bright > 0 and rng.random() < p_bright
        if condensed:
            r *= rng.uniform(0.5, 0.8)
        overlap = rng.choice([1.05, 0.9, 0.6], p=[0.6, 0.3, 0.1])  # apart / touching / overlapping
        c = _place(rng, shape, r, centers, radii, overlap)
        if c is None:
            continue
        ecc = rng.uniform(0.3, 0.8) if condensed else rng.uniform(0, 0.5)
        m, win = blob_mask(rng, shape, c, r, ecc, rng.uniform(0, 0.12))
        if m.sum() < 6:
            continue
        shade = np.float32(1.0)
        if packed > 0:  # no draw at 0: the shipped model's scenes stay as they were
            if overlap < 1 and rng.random() < packed:
                m, shade = _pack(rng, m, occupied[win])
                if m.sum() < 6:
                    continue
            occupied[win] |= m
        full = np.zeros(shape, bool)
        full[win] = m
        bright = base_bright * np.exp(rng.normal(0, sigma)) * (rng.uniform(2.5, 6.0) if condensed else 1.0)
        tex = 1.0 + tex_amp * texture[win]
        clean[win] += np.where(m, bright * np.clip(tex, 0.2, None) * shade, 0).astype(np.float32)
        masks.append(full)
        parents.append(-1)
        centers.append(c)
        radii.append(r)
    return masks, parents, clean


def _pack(rng, mask: np.ndarray, occupied: np.ndarray) -> tuple[np.ndarray, np.ndarray | np.float32]:
    """A nucleus pressed against those already drawn: its mask keeps only the free pixels (the
    largest connected piece), so neighbours share a boundary instead of overlapping, and the
    returned shade (per pixel) dims its rim along the contact by a random factor (1: no visible
    seam, as when two nuclei of equal brightness touch)."""
    free = mask & ~occupied
    pieces, n = ndi.label(free)
    if n > 1:
        free = pieces == 1 + int(np.argmax(ndi.sum(free, pieces, range(1, n + 1))))
    contact = free & ndi.binary_dilation(occupied)
    shade = np.where(contact, np.float32(rng.uniform(0.4, 1.0)), np.float32(1.0))
    return free, shade


def _scene_cells(rng, shape, scale: float):
    h, w = shape
    diameter = scale * np.exp(rng.uniform(np.log(30), np.log(150)))
    n_target = int(np.clip(rng.uniform(0.3, 0.6) * h * w / (np.pi * (diameter / 2) ** 2), 1, 40))
    masks, parents, clean = [], [], np.zeros(shape, np.float32)
    centers, radii = [], []
    membrane = rng.uniform(0.6, 1.0)
    for _ in range(n_target):
        r = diameter / 2 * np.exp(rng.normal(0, 0.2))
        c = _place(rng, shape, r, centers, radii, 1.0)
        if c is None:
            continue
        m, win = blob_mask(rng, shape, c, r, rng.uniform(0, 0.4), rng.uniform(0, 0.1))
        if m.sum() < 30:
            continue
        thick = max(1, int(round(rng.uniform(1.5, 4) * scale)))
        ring = m & ~ndi.binary_erosion(m, iterations=thick, border_value=1)
        full = np.zeros(shape, bool)
        full[win] = m
        cyto = rng.uniform(0.0, 0.25)
        clean[win] = np.maximum(clean[win], np.where(ring, membrane, np.where(m, cyto, 0)).astype(np.float32))
        masks.append(full)
        parents.append(-1)
        centers.append(c)
        radii.append(r)
        if rng.random() < 0.7:  # a nucleus inside the cell
            off = rng.normal(0, r * 0.15, 2)
            nm, nwin = blob_mask(rng, shape, np.asarray(c) + off, r * rng.uniform(0.25, 0.45),
                                 rng.uniform(0, 0.3), 0.05)
            nuc = np.zeros(shape, bool)
            nuc[nwin] = nm
            nuc &= full & ~np.pad(ring, [(win[0].start, h - win[0].stop), (win[1].start, w - win[1].stop)])
            if nuc.sum() >= 6:
                clean[nuc] = rng.uniform(0.35, 0.9)
                masks.append(nuc)
                parents.append(len(masks) - 2)
    return masks, parents, clean


def _scene_mri(rng, shape, scale: float):
    h, w = shape
    masks, parents = [], []
    clean = np.zeros(shape, np.float32)
    body_r = min(h, w) * rng.uniform(0.3, 0.48)
    stack = [(-1, np.array([h / 2, w / 2]) + rng.normal(0, 0.05, 2) * (h, w), body_r, rng.uniform(0.3, 0.6))]
    while stack:  # depth-first: body -> organs -> structures
        parent, c, r, level = stack.pop()
        m, win = blob_mask(rng, shape, c, r, rng.uniform(0, 0.35), rng.uniform(0.02, 0.1))
        full = np.zeros(shape, bool)
        full[win] = m
        if parent >= 0:
            full &= masks[parent]
            for j, pj in enumerate(parents):  # siblings stay disjoint, so every mask is what is visible
                if pj == parent:
                    full &= ~masks[j]
        if full.sum() < 20:
            continue
        smooth = ndi.gaussian_filter(full.astype(np.float32), rng.uniform(0.5, 2.0) * scale)
        clean = clean * (1 - smooth) + level * smooth
        masks.append(full)
        parents.append(parent)
        me = len(masks) - 1
        depth = 0 if parent < 0 else 1 + (parents[parent] >= 0)
        if depth < 2:
            for _ in range(rng.integers(1, 4)):
                rr = r * rng.uniform(0.15, 0.45)
                cc = np.asarray(c) + rng.uniform(-1, 1, 2) * (r - rr) * 0.7
                lv = float(np.clip(level + rng.choice([-1, 1]) * rng.uniform(0.2, 0.5), 0.05, 1.0))
                stack.append((me, cc, rr, lv))
    texture = 1.0 + 0.08 * smooth_noise(rng, shape, 6 * scale)
    return masks, parents, clean * texture


def generate(seed, shape: tuple[int, int] = (256, 256), kind: str | None = None, *,
             noise: bool = True, nucleus_diameter: tuple[float, float] = NUCLEUS_DIAMETER,
             brightness_sigma: tuple[float, float] = BRIGHTNESS_SIGMA, bright_fraction: float = 0.0,
             packed: float = 0.0) -> Sample:
    """Render one scene.

    Parameters
    ----------
    seed : int or numpy.random.Generator
        Same seed, same sample (bit for bit).
    shape : (H, W)
        Image size in pixels.
    kind : {"nuclei", "cells", "mri"}, optional
        Scene kind; drawn at random (weights :data:`KIND_WEIGHTS`) when None.
    noise : bool
        False gives the clean signal on a flat background (no blur, no noise).
    nucleus_diameter : (min, max)
        Diameter range of ``"nuclei"`` scenes in pixels of a 256 px image.
    brightness_sigma : (min, max)
        Range of the per-scene spread (log standard deviation) of nucleus brightness.
    bright_fraction : float
        Largest fraction of condensed, much brighter nuclei in a ``"nuclei"`` scene (0: none).
    packed : float
        Fraction of the ``"nuclei"`` placed closer than touching that are packed against their
        neighbours (a shared boundary, no overlap) instead of overlapping them (0: none).

    Returns
    -------
    Sample
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    shape = (int(shape[0]), int(shape[1]))
    if kind is None:
        kind = str(rng.choice(KINDS, p=KIND_WEIGHTS))
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    scale = min(shape) / 256 * np.exp(rng.uniform(-0.3, 0.3))
    scene = {"nuclei": partial(_scene_nuclei, diameter_range=nucleus_diameter,
                               brightness_sigma=brightness_sigma, bright_fraction=bright_fraction,
                               packed=packed),
             "cells": _scene_cells, "mri": _scene_mri}[kind]
    masks, parents, clean = scene(rng, shape, scale)
    masks = np.stack(masks) if masks else np.zeros((0, *shape), bool)
    parents = np.asarray(parents, np.int64)
    if not noise:
        return Sample(clean.copy(), masks, parents, clean, kind)
    img = clean.copy()
    blur = rng.uniform(0.3, 2.0) * max(scale, 0.5)
    img = ndi.gaussian_filter(img, blur)
    bg = rng.uniform(0.0, 0.25)
    gy, gx = rng.normal(0, 0.1, 2)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    background = bg + gy * yy / shape[0] + gx * xx / shape[1] + rng.uniform(0, 0.05) * smooth_noise(rng, shape, 40)
    if kind == "mri":
        img = img * (1 + 0.25 * smooth_noise(rng, shape, shape[0] / 2)) + 0.3 * bg
    else:
        img = img + background
    photons = np.exp(rng.uniform(np.log(20), np.log(2000)))
    img = rng.poisson(np.clip(img, 0, None) * photons).astype(np.float32) / photons
    img += rng.normal(0, rng.uniform(0.0, 0.04), shape).astype(np.float32)
    if rng.random() < 0.15 and kind != "mri":
        img = img.max() - img  # dark objects on a bright background
    img = _quantise(rng, img)
    return Sample(img, masks, parents, clean, kind, {"blur": blur, "photons": photons})


def _quantise(rng, img: np.ndarray) -> np.ndarray:
    """To uint8 (0-255), uint16 with a random top value, or float32 with a random offset/gain."""
    lo, hi = float(img.min()), float(img.max())
    unit = (img - lo) / max(hi - lo, 1e-6)
    choice = rng.random()
    if choice < 0.35:
        return np.round(unit * rng.uniform(60, 255)).astype(np.uint8)
    if choice < 0.85:
        top = np.exp(rng.uniform(np.log(300), np.log(65535)))
        return np.round(unit * top + rng.uniform(0, 0.1) * top * (1 - unit.mean())).clip(0, 65535).astype(np.uint16)
    return (unit * rng.uniform(0.5, 5000) + rng.normal(0, 100)).astype(np.float32)


def scene_shape(rng: np.random.Generator) -> tuple[int, int]:
    """A training scene's size: 55 % 512 x 512, 25 % 256 x 256 (upsampled by the predictor, like
    the 256 x 256 nuclei3d slices), 20 % 256-768 px long with another aspect ratio."""
    u = rng.random()
    if u < 0.55:
        return 512, 512
    if u < 0.8:
        return 256, 256
    long = int(rng.integers(256, 769))
    return (long, int(long * rng.uniform(0.5, 1.0)))[:: 1 if rng.random() < 0.5 else -1]
