"""Known checkpoints: where they come from, how they are verified, where they are cached.

Every entry carries a hash that pooch checks before a download is given its
final name: pooch streams into a temporary file in the cache folder, compares
the hash and only then moves the file into place (``pooch.core.stream_download``),
so an interrupted, truncated or corrupt download never sits under the name
that :func:`fetch` returns.

The cache folder is ``$SEGANY_CACHE`` when set, else the per-user cache folder
of the operating system (``pooch.os_cache("napari-segany")``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import pooch

from .checkpoint import (
    detect_architecture, file_hash, read_checkpoint, require_hash_support,
)

__all__ = [
    "DEFAULT_MODEL", "REGISTRY", "ChecksumError", "DownloadError", "ModelSpec", "cache_dir", "cached_path",
    "fetch", "get_spec", "import_model", "imported_by_hand",
    "is_cached", "model_names",
]

_MB = 1_000_000


@dataclass(frozen=True)
class ModelSpec:
    """One downloadable checkpoint.

    Attributes
    ----------
    name : str
        Registry name passed to ``load_model`` (e.g. ``"vit_b_lm"``).
    arch : str
        Architecture of the weights: ``vit_b``, ``vit_l``, ``vit_h`` or ``vit_t``.
    url : str
        Where the file is downloaded from.
    filename : str
        Name of the file in the cache folder (unique across the registry).
    known_hash : str
        ``"sha256:..."``, ``"md5:..."`` or ``"xxh128:..."`` as pooch reads it.
    size_bytes : int or None
        File size where the publisher's figure was found, else None.
    preprocess : str
        ``"sam"`` or ``"medsam"`` (see :class:`napari_segany.model.ModelInfo`).
    description : str
        One line for menus.
    source : str
        Provenance and licence note.
    mirrors : tuple of str
        Further URLs of the identical file, tried in order when ``url`` fails.
    bundled : bool
        The file ships inside the package (``napari_segany/_models/``): it is
        never downloaded, only verified against ``known_hash``.
    """

    name: str
    arch: str
    url: str
    filename: str
    known_hash: str
    size_bytes: int | None = None
    preprocess: str = "sam"
    description: str = ""
    source: str = ""
    mirrors: tuple[str, ...] = ()
    bundled: bool = False

    @property
    def size_text(self) -> str:
        """Human-readable size, e.g. ``"375 MB"`` (``"size unknown"`` if not known)."""
        return f"{round(self.size_bytes / _MB)} MB" if self.size_bytes else "size unknown"


#: The model ``load_model()``, the command line and the plugin use when none is named.
DEFAULT_MODEL = "segany_vit_t_512"
_BUNDLED_DIR = Path(__file__).parent / "_models"


_FB = "https://dl.fbaipublicfiles.com/segment_anything/"
_BIOIMAGE = "https://uk1s3.embassy.ebi.ac.uk/public-datasets/bioimage.io/"
_SAM_SRC = "Segment Anything (Kirillov et al. 2023, Meta AI); Apache-2.0."
_MICROSAM_SRC = (
    "micro-sam (Archit et al., Segment Anything for Microscopy), bioimage.io model {}; "
    "URL and hash as listed in micro-sam's model registry; licence per the bioimage.io "
    "model card (not verified here)."
)

REGISTRY: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec(DEFAULT_MODEL, "vit_t", "", "segany_vit_t_512.pt",
                  "sha256:821d561cf1d5d51ea8e7a9d061aa85325a91f8e7ca84efb79b9b2f507c4d54b5",
                  20_429_101, description="napari-segany's own small model (TinyViT, 512 px), "
                  "included: no download; trained on synthetic images, see MODEL_CARD.md",
                  source="Trained from scratch by napari-segany (training/); BSD-3-Clause.",
                  bundled=True),
        ModelSpec("vit_b", "vit_b", _FB + "sam_vit_b_01ec64.pth", "sam_vit_b_01ec64.pth",
                  "sha256:ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
                  375_042_383, description="SAM ViT-B, natural images (general purpose)",
                  source=_SAM_SRC),
        ModelSpec("vit_l", "vit_l", _FB + "sam_vit_l_0b3195.pth", "sam_vit_l_0b3195.pth",
                  "sha256:3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
                  1_249_524_607, description="SAM ViT-L, natural images", source=_SAM_SRC),
        ModelSpec("vit_h", "vit_h", _FB + "sam_vit_h_4b8939.pth", "sam_vit_h_4b8939.pth",
                  "sha256:a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
                  2_564_550_879, description="SAM ViT-H, natural images (largest)",
                  source=_SAM_SRC),
        # The owncloud mirror is the copy micro-sam downloads; micro-sam's registry lists
        # the same sha256 for it as other projects list for the GitHub file.
        ModelSpec("vit_t", "vit_t",
                  "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
                  "mobile_sam.pt",
                  "sha256:6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
                  40_728_226, description="MobileSAM (TinyViT encoder), fast on CPU",
                  source="MobileSAM (Zhang et al. 2023); Apache-2.0.",
                  mirrors=("https://owncloud.gwdg.de/index.php/s/TuDzuwVDHd1ZDnQ/download",)),
        # Size not published where we looked; md5 is the checksum Zenodo publishes.
        ModelSpec("medsam_vit_b", "vit_b",
                  "https://zenodo.org/records/10689643/files/medsam_vit_b.pth?download=1",
                  "medsam_vit_b.pth", "md5:3bb6db55bd0c9ca30b61248bca72f8d6", None,
                  preprocess="medsam",
                  description="MedSAM ViT-B, medical images (CT, MRI, ...), box prompts",
                  source="MedSAM (Ma et al., Nat. Commun. 2024), Zenodo 10.5281/zenodo.10689643; "
                  "licence: see the Zenodo record (reported as CC-BY-4.0, not verified here)."),
        # micro-sam models: sizes not published in the sources found; hashes are xxh128.
        ModelSpec("vit_b_lm", "vit_b", _BIOIMAGE + "diplomatic-bug/1.2/files/vit_b.pt",
                  "microsam_vit_b_lm.pt", "xxh128:fe9252a29f3f4ea53c15a06de471e186",
                  description="micro-sam ViT-B, light microscopy (cells, nuclei)",
                  source=_MICROSAM_SRC.format("diplomatic-bug 1.2")),
        ModelSpec("vit_l_lm", "vit_l", _BIOIMAGE + "idealistic-rat/1.2/files/vit_l.pt",
                  "microsam_vit_l_lm.pt", "xxh128:017f20677997d628426dec80a8018f9d",
                  description="micro-sam ViT-L, light microscopy (cells, nuclei)",
                  source=_MICROSAM_SRC.format("idealistic-rat 1.2")),
        ModelSpec("vit_t_lm", "vit_t", _BIOIMAGE + "faithful-chicken/1.1/files/vit_t.pt",
                  "microsam_vit_t_lm.pt", "xxh128:72ec5074774761a6e5c05a08942f981e",
                  description="micro-sam MobileSAM, light microscopy, fast on CPU",
                  source=_MICROSAM_SRC.format("faithful-chicken 1.1")),
        ModelSpec("vit_b_em_organelles", "vit_b", _BIOIMAGE + "noisy-ox/1.2/files/vit_b.pt",
                  "microsam_vit_b_em_organelles.pt", "xxh128:f3bf2ed83d691456bae2c3f9a05fb438",
                  description="micro-sam ViT-B, electron microscopy organelles",
                  source=_MICROSAM_SRC.format("noisy-ox 1.2")),
        ModelSpec("vit_l_em_organelles", "vit_l", _BIOIMAGE + "humorous-crab/1.2/files/vit_l.pt",
                  "microsam_vit_l_em_organelles.pt", "xxh128:810b084b6e51acdbf760a993d8619f2d",
                  description="micro-sam ViT-L, electron microscopy organelles",
                  source=_MICROSAM_SRC.format("humorous-crab 1.2")),
        ModelSpec("vit_t_em_organelles", "vit_t", _BIOIMAGE + "greedy-whale/1/files/vit_t.pt",
                  "microsam_vit_t_em_organelles.pt", "xxh128:253474720c497cce605e57c9b1d18fd9",
                  description="micro-sam MobileSAM, electron microscopy organelles",
                  source=_MICROSAM_SRC.format("greedy-whale 1")),
        ModelSpec("vit_b_medical_imaging", "vit_b",
                  "https://owncloud.gwdg.de/index.php/s/f5Ol4FrjPQWfjUF/download",
                  "medicosam_vit_b_medical_imaging.pt", "xxh128:40169f1e3c03a4b67bff58249c176d92",
                  description="MedicoSAM ViT-B, medical images (SAM preprocessing)",
                  source="MedicoSAM (medico-sam / micro-sam registries); licence not "
                  "verified here."),
    )
}


class DownloadError(ConnectionError):
    """A download failed before a complete file arrived (network, server, timeout)."""


class ChecksumError(ValueError):
    """A file's hash does not match the registry: it is corrupt, truncated or different."""


def model_names() -> list[str]:
    """Registry names, in registry order."""
    return list(REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` called ``name``; ValueError naming the choices if unknown."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown model name {name!r}. Registry names: {', '.join(REGISTRY)}; "
            "or pass the path of a checkpoint file."
        ) from None


def cache_dir() -> Path:
    """Folder for downloaded weights: ``$SEGANY_CACHE`` if set, else the user cache."""
    env = os.environ.get("SEGANY_CACHE")
    return Path(env).expanduser() if env else Path(pooch.os_cache("napari-segany"))


def cached_path(name: str) -> Path:
    """Where the file of registry entry ``name`` lives once downloaded or imported
    (for a bundled model: its place inside the installed package)."""
    spec = get_spec(name)
    return (_BUNDLED_DIR if spec.bundled else cache_dir()) / spec.filename


def is_cached(name: str) -> bool:
    """Whether the file of ``name`` is on this machine (its hash is checked by :func:`fetch`)."""
    return cached_path(name).is_file()


def imported_by_hand(name: str) -> bool:
    """Whether the cached file of ``name`` came from ``import_model(..., verify=False)``."""
    return _marker(cached_path(name)).is_file()


def _matches(path: Path, known_hash: str) -> bool:
    alg = require_hash_support(known_hash)
    return file_hash(path, alg).lower() == known_hash.split(":")[-1].lower()


def _marker(dest: Path) -> Path:
    return dest.with_name(dest.name + ".imported.json")


def _accepted_import(dest: Path) -> bool:
    """Whether ``dest`` is a file the user imported with ``verify=False``, unchanged since."""
    try:
        record = json.loads(_marker(dest).read_text())
    except (OSError, ValueError):
        return False
    return record.get("sha256") == file_hash(dest, "sha256")


def fetch(name: str, progress=True) -> Path:
    """Return the local path of registry entry ``name``, downloading it if needed.

    A cached file is used when its hash matches the registry (or when it was
    placed there by ``import_model(..., verify=False)`` and is unchanged).
    Otherwise the file is downloaded from the entry's URL, then its mirrors;
    a download only takes the final name after its hash matched.

    Parameters
    ----------
    name : str
        A registry name (see :func:`model_names`).
    progress : bool or tqdm-like, default True
        Show a progress bar (or drive the given one: it needs ``total``,
        ``update``, ``reset`` and ``close``).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ChecksumError
        (a ValueError) if a download arrived with the wrong hash.
    DownloadError
        (a ConnectionError) if no download completed.
    """
    spec = get_spec(name)
    require_hash_support(spec.known_hash)
    if spec.bundled:
        return _verified_bundled(spec)
    dest = cache_dir() / spec.filename
    if dest.is_file():
        if _matches(dest, spec.known_hash):
            return dest
        if _accepted_import(dest):
            warnings.warn(
                f"Using {dest}, imported by hand with verify=False; it is not the file the "
                f"registry lists for {name!r}.", stacklevel=2,
            )
            return dest
    failures: list[tuple[str, Exception]] = []
    for url in (spec.url, *spec.mirrors):
        try:
            out = pooch.retrieve(url, known_hash=spec.known_hash, fname=spec.filename,
                                 path=cache_dir(), progressbar=progress)
        except Exception as err:  # requests errors, pooch's ValueError on a bad hash
            failures.append((url, err))
            continue
        _marker(dest).unlink(missing_ok=True)
        return Path(out)
    raise _download_failure(spec, dest, failures)


def _verified_bundled(spec: ModelSpec) -> Path:
    """The package's own copy of a bundled model, after checking its hash."""
    path = _BUNDLED_DIR / spec.filename
    if not path.is_file():
        raise ChecksumError(
            f"The model file {spec.name!r} that ships with napari-segany is missing ({path}). "
            "Reinstall napari-segany (pip install --force-reinstall napari-segany), or name "
            "another model."
        )
    if not _matches(path, spec.known_hash):
        raise ChecksumError(
            f"The model file {spec.name!r} that ships with napari-segany ({path}) does not match "
            f"its checksum {spec.known_hash}: it was damaged or modified, and is not used. "
            "Reinstall napari-segany, or name another model."
        )
    return path


def _download_failure(spec: ModelSpec, dest: Path, failures: list) -> Exception:
    from requests import RequestException  # pooch's own dependency

    bad_hash = [u for u, e in failures
                if isinstance(e, ValueError) and not isinstance(e, RequestException)]
    tried = "; ".join(f"{u}: {type(e).__name__}: {e}" for u, e in failures)
    kept = " The previously cached file was left as it was." if dest.is_file() else ""
    by_hand = (
        f"download the file in a browser and run napari_segany.registry.import_model(path, "
        f"{spec.name!r})"
    )
    if bad_hash:
        return ChecksumError(
            f"The download of {spec.name!r} did not match its known checksum "
            f"({spec.known_hash}); it was deleted and nothing was saved under {dest}.{kept} "
            "The transfer may have been cut short or the server sent a different file: try "
            f"again later, or {by_hand}. Attempts: {tried}"
        )
    return DownloadError(
        f"Could not download {spec.name!r} ({spec.size_text}); nothing was saved under "
        f"{dest}.{kept} Check your internet connection or proxy and try again, or "
        f"{by_hand}. Attempts: {tried}"
    )


def _copy_into_cache(src: Path, dest: Path, before_replace=None) -> str:
    """Copy ``src`` to ``dest`` through a temporary file + os.replace; return its sha256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            while chunk := inp.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if before_replace is not None:
            before_replace(digest.hexdigest())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def import_model(path: str | os.PathLike, name: str, *, verify: bool = True) -> Path:
    """Place a local checkpoint file in the cache under registry name ``name``.

    Use this where downloads are blocked: fetch the file by other means, then
    import it once; ``load_model(name)`` finds it afterwards.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file.
    name : str
        The registry entry it stands for.
    verify : bool, default True
        Require the file's hash to equal the registry's. With False, the file
        only has to load safely and hold weights of the entry's architecture;
        it is then kept (not re-downloaded) as long as it is unchanged.

    Returns
    -------
    pathlib.Path
        The file's path in the cache.
    """
    spec = get_spec(name)
    if spec.bundled:
        raise ValueError(f"{name!r} ships inside napari-segany and needs no import; load a "
                         "fine-tuned copy by its path with load_model(path).")
    src = Path(path).expanduser()
    if not src.is_file():
        raise FileNotFoundError(f"No file at {str(src)!r} to import; check the path.")
    dest = cache_dir() / spec.filename
    if verify:
        alg = require_hash_support(spec.known_hash)
        got = file_hash(src, alg)
        if got.lower() != spec.known_hash.split(":")[-1].lower():
            raise ChecksumError(
                f"{str(src)!r} is not the file the registry lists for {name!r}: its {alg} is "
                f"{got}, expected {spec.known_hash}. If it is a different version or a "
                "fine-tuned model, load it by path with load_model(path), or import it "
                "with verify=False."
            )
    else:
        arch, _ = detect_architecture(read_checkpoint(src))
        if arch != spec.arch:
            raise ValueError(
                f"{str(src)!r} holds {arch} weights but {name!r} is a {spec.arch} model; "
                "pick the matching registry name or load the file by path."
            )
    if dest.exists() and os.path.samefile(src, dest):
        return dest

    def record(sha256: str) -> None:
        marker = _marker(dest)
        if verify:
            marker.unlink(missing_ok=True)
            return
        tmp = marker.with_name(marker.name + ".part")
        tmp.write_text(json.dumps({"name": name, "sha256": sha256, "source": str(src)}))
        os.replace(tmp, marker)

    _copy_into_cache(src, dest, before_replace=record)
    return dest

