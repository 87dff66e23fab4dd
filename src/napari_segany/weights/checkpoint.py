"""Reading checkpoint files safely and telling which architecture they hold.

Nothing here executes code from a file: ``.pth``/``.pt`` files are read with
``torch.load(..., weights_only=True)``, which refuses any pickled object other
than tensors and plain containers, and ``.safetensors`` files hold no code.

Formats understood (after unwrapping, keys are those of
:class:`napari_segany.model.Sam`, e.g. ``image_encoder.pos_embed``):

- flat state dicts (the official SAM, MobileSAM and MedSAM files);
- micro-sam training files: ``{"model_state": {"sam.<key>": ...},
  "decoder_state": ..., ...}`` (extra entries such as the instance decoder are
  ignored);
- the usual wrappers ``{"state_dict": ...}`` and ``{"model": ...}``, with a
  common key prefix (``sam.``, ``module.``, ``model.``) stripped;
- our own format ``{"model": state_dict, "config": {"arch": ...,
  "image_size": ..., "preprocess": ...}}``; the config is kept on the result
  (in ``.safetensors`` files it is JSON under the metadata key ``config``).

Files' hashes (for verifying downloads) are in :mod:`.hashing`.
"""

from __future__ import annotations

import json
import os
import pickle
import pickletools
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..engine.instance_head import HEAD_PREFIX
from ..engine.refine import REFINER_PREFIX
from ..engine.scoring import SCORER_PREFIX

ARCH_DIMS = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}
ARCH_DEPTHS = {"vit_b": 12, "vit_l": 24, "vit_h": 32}
PATCH_SIZE = 16
WINDOW_REL_POS = 2 * 14 - 1  # rel-pos table length in windowed (14 x 14) blocks
PREPROCESS_MODES = ("sam", "medsam")

VIT_SIGNATURE = ("image_encoder.pos_embed", "image_encoder.patch_embed.proj.weight")
TINYVIT_SIGNATURE = (
    "image_encoder.patch_embed.seq.0.c.weight",
    "image_encoder.patch_embed.seq.2.c.weight",
    "image_encoder.neck.0.weight",
)
HEAD_SIGNATURE = (
    "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
    "prompt_encoder.point_embeddings.0.weight",
    "prompt_encoder.no_mask_embed.weight",
    "mask_decoder.iou_token.weight",
    "mask_decoder.mask_tokens.weight",
    "mask_decoder.output_upscaling.0.weight",
)
_WRAPPER_KEYS = ("model_state", "state_dict", "model")
_SAM_PARTS = ("image_encoder.", "prompt_encoder.", "mask_decoder.")
#: Also kept: our models' refiner, scorer and instance head (:mod:`napari_segany.engine.refine`,
#: :mod:`napari_segany.engine.scoring`, :mod:`napari_segany.engine.instance_head`).
_KEPT_PARTS = _SAM_PARTS + (REFINER_PREFIX, SCORER_PREFIX, HEAD_PREFIX)


class StateDict(dict):
    """A ``dict[str, Tensor]`` read from a checkpoint, with what came with it.

    Attributes
    ----------
    config : dict
        The ``config`` stored beside the weights (our own format), else empty.
    layout : str
        How the file nested its weights: ``"flat"``, ``"model_state"``
        (micro-sam), ``"state_dict"``, ``"model"`` or ``"safetensors"``.
    """

    def __init__(self, data=(), config: dict | None = None, layout: str = "flat") -> None:
        super().__init__(data)
        self.config = dict(config or {})
        self.layout = layout


def read_checkpoint(path: str | os.PathLike) -> StateDict:
    """Read the weights of a SAM-family checkpoint without executing any code.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.pth``/``.pt`` file written by ``torch.save`` or a
        ``.safetensors`` file.

    Returns
    -------
    StateDict
        Keys in the schema of :class:`napari_segany.model.Sam`, values CPU
        tensors; ``.config`` holds a stored config if there was one.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file holds pickled code or objects other than tensors, is not
        a checkpoint, is damaged, or contains no SAM-family weights.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"No checkpoint file at {str(path)!r}; check the path, or pass a registry "
            "name such as 'vit_b' to download the weights."
        )
    if path.suffix.lower() == ".safetensors":
        return _read_safetensors(path)
    obj = _torch_load(path)
    if not isinstance(obj, dict):
        raise ValueError(
            f"{str(path)!r} holds a {type(obj).__name__}, not a dict of weights; "
            "save the model's state_dict() instead of the model object."
        )
    state, config, layout = _unwrap(obj)
    if not state:
        raise ValueError(
            f"{str(path)!r} contains no Segment Anything weights. " + _unknown_message(obj)
        )
    return StateDict(state, config=config, layout=layout)


def _torch_load(path: Path) -> Any:
    kwargs: dict[str, Any] = {"map_location": "cpu", "weights_only": True}
    if zipfile.is_zipfile(path):
        kwargs["mmap"] = True  # no second in-memory copy of large files
    try:
        return torch.load(path, **kwargs)
    except pickle.UnpicklingError as err:
        # our own sentences only: torch's wording changes between versions and suggests weights_only=False
        glob = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if glob or zipfile.is_zipfile(path) or _starts_like_pickle(path):
            detail = f" (it references {glob.group(1)})" if glob else ""
            raise ValueError(f"{str(path)!r} is not a plain weights file; refusing to unpickle code or Python "
                             f"objects from it{detail}. Nothing from the file was executed. If you trust its "
                             "source, load it once in that environment and re-save only the weights: "
                             "torch.save(model.state_dict(), 'weights.pth').") from None
        raise ValueError(f"{str(path)!r} is not a PyTorch checkpoint; pass a .pth/.pt file written by "
                         "torch.save or a .safetensors file.") from None
    except PermissionError:
        raise
    except (IndexError, KeyError, ValueError, TypeError, AttributeError, UnicodeDecodeError, struct.error):
        # bytes that are neither a pickle nor a torch archive make the unpickler fail in its own ways
        if zipfile.is_zipfile(path):
            raise ValueError(f"Could not read {str(path)!r}: it looks damaged or incomplete (a partial "
                             "download?). Delete it and download or copy it again.") from None
        raise ValueError(f"{str(path)!r} is not a PyTorch checkpoint; pass a .pth/.pt file written by "
                         "torch.save or a .safetensors file.") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as err:
        raise ValueError(
            f"Could not read {str(path)!r}: it looks damaged or incomplete (a partial "
            f"download?). Delete it and download or copy it again. Detail: {err}"
        ) from None


def _starts_like_pickle(path: Path) -> bool:
    """PROTO first (protocol >= 2), or parses as a whole pickle (pickletools runs nothing)."""
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    try:
        return head[:1] == b"\x80" or any(op.name == "STOP" for op, _, _ in pickletools.genops(head))
    except Exception:  # not a pickle
        return False


def _read_safetensors(path: Path) -> StateDict:
    try:
        from safetensors import safe_open
    except ImportError:
        raise ValueError(
            f"Reading {str(path)!r} needs the safetensors package: pip install safetensors"
        ) from None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(
            f"Could not read {str(path)!r} as safetensors: it looks damaged or is not a "
            f"safetensors file. Detail: {err}"
        ) from None
    config: dict = {}
    if "config" in meta:
        try:
            config = json.loads(meta["config"])
        except json.JSONDecodeError:
            raise ValueError(
                f"The 'config' metadata of {str(path)!r} is not valid JSON; re-save the file."
            ) from None
    state, _, _ = _unwrap(tensors)
    return StateDict(state, config=config, layout="safetensors")


def _unwrap(obj: dict) -> tuple[dict[str, torch.Tensor], dict, str]:
    """Find the SAM weights inside ``obj``: (state dict, config, layout)."""
    config = obj.get("config") if isinstance(obj.get("config"), dict) else {}
    layout = "flat"
    inner: dict = obj
    if not _has_sam_keys(obj):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict) and _has_sam_keys(obj[key]):
                inner, layout = obj[key], key
                break
    return _strip_prefix(inner), dict(config), layout


def _has_sam_keys(d: dict) -> bool:
    return any(isinstance(k, str) and "image_encoder." in k for k in d)


def _strip_prefix(d: dict) -> dict[str, torch.Tensor]:
    """Keep the tensors under the common prefix of the SAM keys, prefix removed."""
    first = next((k for k in d if isinstance(k, str) and "image_encoder." in k), None)
    if first is None:
        return {}
    prefix = first[: first.index("image_encoder.")]
    out = {}
    for k, v in d.items():
        if isinstance(k, str) and k.startswith(prefix) and isinstance(v, torch.Tensor):
            name = k[len(prefix):]
            if name.startswith(_KEPT_PARTS):
                out[name] = v
    return out


def _preview(d: dict, n: int = 5) -> str:
    keys = [str(k) for k in list(d)[:n]]
    more = f", ... ({len(d)} in all)" if len(d) > n else ""
    return ", ".join(keys) + more if keys else "none"


def detect_architecture(
    state_dict: dict[str, torch.Tensor], config: dict | None = None
) -> tuple[str, int]:
    """Tell the architecture and input size of a state dict from keys and shapes.

    Parameters
    ----------
    state_dict : dict of str to Tensor
        Weights in the schema of :class:`napari_segany.model.Sam`; only key
        names and tensor shapes are read, so meta tensors work.
    config : dict, optional
        A stored config (defaults to ``state_dict.config`` when present). Its
        ``image_size`` is used for TinyViT, whose size the keys do not show;
        its ``arch`` and ``image_size`` must agree with the weights.

    Returns
    -------
    arch : str
        ``"vit_b"``, ``"vit_l"``, ``"vit_h"`` or ``"vit_t"``.
    image_size : int
        Side of the square model input in pixels (1024 for published models).

    Raises
    ------
    ValueError
        If the weights match no known architecture, lack the prompt encoder or
        mask decoder, or disagree with the config.
    """
    if config is None:
        config = getattr(state_dict, "config", None) or {}
    keys = state_dict.keys()
    if all(k in keys for k in VIT_SIGNATURE):
        arch, image_size = _detect_vit(state_dict)
    elif all(k in keys for k in TINYVIT_SIGNATURE):
        arch, image_size = _detect_tinyvit(state_dict), int(config.get("image_size", 1024))
    else:
        raise ValueError(_unknown_message(state_dict))
    missing = [k for k in HEAD_SIGNATURE if k not in keys]
    if missing:
        raise ValueError(
            f"The weights hold a {arch} image encoder but no complete prompt encoder and "
            f"mask decoder (missing e.g. {', '.join(missing[:3])}). This looks like an "
            "encoder-only export; use the full checkpoint that includes the decoder."
        )
    if config.get("arch") not in (None, arch):
        raise ValueError(
            f"The checkpoint's config says arch={config['arch']!r} but its weights are "
            f"{arch}; fix the config or re-save the file."
        )
    if arch != "vit_t" and config.get("image_size") not in (None, image_size):
        raise ValueError(
            f"The checkpoint's config says image_size={config['image_size']} but its "
            f"positional embedding is for {image_size}; fix the config or re-save the file."
        )
    return arch, image_size


def _detect_vit(sd: dict[str, torch.Tensor]) -> tuple[str, int]:
    pos = sd["image_encoder.pos_embed"]
    if pos.ndim != 4 or pos.shape[1] != pos.shape[2]:
        raise ValueError(
            f"image_encoder.pos_embed has shape {tuple(pos.shape)}, expected "
            "(1, grid, grid, embed_dim); this is not a SAM ViT checkpoint."
        )
    grid, dim = int(pos.shape[1]), int(pos.shape[3])
    arch = ARCH_DIMS.get(dim)
    if arch is None:
        raise ValueError(
            f"The image encoder's embedding width is {dim}; known ViT widths are "
            + ", ".join(f"{d} ({a})" for d, a in ARCH_DIMS.items())
            + ". This checkpoint is a SAM variant napari-segany cannot build."
        )
    depth = len({m.group(1) for k in sd if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))})
    if depth != ARCH_DEPTHS[arch]:
        raise ValueError(
            f"The image encoder has width {dim} ({arch}) but {depth} blocks, not "
            f"{ARCH_DEPTHS[arch]}; this is a modified SAM that napari-segany cannot build."
        )
    for i in range(depth):  # global blocks have a longer relative-position table
        table = sd.get(f"image_encoder.blocks.{i}.attn.rel_pos_h")
        if table is not None and table.shape[0] not in (WINDOW_REL_POS, 2 * grid - 1):
            raise ValueError(
                f"image_encoder.blocks.{i}.attn.rel_pos_h has {table.shape[0]} rows; a "
                f"{arch} with a {grid} x {grid} token grid needs {WINDOW_REL_POS} or "
                f"{2 * grid - 1}. The checkpoint does not match its positional embedding."
            )
    return arch, grid * PATCH_SIZE


def _detect_tinyvit(sd: dict[str, torch.Tensor]) -> str:
    stem = int(sd["image_encoder.patch_embed.seq.2.c.weight"].shape[0])
    last = int(sd["image_encoder.neck.0.weight"].shape[1])
    if (stem, last) != (64, 320):
        raise ValueError(
            f"The TinyViT encoder has widths {stem} -> {last}; only TinyViT-5M "
            "(MobileSAM, 64 -> 320, 'vit_t') is supported."
        )
    return "vit_t"


def _unknown_message(sd: dict) -> str:
    hint = ""
    if any(isinstance(k, str) and "image_encoder.trunk." in k for k in sd):
        hint = "It looks like a SAM 2 checkpoint, which napari-segany does not support yet. "
    return hint + (
        "The weights match no known architecture. Expected a SAM ViT "
        f"(vit_b/vit_l/vit_h, keys {', '.join(VIT_SIGNATURE)}) or MobileSAM's TinyViT "
        f"(vit_t, keys {', '.join(TINYVIT_SIGNATURE[:2])}), each with prompt_encoder.* and "
        f"mask_decoder.* keys. Found {len(sd)} keys: {_preview(sd)}."
    )
