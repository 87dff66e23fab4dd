"""The models napari-segany knows by name: what each file is, where it comes from, its hash.

:mod:`napari_segany.weights.registry` finds, downloads and verifies these files.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model.sam import DEFAULT_STOP_IOU

_MB = 1_000_000




@dataclass(frozen=True)
class ModelSpec:
    """One known checkpoint: downloadable, or bundled with the package.

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
    stop_iou : float
        Propagation's default stop: the predicted IoU below which a walk
        ends (:attr:`napari_segany.model.ModelInfo.stop_iou`).
    views : int
        Mirrored views the command line and the widget average by default
        (:attr:`napari_segany.model.ModelInfo.views`): 1 for the large
        models, whose encoder passes are expensive.
    min_stability : float
        Automatic segmentation's default least stability
        (:attr:`napari_segany.model.ModelInfo.min_stability`).
    max_upscale : float or None
        The most a small image is enlarged to fill the frame, padded beyond
        (:attr:`napari_segany.model.ModelInfo.max_upscale`); None fills it.
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
    stop_iou: float = DEFAULT_STOP_IOU
    views: int = 1
    min_stability: float = 0.95
    max_upscale: float | None = None

    @property
    def size_text(self) -> str:
        """Human-readable size, e.g. ``"375 MB"`` (``"size unknown"`` if not known)."""
        return f"{round(self.size_bytes / _MB)} MB" if self.size_bytes else "size unknown"


#: The model ``load_model()``, the command line and the plugin use when none is named.
DEFAULT_MODEL = "segany_vit_t_512"


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
                  "sha256:6e1d2623227e63629bf91a5e02c9f9ecdc8cce2499d83cb85e5f0e355d309545",
                  20_648_618, description="napari-segany's own small model (TinyViT, 512 px), "
                  "included: no download; trained on synthetic images, see MODEL_CARD.md",
                  source="Trained from scratch by napari-segany (training/); BSD-3-Clause.",
                  bundled=True, stop_iou=0.5,  # its IoU head is calibrated: below 0.5 = no longer a match
                  views=4,  # a cheap encoder: 4 mirrored views, see MODEL_CARD.md
                  # its stability kept as many wrong candidates as right ones on the real nuclei (2D: 33 %
                  # of each at 0.95; 3D: 1 % of right ones, 18 % of wrong), so only wild masks are refused
                  min_stability=0.5,
                  # it never saw an image enlarged more than 2x in training; 128 px crops of the real nuclei
                  # blown up 4x into its frame got clearly worse masks, 3x is the measured compromise with
                  # tiny objects, which gain from enlarging: benchmarks/bench_small_images.py, MODEL_CARD.md
                  max_upscale=3.0),
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
