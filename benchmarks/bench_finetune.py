"""Fine-tuning measured (issue 30): the included model fine-tuned on one half of the real 2D nuclei
(its own held-out split inside that half) and scored on the objects of the other half, which it
never saw, before and after: one click, a box, click + 1 and + 2 corrections (the protocol of
:mod:`napari_segany.finetune.report`, one view). Prints a JSON line per direction with the time and
the peak memory (ru_maxrss) of the process.

``--volume``: the 3D nuclei instead, fine-tuned on 10 consecutive labelled slices in the middle of
the stack (the other slices' labels removed) and scored by propagating every object from its
largest slice through the whole volume, before and after (IoU over the slices neither trained on nor
seeded; :mod:`napari_segany.finetune.propagation`).

    .venv/bin/python benchmarks/bench_finetune.py [--minutes 5] [--directions left right] [--threads 2]
    .venv/bin/python benchmarks/bench_finetune.py --volume [--minutes 5] [--threads 2]
    .venv/bin/python benchmarks/bench_finetune.py --mri mricron-data_*.deb [--minutes 5] [--threads 2]

``--mri DEB``: real labelled MRI. The MRIcron templates of Debian's ``mricron-data`` package (get
it with ``apt-get download mricron-data``; read from the archive, nothing installed): the "ch2"
T1 head (Colin 27, 1 mm; the head of ``sample_data/mri_t1.tif``) with the AAL atlas drawn on that
same brain (Tzourio-Mazoyer et al., NeuroImage 15, 273-289, 2002), reduced to 12 deep grey-matter
structures that show on a T1 image (hippocampus, amygdala, caudate, putamen, pallidum, thalamus,
left and right). Axial slices; the report of ``finetune`` itself, with its held-out blocks of
slices and their propagation.

``--vit-b``: the left-half run with SAM ViT-B of seeded random weights (built by the reference
implementation, saved in the official schema and loaded through ``load_model``), for its time and
peak memory only: its scores mean nothing.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

import napari_segany as sg
from napari_segany.finetune.loop import Prepared
from napari_segany.finetune.propagation import Block, propagation_scores
from napari_segany.finetune.report import evaluate
from napari_segany.sample_data import load_sample


def halves(direction: str):
    image, labels = load_sample("nuclei2d"), load_sample("nuclei2d_labels")
    half = image.shape[1] // 2
    left = (image[:, :half], labels[:, :half])
    right = (image[:, half:], labels[:, half:])
    return (left, right) if direction == "left" else (right, left)


def test_set(model, image, labels) -> list[Prepared]:
    """The other half's objects (whole ones: those cut by the middle line are left out)."""
    predictor = sg.Predictor(model, precision="fp32", views=1)
    emb = predictor.encode(image, views=1)
    edge = np.unique(np.concatenate([labels[:, 0], labels[:, -1]]))
    ids = np.array([i for i in np.unique(labels) if i and i not in edge])
    return [Prepared(emb, torch.from_numpy(emb.features)[None], labels, ids, "test half")], predictor


def random_vit_b():
    import tempfile
    from pathlib import Path

    from napari_segany.cli.benchmark import reference_model

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random_vit_b.pth"
        torch.save(reference_model("vit_b").state_dict(), path)
        return sg.load_model(path, device="cpu")


def run(direction: str, minutes: float, seed: int, vit_b: bool = False) -> dict:
    train_pair, (test_image, test_labels) = halves(direction)
    base = random_vit_b() if vit_b else sg.load_model(device="cpu")
    test, base_predictor = test_set(base, test_image, test_labels)
    before = evaluate(base_predictor, test)
    t = time.monotonic()
    result = sg.finetune(base, [train_pair], max_minutes=minutes, seed=seed)
    seconds = time.monotonic() - t
    after = evaluate(sg.Predictor(result.trained, precision="fp32", views=1), test)
    return {"direction": f"train {direction} half -> test the other half", "model": base.info.name,
            "minutes_budget": minutes,
            "seconds": round(seconds, 1), "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "test_before": before, "test_after": after, "held_out_before": result.report.before,
            "held_out_after": result.report.after, "improved_held_out": result.improved,
            "steps": result.report.steps, "best_step": result.report.best_step, "stopped": result.report.stopped,
            "phases_s": result.report.seconds, "data": result.report.data, "torch_threads": torch.get_num_threads()}


def run_volume(minutes: float, seed: int, n_train: int = 10) -> dict:
    volume, labels = load_sample("nuclei3d"), load_sample("nuclei3d_labels")
    labelled = [z for z in range(len(labels)) if labels[z].any()]
    mid = labelled[len(labelled) // 2]
    train_slices = list(range(mid - n_train // 2, mid - n_train // 2 + n_train))
    partial = np.zeros_like(labels)
    partial[train_slices] = labels[train_slices]
    base = sg.load_model(device="cpu")
    window = sg.EmbeddingStore(sg.Predictor(base), volume, prefetch=0).window
    whole = Block(volume, labels, 0, 0, len(volume) - 1, tuple(float(v) for v in window), {}, tuple(train_slices))

    def scored(model) -> dict:
        t = time.monotonic()
        ious = propagation_scores(sg.Predictor(model, precision="fp32", views=1), [whole])
        return {"mean_iou": round(float(np.mean(ious)), 4), "objects": len(ious),
                "seconds": round(time.monotonic() - t, 1)}

    before = scored(base)
    t = time.monotonic()
    result = sg.finetune(base, [(volume, partial)], max_minutes=minutes, seed=seed)
    seconds = time.monotonic() - t
    after = scored(result.trained)
    return {"experiment": f"3D nuclei: train on slices {train_slices[0]}-{train_slices[-1]}, propagate every "
                          "object through the volume", "minutes_budget": minutes, "seconds": round(seconds, 1),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "propagation_before": before, "propagation_after": after, "held_out_before": result.report.before,
            "held_out_after": result.report.after, "improved_held_out": result.improved,
            "steps": result.report.steps, "best_step": result.report.best_step, "stopped": result.report.stopped,
            "phases_s": result.report.seconds, "data": result.report.data, "torch_threads": torch.get_num_threads()}


#: AAL ids of the deep grey-matter structures kept (hippocampus, amygdala, caudate, putamen,
#: pallidum, thalamus; left and right).
AAL_DEEP = (37, 38, 41, 42, 71, 72, 73, 74, 75, 76, 77, 78)
TEMPLATES = "usr/share/mricron/templates/"


def mri_pair(deb: str):
    """(T1 volume, labels) as (z, y, x) arrays, rows anterior at the top (as the sample's)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tools.make_sample_data import read_member_from_deb, read_nifti1

    out = []
    for name in ("ch2.nii.gz", "aal.nii.gz"):
        xyz, affine = read_nifti1(read_member_from_deb(Path(deb), TEMPLATES + name))
        out.append((np.ascontiguousarray(np.transpose(xyz, (2, 1, 0))[:, ::-1, :]), affine))
    (t1, a1), (aal, a2) = out
    if t1.shape != aal.shape or not np.allclose(a1, a2):
        raise SystemExit("the T1 and the atlas are not on the same grid")
    labels = np.where(np.isin(aal, AAL_DEEP), aal, 0).astype(np.uint16)
    return t1, labels


def run_mri(deb: str, minutes: float, seed: int) -> dict:
    volume, labels = mri_pair(deb)
    t = time.monotonic()
    result = sg.finetune(None, [(volume, labels)], max_minutes=minutes, seed=seed)
    return {"experiment": "MRI: ch2 T1 with 12 AAL deep grey-matter structures, axial slices",
            "minutes_budget": minutes, "seconds": round(time.monotonic() - t, 1),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "held_out_before": result.report.before, "held_out_after": result.report.after,
            "improved_held_out": result.improved, "steps": result.report.steps, "best_step": result.report.best_step,
            "stopped": result.report.stopped, "phases_s": result.report.seconds, "data": result.report.data,
            "instance_head": result.report.head, "torch_threads": torch.get_num_threads()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--directions", nargs="+", default=["left", "right"], choices=["left", "right"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--volume", action="store_true", help="the 3D nuclei experiment instead of the 2D halves")
    p.add_argument("--mri", metavar="DEB", help="the MRI experiment, on Debian's mricron-data package file")
    p.add_argument("--vit-b", action="store_true", help="SAM ViT-B with random weights: time and memory only")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.volume:
        print(json.dumps(run_volume(args.minutes, args.seed)), flush=True)
        return 0
    if args.mri:
        print(json.dumps(run_mri(args.mri, args.minutes, args.seed)), flush=True)
        return 0
    for d in args.directions:
        print(json.dumps(run(d, args.minutes, args.seed, args.vit_b)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
