"""What ``napari-segany finetune`` trains on: (image, labels) pairs named on the command line.

- ``--pair IMAGE LABELS``: the two files, as they are.
- ``IMAGE``: its labels are ``<name>_labels.tif`` (or ``.tiff``) beside it, or in ``--labels-dir``;
  missing labels are an error.
- ``FOLDER`` or a quoted pattern: each image file with such labels; images without are left out
  (and said so), and the files ``napari-segany auto`` writes (``*_labels.tif``, ``*_overlay.png``)
  are never taken as images. So ``auto`` -> correct the labels -> ``finetune`` is a loop.
"""

from __future__ import annotations

from pathlib import Path

from ..batch.inputs import expand_inputs, stem
from ..batch.outputs import LABELS_SUFFIX, OVERLAY_SUFFIX

LABEL_ENDINGS = (f"{LABELS_SUFFIX}.tif", f"{LABELS_SUFFIX}.tiff")
#: Files ``napari-segany auto`` writes beside an image's labels: never images to train on.
WRITTEN_BY_AUTO = (LABELS_SUFFIX, OVERLAY_SUFFIX)


def labels_for(image: Path, labels_dir: Path | None) -> Path | None:
    """The labels file of ``image`` (``<name>_labels.tif`` in ``labels_dir``, else beside it), or None."""
    folder = labels_dir if labels_dir is not None else image.parent
    for ending in LABEL_ENDINGS:
        candidate = folder / f"{stem(image)}{ending}"
        if candidate.is_file():
            return candidate
    return None


def find_pairs(inputs: list[str], pairs: list[list[str]], labels_dir: str | None,
               note=None) -> list[tuple[Path, Path]]:
    """(image, labels) paths from ``inputs`` (files, folders, patterns) and ``pairs`` (``--pair``);
    FileNotFoundError or ValueError with a sentence when a named file or its labels are missing, or
    nothing was found. ``note(text)`` hears which images were left out for want of labels."""
    folder = None if labels_dir is None else Path(labels_dir).expanduser()
    if folder is not None and not folder.is_dir():
        raise FileNotFoundError(f"--labels-dir {labels_dir!r} is not a folder; check the path")
    found: list[tuple[Path, Path]] = []
    for image, labels in pairs:
        for what, path in (("image", image), ("labels", labels)):
            if not Path(path).expanduser().is_file():
                raise FileNotFoundError(f"--pair {image} {labels}: no {what} file at {path!r}; check the path")
        found.append((Path(image).expanduser(), Path(labels).expanduser()))
    left_out = []
    for src in expand_inputs(inputs) if inputs else []:
        if not src.named and stem(src.path).endswith(WRITTEN_BY_AUTO):
            continue  # a result of `napari-segany auto` beside the images
        if src.path.is_dir():  # a zarr array
            if src.named:
                raise ValueError(f"{str(src.path)!r} is a zarr array; fine-tuning reads image files (TIFF, PNG...): "
                                 "save the image and its labels as TIFF files")
            left_out.append(src.path.name)
            continue
        labels = labels_for(src.path, folder)
        if labels is not None:
            found.append((src.path, labels))
        elif src.named:
            where = folder if folder is not None else src.path.parent
            raise FileNotFoundError(f"no labels for {str(src.path)!r}: expected {stem(src.path)}_labels.tif in "
                                    f"{str(where)!r}; name them with --pair IMAGE LABELS, or point --labels-dir "
                                    "at their folder")
        else:
            left_out.append(src.path.name)
    if left_out and note is not None:
        note(f"left out {len(left_out)} image{'s' * (len(left_out) != 1)} without <name>_labels.tif: "
             + ", ".join(left_out[:8]) + (", ..." if len(left_out) > 8 else ""))
    if not found:
        raise ValueError("found no image with its labels: give --pair IMAGE LABELS, or images (or folders) whose "
                         "labels are <name>_labels.tif beside them or in --labels-dir")
    seen, unique = set(), []
    for image, labels in found:
        key = (image.resolve(), labels.resolve())
        if key not in seen:
            seen.add(key)
            unique.append((image, labels))
    return unique
