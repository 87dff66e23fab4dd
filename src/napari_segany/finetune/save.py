"""Writing a fine-tuned model in our checkpoint format: ``{"model": state_dict, "config": {...}}``
(float32 weights: the frozen encoder stays bit-identical to the base model's in memory), with what
it was made from in ``config["finetune"]``. Written atomically; never over an existing file unless
asked."""

from __future__ import annotations

import datetime
import os
import tempfile
from pathlib import Path

import torch

from ..files import check_output_path
from ..weights import user_models

SUFFIXES = (".pt", ".pth")


def check_output(path, overwrite: bool) -> Path:
    """The checkpoint path, refused before any work when it exists (and ``overwrite`` is False), is
    a folder, or does not end in .pt/.pth. A str that is a model name (letters, digits, - and _)
    is one of the user's own models: ``<cache>/user-models/<name>.pt``
    (:mod:`napari_segany.weights.user_models`), never a registry name."""
    if isinstance(path, str) and user_models.is_name(path):
        p = user_models.path_for(path)
        if p.exists() and not overwrite:
            raise FileExistsError(f"you already have a model called {path!r} ({p}); choose another name or pass "
                                  "overwrite=True to replace it")
        return p
    p = Path(os.fspath(path)).expanduser()
    if p.suffix.lower() not in SUFFIXES:
        raise ValueError(f"the output {str(p)!r} would hold a model; give a file name ending in .pt or .pth, or a "
                         "model name of letters, digits, - and _ (saved among your own models)")
    check_output_path(p, "output")  # a folder, or under a file or a folder this user cannot write
    if p.exists() and not overwrite:
        raise FileExistsError(f"{str(p)!r} already exists; choose another name or pass overwrite=True to replace it")
    return p


def config_for(model, base_info, provenance: dict, name: str) -> dict:
    """The stored config: what :func:`napari_segany.load_model` reads, and where the model came from."""
    info = model.info
    config = {"arch": info.arch, "image_size": int(model.image_size), "preprocess": info.preprocess, "name": name,
              "stop_iou": float(info.stop_iou), "min_stability": float(info.min_stability), "views": int(info.views)}
    if info.max_upscale is not None:
        config["max_upscale"] = float(info.max_upscale)
    for part in ("refiner", "scorer", "instance_head"):
        if getattr(model, part, None) is not None:
            config[part] = getattr(model, part).config
    config["finetune"] = {"base": {"name": base_info.name, "sha256": base_info.sha256, "source": base_info.source},
                          "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                          "torch": str(torch.__version__), **provenance}
    return config


def write(model, path: Path, config: dict, overwrite: bool) -> Path:
    """Save atomically: a temporary file beside ``path``, then renamed onto it (or, without
    ``overwrite``, linked to it, which fails if a file appeared there meanwhile)."""
    path = check_output(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype, copy=True)
             for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        torch.save({"model": state, "config": config}, tmp)
        os.chmod(tmp, 0o644)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # atomic and never over a file that appeared meanwhile
            except FileExistsError:
                raise FileExistsError(f"{str(path)!r} appeared while fine-tuning; the model was not saved. Choose "
                                      "another name or pass overwrite=True") from None
            except OSError:  # a file system without hard links
                if path.exists():
                    raise FileExistsError(f"{str(path)!r} appeared while fine-tuning; the model was not saved") from None
                os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path
