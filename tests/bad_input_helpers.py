"""Shared parts of the bad-input corpus (tests/test_bad_inputs_api.py and _cli.py): small real
input files, a snapshot of a folder's files, and the check that an error message is a sentence
that names what was wrong."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

# text that belongs to a library's internals or a traceback, never to a sentence for a user
RAW_TEXT = (
    "Traceback", 'File "', "site-packages", "numpy.core", "numpy._core", "torch._", "aten::", "c10::",
    "[Errno", "could not convert string", "invalid literal for", "NoneType", "not supported between instances",
    "unsupported operand", "index out of bounds", "object has no attribute", "expected str, bytes or os.PathLike",
    "weights_only=False will", "Unpickler", "expected one argument",
)


def case(case_id: str, *values, xfail: str | None = None):
    """One parametrised bad input; ``xfail`` gives the reason when it is known to fail (strict)."""
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
    return pytest.param(*values, id=case_id, marks=marks)


def assert_sentence(message: str, *names: str) -> None:
    """``message`` names every one of ``names`` and reads as a sentence, not a library's text."""
    text = str(message)
    for name in names:
        assert name in text, f"the message does not name {name!r}: {text!r}"
    for raw in RAW_TEXT:
        assert raw not in text, f"the message shows {raw!r}: {text!r}"
    assert len(text.split()) >= 5, f"the message is not a sentence: {text!r}"


def _file_state(p: Path) -> tuple:
    st = p.stat()
    digest = hashlib.sha1(p.read_bytes()).hexdigest() if st.st_size <= 4 * 2**20 else None  # big: size + mtime
    return ("file", st.st_size, st.st_mtime_ns, digest)


def snapshot(*places: Path) -> dict:
    """Every file and folder under ``places`` (folders or files): kind, size, mtime and, for files
    up to 4 MiB, a digest of the bytes."""
    seen = {}
    for folder in places:
        folder = Path(folder)
        if folder.is_file():
            seen[str(folder)] = _file_state(folder)
        if not folder.is_dir():
            continue
        for root, dirs, files in os.walk(folder, followlinks=False):
            for d in dirs:
                p = Path(root, d)
                seen[str(p)] = ("link", os.readlink(p)) if p.is_symlink() else ("dir",)
            for f in files:
                p = Path(root, f)
                if p.is_symlink():
                    seen[str(p)] = ("link", os.readlink(p))
                    continue
                seen[str(p)] = _file_state(p)
    return seen


def assert_unchanged(before: dict, after: dict) -> None:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert not (added or removed or changed), f"files changed: added {added}, removed {removed}, changed {changed}"


# -- small real input files -----------------------------------------------------------------------------
def blob_image(size: int = 64, dtype=np.uint16) -> np.ndarray:
    """A bright disk on a dark ramp: something to segment."""
    yy, xx = np.mgrid[:size, :size]
    img = (xx * 4 + 200 + 3000 * ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 5) ** 2)).astype(dtype)
    return img


def make_inputs(folder: Path, model_path: Path | None = None) -> dict[str, Path]:
    """The files the corpus reads, made with the real writers (tifffile, imageio, torch)."""
    import imageio.v3 as iio
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    img = blob_image()
    paths = {
        "img": folder / "img.tif", "vol": folder / "vol.tif", "rgb": folder / "rgb.png",
        "text_tif": folder / "notes.tif", "text_png": folder / "notes.png", "line": folder / "line.tif",
        "five_d": folder / "five.tif", "nan_img": folder / "nan.tif", "cplx": folder / "complex.tif",
        "existing": folder / "existing.tif", "a_file": folder / "a_file", "garbage_pth": folder / "garbage.pth",
        "empty_pth": folder / "empty.pth", "empty_tif": folder / "empty.tif",
    }
    tifffile.imwrite(paths["img"], img)
    tifffile.imwrite(paths["vol"], np.stack([img] * 4), photometric="minisblack")
    iio.imwrite(paths["rgb"], np.repeat((img // 16).astype(np.uint8)[..., None], 3, axis=-1), extension=".png")
    paths["text_tif"].write_text("this is a note, not an image\n")
    paths["text_png"].write_text("this is a note, not an image\n")
    tifffile.imwrite(paths["line"], np.arange(100, dtype=np.uint16))
    tifffile.imwrite(paths["five_d"], np.zeros((2, 2, 2, 16, 16), np.uint8))
    tifffile.imwrite(paths["nan_img"], np.full((32, 32), np.nan, np.float32))
    tifffile.imwrite(paths["cplx"], np.ones((32, 32), np.complex64))
    paths["existing"].write_bytes(b"precious labels")
    paths["a_file"].write_bytes(b"a file, not a folder")
    paths["garbage_pth"].write_bytes(np.random.default_rng(0).bytes(64))
    paths["empty_pth"].write_bytes(b"")
    paths["empty_tif"].write_bytes(b"")
    (folder / "a_folder.pth").mkdir()
    paths["folder_pth"] = folder / "a_folder.pth"
    (folder / "a_folder.tif").mkdir()
    paths["folder_tif"] = folder / "a_folder.tif"
    labels = (img > 2000).astype(np.uint16)  # the disk as object 1: annotations for finetune
    for key, data in (("img_labels", labels), ("vol_labels", np.stack([labels] * 4)),
                      ("small_labels", labels[:32, :32]), ("float_labels", labels * 0.5),
                      ("empty_labels", np.zeros_like(labels))):
        paths[key] = folder / f"{key}.tif"
        tifffile.imwrite(paths[key], data, photometric="minisblack")
    paths["existing_pt"] = folder / "existing.pt"
    paths["existing_pt"].write_bytes(b"a precious model")
    if model_path is not None:
        data = Path(model_path).read_bytes()
        paths["trunc_pth"] = folder / "truncated.pth"
        paths["trunc_pth"].write_bytes(data[: 256 * 1024])
    return paths
