"""Train a ``vit_t`` (TinyViT encoder + SAM prompt encoder/decoder) from scratch on procedural data.

    python -m training.train --out model.pt --minutes 85 --seed 0 [--export shipped.pt]

What one step does (all in fp32 unless ``--precision bf16``; on the CPU for the reference recipe, or
``--device cuda`` for recipe trials with :mod:`training.sweep`, where the
same loop runs at about the CPU's speed, see its results):

1. Render a scene (:mod:`training.synth`) at 512 x 512, 256 x 256 or a
   non-square size, and prepare it exactly like :class:`napari_segany.Predictor`
   (``intensity_window`` with the default percentiles, ``to_unit_range``,
   ``Geometry.for_image``, ``encoder_input``): longest side resized to the
   model size, ImageNet mean/std, zero padding.
2. Cut one encoder window out of the model frame (512 x 512, or
   ``--image-size``) and run the encoder on it only (``--full-frame``: the
   whole frame). Windows start at multiples of 224 px and end there or at the
   frame's edge (per axis [0, 224) or [224, 512) at 512; [0, 224),
   [224, 448) or [448, 768) at 768), which is where TinyViT's attention windows fall on
   the full frame, so the window's embedding is the matching part of the
   full-frame embedding up to the convolutions' zero padding at its inner
   edges. (Measured on a partly trained model: windows at multiples of 16 px
   instead scored 0.25 vs 0.16 1-click IoU between the window path and the
   full frame; aligned windows 0.20 vs 0.18.) TinyViT has no positional
   embedding; the decoder gets the matching window of the dense positional
   encoding and prompts in full-frame model coordinates, so what is learnt is
   what the 512 model serves. This makes the encoder's share of a step
   about 4x cheaper.
3. For up to ``objects`` objects in the window: a first prompt (one random
   point with multimask output, or a jittered box), then ``iters - 1``
   correction rounds, each adding a click from the error region of the
   previous best-scored candidate and feeding that candidate's logits back as
   ``mask_input`` (single-mask output), as in SAM's training.
4. Loss: focal + dice of the best candidate at the window's resolution + MSE
   of the predicted IoU (:mod:`training.losses`), summed over rounds
   (``--loss-res low``: on the decoder's 4x coarser logits against the fraction
   of each logit pixel the object covers, about 15-20 % cheaper per step;
   ``--bce-weight``: a cross-entropy term; neither is in the shipped recipe); AdamW
   with warm-up and cosine decay; one backward per step. BatchNorm uses each
   step's statistics until ``--bn-freeze-at`` of the steps, then is measured
   and frozen for the rest (:func:`freeze_batchnorm`).

The data of step ``i`` depends only on ``(seed, i)``, so a run with
``--steps N`` repeats bit for bit on the same machine (same torch build, same
thread count; tested). On another CPU of the same kind the float rounding of
some kernels differs: run 13 (2026-12-02) matched run 11 (2026-12-01) for
the first 40 steps and then drifted (losses equal to 1e-7 at step 60), so a
rerun elsewhere gives a model of the same recipe, not the same bits. With
only ``--minutes`` the step count is fixed from the speed of the first steps
and logged; rerun with that ``--steps`` to reproduce the file.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from napari_segany.model import build_sam
from napari_segany.engine.refine import REFINER_PREFIX
from napari_segany.engine.scoring import SCORER_PREFIX
from napari_segany.engine.preprocess import DEFAULT_PERCENTILES, Geometry, encoder_input, intensity_window, to_unit_range

from .ema import WeightAverage
from .losses import mask_iou, sam_loss
from .prompts import jittered_box, random_point, sampled_correction
from .stages import save_atomically
from .synth import BRIGHTNESS_SIGMA, NUCLEUS_DIAMETER, generate, scene_shape

PATCH = 16
#: TinyViT-5M's attention windows at a 512 or 1024 input tile the frame in steps of 224 px
#: (stage 2: 7 tokens x 8 px = 56; stage 3: 14 x 16 = 224; stage 4: 7 x 16 = 112).
WINDOW_ALIGN = 224
CALIBRATION_IMAGES = 32
#: Propagation's stop level written into our checkpoints' config (``ModelInfo.stop_iou``): the IoU
#: head is trained on the true IoU (MSE), so its scores are on the IoU scale, and 0.5 is where a mask
#: stops counting as a match of the object in the usual instance-matching rule. SAM's 0.8 suits
#: SAM's higher scores; at 0.8 our first model stopped on the seed slice for half the 3D nuclei.
STOP_IOU = 0.5


def encode(encoder: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """TinyViT forward without its input-size check (any multiple of 16): B x 3 x s x s -> B x 256 x s/16 x s/16."""
    x = encoder.patch_embed(x)
    for stage in encoder.layers:
        x = stage(x)
    return encoder.neck(x)


def scene_options(args: argparse.Namespace) -> dict:
    """The generator's keyword arguments that the command line sets (see :func:`training.synth.generate`)."""
    return {"nucleus_diameter": tuple(args.nucleus_diameter), "brightness_sigma": tuple(args.brightness_sigma),
            "bright_fraction": float(args.bright_fraction), "packed": float(args.packed)}


def render(rng: np.random.Generator, image_size: int, options: dict | None = None,
           enlarged: float = 0.0, enlarge_max: float = 4.0):
    """One scene prepared like the Predictor does: (1 x 3 x S x S input, N x S x S bool masks, geometry).
    ``options``: :func:`scene_options` (default: the generator's defaults). A fraction ``enlarged``
    of the scenes is drawn small and enlarged 1.5-``enlarge_max`` times (log-uniform) into the frame,
    as :class:`napari_segany.engine.zoom.ZoomPredictor` enlarges crops around small objects."""
    if enlarged > 0 and rng.random() < enlarged:  # no draw at 0: older runs keep their random stream
        side = int(round(image_size / np.exp(rng.uniform(np.log(1.5), np.log(enlarge_max)))))
        return _prepare(generate(rng, (side, side), **(options or {})), image_size)
    return _prepare(generate(rng, scene_shape(rng), **(options or {})), image_size)


def _prepare(sample, image_size: int):
    data = sample.image[..., None]
    unit = to_unit_range(data, intensity_window(data, percentiles=DEFAULT_PERCENTILES))
    geometry = Geometry.for_image(sample.image.shape, image_size, "sam")
    x = encoder_input(unit, geometry, torch.device("cpu"))
    return x, sample.masks, geometry


def frame_masks(masks: np.ndarray, geometry: Geometry) -> torch.Tensor:
    """N x H x W bool masks -> N x S x S float {0, 1} in the model frame (resized like the image, padded)."""
    m = torch.from_numpy(masks.astype(np.float32))[:, None]
    if tuple(m.shape[-2:]) != geometry.input_size:
        shrink = geometry.input_size[0] < m.shape[-2]
        m = F.interpolate(m, size=geometry.input_size, mode="bilinear", align_corners=False, antialias=shrink)
    s = geometry.model_size
    m = F.pad(m, (0, s - geometry.input_size[1], 0, s - geometry.input_size[0]))
    return (m[:, 0] > 0.5).float()


def window_segments(size: int, unit: int = WINDOW_ALIGN) -> list[tuple[int, int]]:
    """Encoder windows along one axis of a ``size`` frame: [k*unit, (k+1)*unit), the last
    one running to the frame's end (e.g. 512 -> [0, 224), [224, 512))."""
    starts = range(0, max(size - unit, 0) + 1, unit)
    return [(a, a + unit) for a in starts[:-1]] + [(starts[-1], size)]


def pick_window(rng, geometry: Geometry, full_frame: bool = False) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the encoder window in the model frame.

    Windows start at multiples of :data:`WINDOW_ALIGN` and end there or at the
    frame's edge, so TinyViT's attention windows (and their zero padding at the
    bottom/right edge) fall exactly where they fall on the full frame at
    inference. Only windows that overlap the image part of the frame are drawn.
    """
    s = geometry.model_size
    if full_frame:
        return 0, 0, s, s

    def axis(extent):
        segs = [seg for seg in window_segments(s) if seg[0] < extent]
        a, b = segs[int(rng.integers(len(segs)))]
        return a, b - a

    (top, h), (left, w) = axis(geometry.input_size[0]), axis(geometry.input_size[1])
    return top, left, h, w


def choose_objects(rng, masks: np.ndarray, geometry: Geometry, window, n: int, min_area: int = 12) -> np.ndarray:
    """Indices of up to ``n`` objects with at least ``min_area`` model-frame pixels in the window
    (areas measured on the original masks, scaled; only the chosen masks get resized)."""
    top, left, h, w = window
    sy = geometry.input_size[0] / geometry.original_size[0]
    sx = geometry.input_size[1] / geometry.original_size[1]
    r0, r1 = int(top / sy), int(math.ceil((top + h) / sy))
    c0, c1 = int(left / sx), int(math.ceil((left + w) / sx))
    areas = masks[:, r0:r1, c0:c1].sum((1, 2)) * sy * sx
    ok = np.flatnonzero(areas >= min_area)
    return rng.permutation(ok)[:n]


def decode(model, feats, pe, targets, prompt_pts, prompt_lab, boxes, mask_in, multimask, grad_up: bool = True):
    """One batched decoder call for K objects; logits upsampled to the window's resolution
    (``grad_up=False``: the upsampled copy carries no gradient, for when the loss is taken on the
    low-resolution logits)."""
    dev = feats.device
    pts = None
    if prompt_pts is not None:
        pts = (torch.tensor(np.asarray(prompt_pts), dtype=torch.float32, device=dev),
               torch.tensor(np.asarray(prompt_lab), dtype=torch.int64, device=dev))
    bx = None if boxes is None else torch.tensor(np.asarray(boxes), dtype=torch.float32, device=dev)
    sparse, dense = model.prompt_encoder(pts, bx, mask_in)
    if dense.shape[-2:] != feats.shape[-2:]:  # no mask prompt: the no-mask embedding, window-sized
        dense = dense[..., : feats.shape[-2], : feats.shape[-1]]
    low, iou = model.mask_decoder(feats, pe, sparse, dense, multimask)
    low, iou = low.float(), iou.float()  # losses in fp32 also under bf16 autocast (no-ops in fp32)
    with torch.set_grad_enabled(grad_up and torch.is_grad_enabled()):
        up = F.interpolate(low, size=targets.shape[-2:], mode="bilinear", align_corners=False)
    return low, up, iou


def train_step(model, rng, args) -> dict:
    """Render, prompt, decode for ``args.iters`` rounds; returns the loss tensor and stats."""
    x, masks, geometry = render(rng, args.image_size, scene_options(args), args.enlarged, args.enlarge_max)
    oy, ox, h, w = pick_window(rng, geometry, args.full_frame)
    idx = choose_objects(rng, masks, geometry, (oy, ox, h, w), args.objects) if len(masks) else []
    if len(idx) == 0:
        return {"skipped": True}
    targets = frame_masks(masks[idx], geometry)[:, oy : oy + h, ox : ox + w]
    keep = targets.flatten(1).sum(1) > 0  # the area estimate can include a sliver the resize drops
    if not keep.any():
        return {"skipped": True}
    idx, targets = idx[keep.numpy()], targets[keep]
    tgt_np = targets.numpy() > 0.5
    targets = targets.to(args.device)
    low_res = args.loss_res == "low"
    if low_res:  # the fraction of each logit pixel (4 x 4 px of the model frame) the object covers
        soft = F.avg_pool2d(targets[:, None], 4)[:, 0]
    feats = encode(model.image_encoder, x[..., oy : oy + h, ox : ox + w].to(args.device))
    pe = model.prompt_encoder.get_dense_pe()[..., oy // PATCH : (oy + h) // PATCH, ox // PATCH : (ox + w) // PATCH]
    use_box = rng.random() < 0.5
    # prompts in full-frame model coordinates (x, y)
    boxes = None
    pts, labs = [], []
    if use_box:
        boxes = []
        for t in tgt_np:
            r0, c0, r1, c1 = jittered_box(t, rng)
            boxes.append([c0 + ox, r0 + oy, c1 + ox, r1 + oy])
        pts, labs = None, None
    else:
        for t in tgt_np:
            r, c = random_point(t, rng)
            pts.append([[c + ox, r + oy]])
            labs.append([1])
    total, stats, mask_in = 0.0, [], None
    for it in range(args.iters):
        multimask = it == 0 and not use_box
        low, up, iou = decode(model, feats, pe, targets, pts, labs, boxes, mask_in, multimask, grad_up=not low_res)
        scored, truth, actual = (low, soft, mask_iou(up, targets[:, None])) if low_res else (up, targets, None)
        loss, st = sam_loss(scored, iou, truth, focal_weight=args.focal_weight, bce_weight=args.bce_weight,
                            actual_iou=actual)
        total = total + loss
        chosen = iou.detach().argmax(1)
        stats.append(float(st["iou"].gather(1, chosen[:, None]).mean()))
        if it == args.iters - 1:
            break
        rows = torch.arange(len(idx), device=chosen.device)
        mask_in = low.detach()[rows, chosen][:, None]
        pred = (up.detach()[rows, chosen] > 0).cpu().numpy()
        new_pts, new_lab = [], []
        for p, t in zip(pred, tgt_np):
            click = sampled_correction(p, t, rng)
            if click is None:
                new_pts.append([0.0, 0.0])
                new_lab.append(-1)
            else:
                new_pts.append([click[1] + ox, click[0] + oy])
                new_lab.append(click[2])
        if pts is None:
            pts, labs = [[p] for p in new_pts], [[lab] for lab in new_lab]
        else:
            pts = [a + [p] for a, p in zip(pts, new_pts)]
            labs = [a + [lab] for a, lab in zip(labs, new_lab)]
    return {"loss": total / args.iters, "iou_rounds": stats, "objects": len(idx), "box": use_box}


def freeze_batchnorm(model: torch.nn.Module, args: argparse.Namespace) -> None:
    """Measure BatchNorm's statistics on ``CALIBRATION_IMAGES`` rendered images with the
    current weights, then freeze them, so training computes exactly what inference computes.

    Until then BatchNorm uses each step's statistics. A step sees one image, so
    these are one image's statistics, and the running averages used at
    inference differ from them (measured on a partly trained model: the
    embedding changed by several times its mean magnitude between the modes).
    Training the last part of the schedule with frozen statistics lets the
    weights adapt to what inference does. (Freezing from the start at the
    default mean 0 / variance 1 shrinks the initial TinyViT's activations to
    about 1 % by the second stage, and the decoder collapses to constant masks;
    measured statistics from the start learn more slowly than batch statistics.)
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the calibration images
        norm.train()
    with torch.no_grad():
        for i in range(CALIBRATION_IMAGES):
            rng = np.random.default_rng([args.seed, 1_000_000 + i])
            x, _, geometry = render(rng, args.image_size, scene_options(args), args.enlarged, args.enlarge_max)
            oy, ox, h, w = pick_window(rng, geometry, args.full_frame)
            encode(model.image_encoder, x[..., oy : oy + h, ox : ox + w].to(args.device))
    for norm in norms:
        norm.momentum = 0.1
        norm.eval()


def initial_weights(path: Path) -> dict:
    """The model weights of a checkpoint in our format (float32), without its refiner or scorer."""
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    parts = (REFINER_PREFIX, SCORER_PREFIX)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items() if not k.startswith(parts)}


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 5 % of ``base`` at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))


def save_checkpoint(model, path: Path, args, step: int, extra: dict | None = None) -> None:
    """Write our checkpoint format atomically: {"model": state_dict, "config": {...}}."""
    config = {"arch": "vit_t", "image_size": int(args.image_size), "preprocess": "sam", "name": args.name,
              "stop_iou": STOP_IOU,
              "training": {"seed": int(args.seed), "steps": int(step), "full_frame": bool(args.full_frame),
                           "objects": int(args.objects), "iters": int(args.iters), "lr": float(args.lr),
                           "focal_weight": float(args.focal_weight), "bce_weight": float(args.bce_weight),
                           "loss_res": args.loss_res, "bn_freeze_at": float(args.bn_freeze_at),
                           "nucleus_diameter": [float(v) for v in args.nucleus_diameter],
                           "brightness_sigma": [float(v) for v in args.brightness_sigma],
                           "bright_fraction": float(args.bright_fraction), "packed": float(args.packed),
                           "init": str(args.init) if args.init else None,
                           "enlarged": float(args.enlarged), "enlarge_max": float(args.enlarge_max),
                           "precision": args.precision, "torch": str(torch.__version__), **(extra or {})}}
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    save_atomically({"model": state, "config": config}, path)


def export_half(src: Path, dest: Path) -> str:
    """Write the shipped copy of a training checkpoint: floating-point tensors in float16
    (halves the file; ``load_model`` computes in float32 again), the config kept, written
    atomically. A checkpoint written before configs held ``stop_iou`` gets :data:`STOP_IOU`.
    Returns the new file's sha256."""
    from napari_segany.weights.hashing import file_hash

    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in ckpt["model"].items()}
    save_atomically({"model": state, "config": {"stop_iou": STOP_IOU, **ckpt["config"]}}, dest)
    return file_hash(dest, "sha256")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="checkpoint to write (our format, .pt)")
    p.add_argument("--minutes", type=float, default=None,
                   help="wall-clock budget (default 85 without --steps, none with it)")
    p.add_argument("--steps", type=int, default=None, help="fixed step count (reproducible); else from --minutes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=512)
    p.add_argument("--full-frame", action="store_true",
                   help="encode the whole model frame every step (default: one aligned window)")
    p.add_argument("--objects", type=int, default=16, help="objects prompted per step")
    p.add_argument("--iters", type=int, default=3, help="prompt rounds per object (1 + corrections)")
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--focal-weight", type=float, default=1.0,
                   help="focal : dice weight of the mask loss (SAM uses 20 : 1)")
    p.add_argument("--bce-weight", type=float, default=0.0,
                   help="binary cross-entropy : dice weight of the mask loss (default 0: none)")
    p.add_argument("--loss-res", choices=("full", "low"), default="full",
                   help="where the mask loss is taken: 'full', on logits upsampled to the model frame's "
                   "pixels (default), or 'low', on the decoder's 4x coarser logits against the fraction "
                   "of each logit pixel the object covers (measured: a step about 15-20 %% cheaper; the IoU "
                   "head's target is still measured at full resolution)")
    p.add_argument("--bn-freeze-at", type=float, default=0.85,
                   help="fraction of the steps after which BatchNorm statistics are measured and "
                   "frozen (default 0.85; 1 = never)")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--nucleus-diameter", type=float, nargs=2, default=list(NUCLEUS_DIAMETER), metavar=("MIN", "MAX"),
                   help="diameter range of generated nuclei, px of a 256 px image (default %(default)s)")
    p.add_argument("--brightness-sigma", type=float, nargs=2, default=list(BRIGHTNESS_SIGMA), metavar=("MIN", "MAX"),
                   help="range of the per-scene spread (log s.d.) of nucleus brightness (default %(default)s)")
    p.add_argument("--bright-fraction", type=float, default=0.0,
                   help="largest fraction of condensed, much brighter nuclei per scene (default 0: none)")
    p.add_argument("--packed", type=float, default=0.0,
                   help="fraction of the nuclei placed closer than touching that are packed against their "
                   "neighbours (shared boundary) instead of overlapping them (default 0: none)")
    p.add_argument("--enlarged", type=float, default=0.0,
                   help="fraction of scenes drawn small and enlarged into the frame, as zoomed crops are (default 0)")
    p.add_argument("--enlarge-max", type=float, default=4.0,
                   help="largest enlargement of those scenes (from 1.5, log-uniform; default %(default)s)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="arithmetic of the forward pass: bf16 runs it under torch.autocast (weights, optimiser "
                   "and BatchNorm statistics stay fp32); only about 5 %% faster over a 1500-step trial on an "
                   "AVX-512-bf16 CPU without AMX, and not better (training/HISTORY.md)")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--init", type=Path, default=None, metavar="CHECKPOINT",
                   help="start from this checkpoint's model weights (a trial that fine-tunes; the shipped "
                   "recipe starts from random weights); its refiner and scorer are set aside")
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="also keep a moving average of the weights with this decay (e.g. 0.999) and write it, "
                   "with BatchNorm statistics measured for it, to OUT with the suffix .ema.pt; the trained "
                   "weights are unchanged (default 0: none)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--device", default="cpu",
                   help="torch device (default cpu, the reference recipe; 'cuda' for quick recipe trials)")
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--save-every-min", type=float, default=10.0)
    p.add_argument("--name", default="segany_vit_t_512")
    p.add_argument("--refiner", action="store_true",
                   help="then train the boundary refiner on the exported file and add it there "
                        "(training.refiner; needs --export)")
    p.add_argument("--refiner-scenes", type=int, default=600, help="scenes for the refiner's examples")
    p.add_argument("--refiner-steps", type=int, default=2400, help="refiner training steps")
    p.add_argument("--scorer", action="store_true",
                   help="after the refiner, train the candidate scorer on the exported file's served answers and "
                        "add it there (training.scorer; needs --refiner)")
    p.add_argument("--export", type=Path, default=None,
                   help="also write the float16 copy that ships in the package to this path")
    args = p.parse_args(argv)
    if args.refiner and args.export is None:
        p.error("--refiner trains on the exported file: give --export PATH too")
    if args.scorer and not args.refiner:
        p.error("--scorer judges the refined masks the model serves: give --refiner (and --export) too")
    if args.minutes is None and args.steps is None:
        args.minutes = 85.0
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = build_sam("vit_t", args.image_size).to(args.device)
    if args.init:
        model.load_state_dict(initial_weights(args.init), strict=True)
    model.train()
    params = [p for n, p in model.named_parameters() if not n.startswith("image_encoder.head")]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    log_path = args.out.with_suffix(".log.jsonl")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("w")
    total = args.steps or 10**9
    average = WeightAverage(model, args.ema) if args.ema else None
    t0 = last_save = time.perf_counter()
    step = 0
    frozen_at = None
    window: list[dict] = []
    while step < total:
        elapsed = time.perf_counter() - t0
        if args.minutes is not None and elapsed > args.minutes * 60:
            print(f"time budget reached at step {step}", flush=True)
            break
        if args.steps is None and step == 30:  # fix the schedule from the measured speed
            total = max(step + 1, int(args.minutes * 60 / (elapsed / step) * 0.97))
            print(f"measured {step / elapsed:.3f} steps/s; schedule fixed at {total} steps "
                  f"(rerun with --steps {total} to reproduce)", flush=True)
        scheduled = bool(args.steps) or step >= 30  # is `total` known yet?
        for group in opt.param_groups:
            group["lr"] = lr_at(step, total if scheduled else 10**9, args.lr, args.warmup)
        if frozen_at is None and scheduled and step >= args.bn_freeze_at * total:
            freeze_batchnorm(model, args)
            frozen_at = step
            print(f"BatchNorm statistics measured and frozen at step {step}", flush=True)
        rng = np.random.default_rng([args.seed, step])
        with torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            out = train_step(model, rng, args)
        step += 1
        if out.get("skipped"):
            continue
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if average is not None:
            average.update()
        window.append({"loss": float(out["loss"].detach()), "iou": out["iou_rounds"]})
        if step % args.log_every == 0 or step == total:
            rec = {"step": step, "s": round(time.perf_counter() - t0, 1), "lr": opt.param_groups[0]["lr"],
                   "loss": float(np.mean([w["loss"] for w in window])),
                   "iou_first": float(np.mean([w["iou"][0] for w in window])),
                   "iou_last": float(np.mean([w["iou"][-1] for w in window]))}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(json.dumps(rec), flush=True)
            window = []
        if time.perf_counter() - last_save > args.save_every_min * 60:
            save_checkpoint(model, args.out, args, step, {"partial": True})
            last_save = time.perf_counter()
    if frozen_at is None:  # the budget ran out first: inference still needs measured statistics
        freeze_batchnorm(model, args)
        frozen_at = step
    model.eval()
    save_checkpoint(model, args.out, args, step, {"seconds": round(time.perf_counter() - t0, 1),
                                                  "bn_frozen_at_step": frozen_at})
    print(f"saved {args.out} after {step} steps in {time.perf_counter() - t0:.0f} s", flush=True)
    if average is not None:  # the averaged weights get their own BatchNorm statistics
        averaged = average.averaged_model(model)
        freeze_batchnorm(averaged, args)
        averaged.eval()
        ema_path = args.out.with_suffix(".ema.pt")
        save_checkpoint(averaged, ema_path, args, step, {"ema": args.ema, "bn_frozen_at_step": step})
        print(f"saved the weights' average ({args.ema}) with its BatchNorm statistics to {ema_path}", flush=True)
    if args.export:
        print(f"exported {args.export} (float16), sha256 {export_half(args.out, args.export)}", flush=True)
    if args.refiner:  # second stage: the boundary refiner, trained on the exported model's answers
        from .refiner import main as train_refiner

        threads = ["--threads", str(args.threads)] if args.threads else []
        stages = ["--model", str(args.export), "--export", str(args.export), "--seed", str(args.seed)]
        status = train_refiner(stages + ["--scenes", str(args.refiner_scenes), "--steps", str(args.refiner_steps)]
                               + threads)
        if status or not args.scorer:
            return status
        from .scorer import main as train_scorer  # third stage: the candidate scorer, on the refined answers

        return train_scorer(stages + threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
