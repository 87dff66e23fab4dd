"""Loading models: a registry name or a checkpoint file -> a ready :class:`Sam`.

>>> from napari_segany.weights.load import load_model
>>> model = load_model("vit_b")                       # doctest: +SKIP
>>> model = load_model("~/models/my_sam.pth", "cpu")  # doctest: +SKIP
>>> model.info                                        # doctest: +SKIP
ModelInfo(name='my_sam', arch='vit_b', preprocess='sam', source='...', sha256='...', stop_iou=0.8)
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import torch

from . import registry, user_models
from .checkpoint import PREPROCESS_MODES, detect_architecture, read_checkpoint
from .hashing import file_digests, hash_algorithm
from ..model import ModelInfo, Sam, build_sam
from ..engine.instance_head import HEAD_PREFIX, build_instance_head
from ..engine.refine import REFINER_PREFIX, build_refiner
from ..engine.scoring import SCORER_PREFIX, build_scorer

__all__ = ["load_model", "model_from_state_dict", "resolve_device"]

_PATH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")
#: Our models' extra nets: the model's attribute -> (key prefix of its weights, builder from its
#: settings in ``config[attribute]``).
EXTRA_PARTS = {"refiner": (REFINER_PREFIX, build_refiner), "scorer": (SCORER_PREFIX, build_scorer),
               "instance_head": (HEAD_PREFIX, build_instance_head)}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """A usable device from ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a device.

    ``"auto"`` picks CUDA if available, else Apple MPS, else the CPU.

    Raises
    ------
    ValueError
        If the device is unknown or not available on this machine.
    TypeError
        If ``device`` is neither a string nor a ``torch.device``.
    """
    if isinstance(device, str):
        text = device.strip().lower()
        if text == "auto":
            if torch.cuda.is_available():
                return torch.device("cuda")
            if _mps_available():
                return torch.device("mps")
            return torch.device("cpu")
        try:
            dev = torch.device(text)
        except RuntimeError:
            raise ValueError(
                f"Unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."
            ) from None
    elif isinstance(device, torch.device):
        dev = device
    else:
        raise TypeError(f"device must be a string or torch.device, got {type(device).__name__}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this PyTorch build has no CUDA support" if torch.version.cuda is None
                   else "no CUDA GPU is visible to PyTorch")
            raise ValueError(f"device={device!r} was requested but {why}; use device='cpu' "
                             "or 'auto', or install a CUDA build of PyTorch.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r} does not exist: this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s), numbered from 0.")
    elif dev.type == "mps":
        if not _mps_available():
            raise ValueError(f"device={device!r} was requested but Apple MPS is not available "
                             "here; use device='cpu' or 'auto'.")
    elif dev.type != "cpu":
        raise ValueError(f"Device type {dev.type!r} is not supported; use 'cpu', 'cuda' or 'mps'.")
    return dev


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _check_finite(state_dict: dict) -> None:
    """A checkpoint with NaN or infinite weights loads but answers NaN everywhere: refuse it."""
    for key, value in state_dict.items():
        if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(f"The checkpoint's weight {key!r} holds NaN or infinite values: the file is damaged "
                             "or came from a training run that diverged. Download or export it again.")


def model_from_state_dict(
    state_dict: dict[str, torch.Tensor],
    *,
    arch: str | None = None,
    image_size: int | None = None,
    device: str | torch.device = "cpu",
    refiner: dict | None = None,
) -> Sam:
    """Build the model that ``state_dict`` belongs to and load it strictly.

    Parameters
    ----------
    state_dict : dict of str to Tensor
        Weights in the schema of :class:`napari_segany.model.Sam` (e.g. from
        :func:`napari_segany.weights.checkpoint.read_checkpoint`). Floating tensors
        are loaded as float32.
    arch, image_size : optional
        Skip detection and use these (see
        :func:`napari_segany.weights.checkpoint.detect_architecture`).
    device : str or torch.device, default "cpu"
        Where the model's tensors are placed (see :func:`resolve_device`).
    refiner : dict, optional
        Settings of the boundary refiner whose weights are the ``refiner.*``
        keys (:mod:`napari_segany.engine.refine`); default: the checkpoint's
        ``config["refiner"]``.

    Returns
    -------
    Sam
        In eval mode, on ``device``. Its ``info`` names only the architecture;
        :func:`load_model` fills in name, source and hash.

    Raises
    ------
    ValueError
        If keys are missing or unexpected, or a tensor has the wrong shape.
    """
    if arch is None or image_size is None:
        found_arch, found_size = detect_architecture(state_dict)
        arch, image_size = arch or found_arch, image_size or found_size
    dev = resolve_device(device)
    if refiner is None:
        refiner = getattr(state_dict, "config", {}).get("refiner")
    config = getattr(state_dict, "config", {})
    parts = {name: (prefix, build, refiner if name == "refiner" else config.get(name),
                    {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)})
             for name, (prefix, build) in EXTRA_PARTS.items()}
    _check_finite(state_dict)
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(tuple(p for p, _ in EXTRA_PARTS.values()))}
    model = _build_on_meta(arch, image_size)
    if model is not None:
        _check_keys(model, state_dict, arch)
        _check_dtypes(model, state_dict)
        tensors = {k: _to_device(v, dev) for k, v in state_dict.items()}
        _load(model, tensors, arch, assign=True)
        if any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers())):
            model = None  # a buffer outside the checkpoint: build for real instead
    if model is None:
        model = build_sam(arch, image_size)
        _check_keys(model, state_dict, arch)
        _load(model, state_dict, arch, assign=False)
    for name, (_, build, settings, weights) in parts.items():
        if weights:
            setattr(model, name, _part(name, build, settings, weights))
    return model.to(dev).eval()


def _part(name: str, build, config: dict | None, state_dict: dict) -> torch.nn.Module:
    """One of our models' extra nets (:data:`EXTRA_PARTS`) from its settings and weights."""
    if config is None:
        raise ValueError(f"The checkpoint has {name} weights but no {name} settings in its config; "
                         "it is damaged or was written by another program: reinstall or re-export it.")
    net = build(config)
    try:
        net.load_state_dict({k: v.float() for k, v in state_dict.items()}, strict=True)
    except RuntimeError as err:
        raise ValueError(f"The checkpoint's {name} weights do not fit its settings {config!r} ({err}); "
                         "reinstall or re-export the file.") from None
    return net


def _build_on_meta(arch: str, image_size: int) -> Sam | None:
    """The model with shape-only tensors (no memory, no random init), or None if unsupported."""
    try:
        with torch.device("meta"):
            return build_sam(arch, image_size)
    except ValueError:
        raise
    except Exception:  # a module that computes values at construction time
        return None


def _to_device(t: torch.Tensor, dev: torch.device) -> torch.Tensor:
    dtype = torch.float32 if t.is_floating_point() else t.dtype
    return t.to(device=dev, dtype=dtype, copy=True)  # never keep file-backed (mmap) storage


def _check_keys(model: Sam, state_dict: dict, arch: str) -> None:
    expected = set(model.state_dict())
    missing = sorted(expected - set(state_dict))
    unexpected = sorted(set(state_dict) - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:5])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:5])})")
        raise ValueError(
            f"The checkpoint does not fit napari-segany's {arch} model: keys "
            f"{'; '.join(parts)}. It may be a modified SAM variant or a damaged export; "
            "use an unmodified checkpoint of the same architecture."
        )


def _check_dtypes(model: Sam, state_dict: dict) -> None:
    """An integer or boolean tensor where the model has floating-point weights: torch's copy error
    said the tensors do not fit although the shapes are equal."""
    expected = model.state_dict()
    for key, value in state_dict.items():
        if torch.is_tensor(value) and expected[key].is_floating_point() and not value.is_floating_point():
            raise ValueError(f"The checkpoint's weight {key!r} holds {str(value.dtype).replace('torch.', '')} "
                             "numbers where the model needs floating-point weights: the file was damaged or "
                             "converted wrongly. Download or export it again.")


def _load(model: Sam, tensors: dict, arch: str, *, assign: bool) -> None:
    try:
        model.load_state_dict(tensors, strict=True, assign=assign)
    except RuntimeError as err:  # shape mismatches
        lines = [ln.strip() for ln in str(err).splitlines() if "size mismatch" in ln]
        detail = "; ".join(lines[:3]) or str(err)
        raise ValueError(
            f"The checkpoint's tensors do not fit napari-segany's {arch} model: {detail}. "
            "Use an unmodified checkpoint of this architecture."
        ) from None


def _looks_like_path(text: str) -> bool:
    return any(sep in text for sep in ("/", "\\")) or text.lower().endswith(_PATH_SUFFIXES)


def load_model(
    name_or_path: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    *,
    preprocess: str | None = None,
    progress=True,
) -> Sam:
    """Load a Segment Anything model, ready for prediction.

    Parameters
    ----------
    name_or_path : str or os.PathLike, optional
        A registry name (see ``napari_segany.weights.registry.model_names()``),
        downloaded and verified on first use, the name of one of your own
        models (fine-tuned and saved by name, :mod:`napari_segany.weights.user_models`;
        registry names come first), or the path of a checkpoint file
        (``.pth``/``.pt``/``.safetensors``) in any layout that
        :func:`napari_segany.weights.checkpoint.read_checkpoint` understands. By
        default the model that ships inside the package
        (``registry.DEFAULT_MODEL``, no download; its hash is checked).
    device : str or torch.device, default "auto"
        See :func:`resolve_device`.
    preprocess : {"sam", "medsam"}, optional
        Override how images are prepared for this model. By default it comes
        from the registry entry, or for a file from its stored config, or from
        the registry entry whose hash the file matches, else ``"sam"``.
    progress : bool or tqdm-like, default True
        Progress bar for a download.

    Returns
    -------
    Sam
        In eval mode on ``device``; ``model.info`` names the model, its
        architecture, preprocessing, source file and the file's sha256.

    Raises
    ------
    ValueError
        If the name is unknown and no such file exists, the
        file is unsafe, damaged or of an unknown architecture, or the device is
        not available.
    """
    if name_or_path is None:
        name_or_path = registry.DEFAULT_MODEL
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path must be a registry name or a checkpoint path (str or Path), got "
                        f"{type(name_or_path).__name__} {name_or_path!r:.60}")
    if not os.fspath(name_or_path).strip():
        raise ValueError("name_or_path is empty: pass a registry name (e.g. 'vit_b'), the path of a checkpoint "
                         "file, or None for the included model.")
    if preprocess is not None and preprocess not in PREPROCESS_MODES:
        raise ValueError(f"preprocess must be one of {', '.join(PREPROCESS_MODES)}, "
                         f"got {preprocess!r}.")
    dev = resolve_device(device)  # fail before a long download
    if isinstance(name_or_path, str) and name_or_path in registry.REGISTRY:
        return _load_registered(name_or_path, dev, preprocess, progress)
    own = user_models.find(name_or_path)  # a model of the user's, saved by name (fine-tuning)
    path = own if own is not None else Path(os.fspath(name_or_path)).expanduser()
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a folder; pass the checkpoint file inside it.")
    if not path.is_file():
        text = os.fspath(name_or_path)
        lead = (f"No checkpoint file at {text!r}" if _looks_like_path(text)
                else f"{text!r} is neither a registry name nor an existing file")
        yours = user_models.names()
        mine = f"; your own models: {', '.join(yours)}" if yours else ""
        raise ValueError(f"{lead}. Registry names: {', '.join(registry.REGISTRY)}{mine}; "
                         "or pass the path of a checkpoint file.")
    state = read_checkpoint(path)
    arch, image_size = detect_architecture(state)
    digests = file_digests(path, _algorithms_for(arch))
    spec = _match_registry(digests, arch)
    name = state.config.get("name") or (spec.name if spec else path.stem)
    mode = preprocess or state.config.get("preprocess") or (spec.preprocess if spec else "sam")
    if mode not in PREPROCESS_MODES:
        raise ValueError(f"The checkpoint's config has preprocess={mode!r}; expected one of "
                         f"{', '.join(PREPROCESS_MODES)}. Pass preprocess= to override.")
    model = model_from_state_dict(state, arch=arch, image_size=image_size, device=dev)
    model.info = ModelInfo(name=name, arch=arch, preprocess=mode, source=str(path),
                           sha256=digests["sha256"], stop_iou=_level(state.config, spec, "stop_iou"),
                           views=_views(state.config, spec),
                           min_stability=_level(state.config, spec, "min_stability"),
                           max_upscale=_max_upscale(state.config, spec))
    return model


def _level(config: dict, spec: registry.ModelSpec | None, key: str) -> float:
    """A level between 0 and 1 for a file (``stop_iou``: propagation's stop; ``min_stability``:
    automatic segmentation's): its config's (our format), else that of the registry entry the
    file's hash matches, else the SAM default."""
    value = config.get(key, getattr(spec, key) if spec else getattr(ModelInfo, key))
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"The checkpoint's config has {key}={config.get(key)!r}; expected a "
                         "number between 0 and 1. Fix or remove that entry of the file's config.")
    return value


def _views(config: dict, spec: registry.ModelSpec | None) -> int:
    """How many mirrored views a file's model recommends: its config's (our format, e.g. a fine-tuned
    model keeps its base model's), else that of the registry entry its hash matches, else 1."""
    value = config.get("views", spec.views if spec else 1)
    if value not in (1, 2, 4, 8):
        raise ValueError(f"The checkpoint's config has views={value!r}; expected 1, 2, 4 or 8. Fix or remove "
                         "that entry of the file's config.")
    return int(value)


def _max_upscale(config: dict, spec: registry.ModelSpec | None) -> float | None:
    """The most a file's model enlarges small images: its config's (our format, e.g. a fine-tuned
    model keeps its base model's), else that of the registry entry its hash matches, else None."""
    value = config.get("max_upscale", spec.max_upscale if spec else None)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1.0 <= value <= 64.0:
        raise ValueError(f"The checkpoint's config has max_upscale={value!r}; expected a number from 1 to 64, "
                         "or no entry (fill the frame). Fix or remove that entry of the file's config.")
    return float(value)


def _load_registered(name: str, dev: torch.device, preprocess: str | None, progress) -> Sam:
    spec = registry.get_spec(name)
    path = registry.fetch(name, progress=progress)
    state = read_checkpoint(path)
    arch, image_size = detect_architecture(state)
    if arch != spec.arch:
        raise ValueError(
            f"The cached file for {name!r} ({path}) holds {arch} weights, not {spec.arch}; "
            "delete it and load the model again to download a fresh copy."
        )
    if hash_algorithm(spec.known_hash) == "sha256" and not registry.imported_by_hand(name):
        sha256 = spec.known_hash.split(":")[-1].lower()  # fetch() just verified it
    else:
        sha256 = file_digests(path, ["sha256"])["sha256"]
    model = model_from_state_dict(state, arch=arch, image_size=image_size, device=dev)
    model.info = ModelInfo(name=name, arch=arch, preprocess=preprocess or spec.preprocess,
                           source=str(path), sha256=sha256, stop_iou=spec.stop_iou, views=spec.views,
                           min_stability=spec.min_stability, max_upscale=spec.max_upscale)
    return model


def _algorithms_for(arch: str) -> set[str]:
    """sha256 plus the algorithms of registry entries of ``arch`` that can be computed."""
    algs = {"sha256"} | {hash_algorithm(s.known_hash) for s in registry.REGISTRY.values()
                         if s.arch == arch}
    try:
        import xxhash  # noqa: F401
    except ImportError:
        algs = {a for a in algs if not a.startswith("xxh")}
    return algs


def _match_registry(digests: dict[str, str], arch: str) -> registry.ModelSpec | None:
    """The registry entry of ``arch`` whose known hash is among ``digests``."""
    for spec in registry.REGISTRY.values():
        want = spec.known_hash.split(":")[-1].lower()
        if spec.arch == arch and digests.get(hash_algorithm(spec.known_hash)) == want:
            return spec
    return None
