"""The Sam container and one small builder per architecture."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .image_encoder import ImageEncoderViT
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder

PROMPT_EMBED_DIM = 256

#: Predicted IoU below which propagation stops by default: SAM's scale (its masks a person
#: accepts score 0.85-1.0). Models with another calibration set their own ``stop_iou``.
DEFAULT_STOP_IOU = 0.8

# embed_dim, depth, num_heads, global attention blocks
VIT_CONFIGS: dict[str, tuple[int, int, int, tuple[int, ...]]] = {
    "vit_b": (768, 12, 12, (2, 5, 8, 11)),
    "vit_l": (1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": (1280, 32, 16, (7, 15, 23, 31)),
}
ARCHITECTURES = ("vit_b", "vit_l", "vit_h", "vit_t")


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model is and how its inputs must be prepared.

    ``preprocess`` is ``"sam"`` (longest side resized, ImageNet mean/std on
    the 0-255 scale, zero padding) or ``"medsam"`` (stretched to a square,
    scaled to [0, 1], no mean/std).
    ``stop_iou`` is the predicted IoU below which propagation stops by
    default: scores are on each model's own scale (0.8 suits SAM's).
    ``views`` is how many mirrored views of an image the command line and the
    napari widget average by default (:mod:`napari_segany.engine.views`).
    ``min_stability`` is the least stability (area at logit cut-off +1 over
    area at -1) automatic segmentation asks of a candidate by default: 0.95
    for SAM's sharp logits; a model whose stability does not tell right
    candidates from wrong ones sets it lower.
    ``max_upscale`` is the most an image smaller than the model's frame is
    enlarged to fill it; beyond that it is padded instead (None: always
    filled, as SAM does). A model trained on objects of a limited range of
    sizes answers poorly when a small image blows them up several times.
    """

    name: str
    arch: str
    preprocess: str = "sam"
    source: str = ""
    sha256: str = ""
    stop_iou: float = DEFAULT_STOP_IOU
    views: int = 1
    min_stability: float = 0.95
    max_upscale: float | None = None


class Sam(nn.Module):
    """Image encoder + prompt encoder + mask decoder (checkpoint key prefixes)."""

    mask_threshold = 0.0

    def __init__(
        self,
        image_encoder: nn.Module,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        image_size: int,
        arch: str,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.image_size = image_size
        self.arch = arch
        self.info = ModelInfo(name=arch, arch=arch)
        #: Optional boundary refinement of the upscaled masks (:mod:`napari_segany.engine.refine`),
        #: attached by the loader when the checkpoint carries one.
        self.refiner: nn.Module | None = None
        self.scorer: nn.Module | None = None  # napari_segany.engine.scoring.CandidateScorer, for our own models
        #: Where objects are, for automatic segmentation (napari_segany.engine.instance_head), our models only.
        self.instance_head: nn.Module | None = None

    @property
    def embedding_size(self) -> int:
        return self.image_size // 16

    @property
    def low_res_size(self) -> int:
        """Side of the decoder's low-resolution logits (4 x the embedding grid)."""
        return 4 * self.embedding_size


def _heads(image_encoder: nn.Module, image_size: int, arch: str) -> Sam:
    grid = image_size // 16
    return Sam(
        image_encoder=image_encoder,
        prompt_encoder=PromptEncoder(PROMPT_EMBED_DIM, (grid, grid), (image_size, image_size)),
        mask_decoder=MaskDecoder(PROMPT_EMBED_DIM, num_multimask_outputs=3),
        image_size=image_size,
        arch=arch,
    )


def build_sam(arch: str, image_size: int = 1024) -> Sam:
    """Build an uninitialised (random-weight) model of architecture ``arch``.

    ``arch`` is one of ``vit_b``, ``vit_l``, ``vit_h`` (SAM) or ``vit_t``
    (MobileSAM's TinyViT encoder). ``image_size`` is the square model input
    (1024 for all published checkpoints); it must be a multiple of 64.
    """
    if image_size % 64:
        raise ValueError(f"image_size must be a multiple of 64, got {image_size}")
    if arch in VIT_CONFIGS:
        dim, depth, heads, global_idx = VIT_CONFIGS[arch]
        encoder = ImageEncoderViT(dim, depth, heads, global_idx, img_size=image_size)
    elif arch == "vit_t":
        from .tiny_vit import TinyViT

        encoder = TinyViT(img_size=image_size)
    else:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    return _heads(encoder, image_size, arch).eval()
