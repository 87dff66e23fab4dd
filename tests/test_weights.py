"""Safe checkpoint reading, architecture detection and strict model loading.

Real parts only: the reference ``segment-anything`` package writes the random
vit_b weights in the official flat schema (built once per session), and
vit_l/vit_h are checked from shape-only (meta) state dicts.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import pickle
import warnings
from pathlib import Path

import pytest
import torch

from napari_segany.weights import registry
from napari_segany.weights.checkpoint import detect_architecture, read_checkpoint
from napari_segany.model import build_sam
from napari_segany.weights.load import load_model, model_from_state_dict, resolve_device

COMPARED = (
    "image_encoder.pos_embed",
    "image_encoder.blocks.11.attn.rel_pos_h",
    "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
    "mask_decoder.iou_prediction_head.layers.2.weight",
)


@pytest.fixture(scope="session")
def ref_vit_b_state() -> dict[str, torch.Tensor]:
    """Random vit_b weights from the reference package (the official key schema)."""
    from reference_models import reference_sam

    return {k: v.clone() for k, v in reference_sam("vit_b", seed=3).state_dict().items()}


@pytest.fixture(scope="session")
def flat_file(tmp_path_factory, ref_vit_b_state) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "sam_random_vit_b.pth"
    torch.save(ref_vit_b_state, path)
    return path


def meta_state(arch: str, image_size: int = 1024) -> dict[str, torch.Tensor]:
    """Shape-only state dict of our own model (no memory is allocated)."""
    with torch.device("meta"):
        return build_sam(arch, image_size).state_dict()


def assert_same_weights(model, state) -> None:
    loaded = model.state_dict()
    for key in COMPARED:
        assert torch.equal(loaded[key], state[key]), key
    assert not any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers()))


# --- loading the supported layouts ---------------------------------------------------


def test_official_flat_checkpoint_loads_strictly(flat_file, ref_vit_b_state):
    model = load_model(flat_file, device="cpu")
    assert_same_weights(model, ref_vit_b_state)
    assert (model.arch, model.image_size, model.training) == ("vit_b", 1024, False)
    info = model.info
    assert (info.name, info.arch, info.preprocess) == ("sam_random_vit_b", "vit_b", "sam")
    assert info.source == str(flat_file)
    assert info.sha256 == hashlib.sha256(flat_file.read_bytes()).hexdigest()
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_loads_straight_onto_cuda(flat_file, ref_vit_b_state):
    model = load_model(flat_file, device="cuda")
    assert all(p.device.type == "cuda" for p in model.parameters())
    assert torch.equal(model.image_encoder.pos_embed.cpu(), ref_vit_b_state[COMPARED[0]])


def test_micro_sam_nesting_loads(tmp_path, ref_vit_b_state):
    path = tmp_path / "best.pt"
    torch.save({
        "model_state": {"sam." + k: v for k, v in ref_vit_b_state.items()},
        "decoder_state": {"base.conv.weight": torch.ones(4, 4), "out_conv.bias": torch.zeros(1)},
        "optimizer_state": {"state": {}, "param_groups": [{"lr": 1e-5}]},
        "epoch": 7,
    }, path)
    state = read_checkpoint(path)
    assert state.layout == "model_state" and set(state) == set(ref_vit_b_state)
    model = load_model(str(path), device="cpu", preprocess="medsam")
    assert_same_weights(model, ref_vit_b_state)
    assert model.info.preprocess == "medsam" and model.info.name == "best"


def test_own_config_format_carries_config(tmp_path, ref_vit_b_state):
    path = tmp_path / "ours.pt"
    config = {"arch": "vit_b", "image_size": 1024, "preprocess": "medsam", "name": "mri_v1"}
    torch.save({"model": ref_vit_b_state, "config": config}, path)
    state = read_checkpoint(path)
    assert state.config == config and state.layout == "model"
    model = load_model(path, device="cpu")
    assert_same_weights(model, ref_vit_b_state)
    assert (model.info.name, model.info.preprocess) == ("mri_v1", "medsam")


def test_wrapped_prefixed_state_dict_is_unwrapped(tmp_path):
    state = {"module." + k: v for k, v in meta_state("vit_b").items()}
    # meta tensors cannot be saved; shapes survive as zero-stride views of one value
    state = {k: torch.zeros((), dtype=v.dtype).expand(v.shape) for k, v in state.items()}
    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"lr": 1e-4}}, path)
    read = read_checkpoint(path)
    assert read.layout == "state_dict" and "image_encoder.pos_embed" in read
    assert path.stat().st_size < 2_000_000
    assert detect_architecture(read) == ("vit_b", 1024)


def test_safetensors_with_config(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    state = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in meta_state("vit_b", 256).items()}
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_file(state, str(path), metadata={"config": json.dumps({"name": "x"})})
    read = read_checkpoint(path)
    assert read.layout == "safetensors" and read.config == {"name": "x"}
    assert detect_architecture(read) == ("vit_b", 256)


def test_path_load_recognises_registry_file(tmp_path, flat_file, ref_vit_b_state, monkeypatch):
    md5 = hashlib.md5(flat_file.read_bytes()).hexdigest()
    spec = registry.ModelSpec("test_med", "vit_b", "http://127.0.0.1:9/x", "test_med.pth",
                              f"md5:{md5}", preprocess="medsam")
    monkeypatch.setitem(registry.REGISTRY, "test_med", spec)
    model = load_model(flat_file, device="cpu")
    assert (model.info.name, model.info.preprocess) == ("test_med", "medsam")


def test_path_load_takes_the_stop_level_from_config_or_registry(tmp_path, flat_file, monkeypatch):
    # a file loaded by path used to get SAM's 0.8 even when it was a registry model with its own level
    md5 = hashlib.md5(flat_file.read_bytes()).hexdigest()
    spec = registry.ModelSpec("test_low", "vit_b", "http://127.0.0.1:9/x", "test_low.pth", f"md5:{md5}",
                              stop_iou=0.4)
    monkeypatch.setitem(registry.REGISTRY, "test_low", spec)
    assert load_model(flat_file, device="cpu").info.stop_iou == 0.4
    model = build_sam("vit_t", 512)
    own = tmp_path / "own.pt"
    torch.save({"model": model.state_dict(), "config": {"image_size": 512, "stop_iou": 0.55}}, own)
    assert load_model(own, device="cpu").info.stop_iou == 0.55
    plain = tmp_path / "plain.pt"
    torch.save({"model": model.state_dict(), "config": {"image_size": 512}}, plain)
    assert load_model(plain, device="cpu").info.stop_iou == 0.8
    torch.save({"model": model.state_dict(), "config": {"image_size": 512, "stop_iou": "high"}}, plain)
    with pytest.raises(ValueError, match="stop_iou='high'; expected a number between 0 and 1"):
        load_model(plain, device="cpu")


def test_vit_t_reference_weights_load(tmp_path):
    from reference_models import reference_sam

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = reference_sam("vit_t", seed=1).state_dict()
    assert detect_architecture(state) == ("vit_t", 1024)
    assert detect_architecture(state, config={"image_size": 512}) == ("vit_t", 512)
    path = tmp_path / "mobile_sam_random.pt"
    torch.save(state, path)
    model = load_model(path, device="cpu")
    assert model.arch == "vit_t"
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in list(state)[::40])
    # TinyViT's attention-bias index buffers are not in checkpoints; they must be real
    assert not any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers()))


def test_vit_t_is_built_once_without_memory_and_gets_real_index_buffers(tmp_path, monkeypatch):
    import napari_segany.weights.load as weights
    from napari_segany.model.tiny_vit import offset_index

    path = tmp_path / "vit_t_512.pt"
    torch.save({"model": build_sam("vit_t", 512).state_dict(), "config": {"image_size": 512}}, path)
    built = []
    monkeypatch.setattr(weights, "build_sam", lambda *a: built.append(a) or build_sam(*a))
    model = load_model(path, device="cpu")
    assert built == [("vit_t", 512)]  # on the meta device; no second, randomly initialised build
    idx = model.image_encoder.layers[1].blocks[0].attn.attention_bias_idxs
    assert idx.device.type == "cpu" and torch.equal(idx, offset_index(7))


# --- detection without real memory -----------------------------------------------------


@pytest.mark.parametrize(("arch", "size"), [("vit_l", 1024), ("vit_h", 1024), ("vit_b", 512)])
def test_detect_architecture_from_shapes(arch, size):
    assert detect_architecture(meta_state(arch, size)) == (arch, size)


def test_detect_rejects_config_disagreement():
    state = meta_state("vit_h")
    with pytest.raises(ValueError, match="config says arch='vit_l'"):
        detect_architecture(state, config={"arch": "vit_l"})
    with pytest.raises(ValueError, match="config says image_size=512"):
        detect_architecture(state, config={"image_size": 512})


def test_unknown_architectures_are_explained():
    state = meta_state("vit_b")
    odd = dict(state, **{"image_encoder.pos_embed": torch.empty(1, 64, 64, 512, device="meta")})
    with pytest.raises(ValueError, match="embedding width is 512"):
        detect_architecture(odd)
    shallow = {k: v for k, v in state.items() if not k.startswith("image_encoder.blocks.11.")}
    with pytest.raises(ValueError, match="11 blocks"):
        detect_architecture(shallow)
    encoder_only = {k: v for k, v in state.items() if k.startswith("image_encoder.")}
    with pytest.raises(ValueError, match="encoder-only"):
        detect_architecture(encoder_only)
    with pytest.raises(ValueError, match="match no known architecture") as err:
        detect_architecture({"backbone.conv1.weight": torch.empty(3), "fc.bias": torch.empty(2)})
    assert "Found 2 keys: backbone.conv1.weight, fc.bias" in str(err.value)
    assert "image_encoder.pos_embed" in str(err.value) and "vit_t" in str(err.value)
    with pytest.raises(ValueError, match="SAM 2"):
        detect_architecture({"image_encoder.trunk.pos_embed": torch.empty(1)})


def test_file_without_sam_weights(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(2, 3), "fc.bias": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="contains no Segment Anything weights.*Found 2 keys"):
        read_checkpoint(path)


# --- strict loading -------------------------------------------------------------------


def test_strict_load_names_missing_unexpected_and_misshapen(ref_vit_b_state):
    missing = dict(ref_vit_b_state)
    del missing["mask_decoder.iou_token.weight"]
    with pytest.raises(ValueError, match=r"1 missing \(e.g. mask_decoder.iou_token.weight\)"):
        model_from_state_dict(missing, arch="vit_b", image_size=1024)
    extra = dict(ref_vit_b_state, **{"mask_decoder.hf_token.weight": torch.zeros(1, 256)})
    with pytest.raises(ValueError, match=r"1 unexpected \(e.g. mask_decoder.hf_token.weight\)"):
        model_from_state_dict(extra)
    bad = dict(ref_vit_b_state, **{"mask_decoder.iou_token.weight": torch.zeros(2, 256)})
    with pytest.raises(ValueError, match="size mismatch for mask_decoder.iou_token.weight"):
        model_from_state_dict(bad)


# --- unsafe, missing and damaged files ---------------------------------------------------


class _Payload:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


class _Command:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_pickled_code_is_refused_and_never_runs(tmp_path, writer):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    obj = {"image_encoder.pos_embed": torch.zeros(1), "hook": _Payload(marker)}
    if writer == "torch.save":
        torch.save(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj))
    for load in (read_checkpoint, lambda p: load_model(p, device="cpu")):
        with pytest.raises(ValueError, match="not a plain weights file; refusing to unpickle code") as err:
            load(path)
        assert "weights_only" not in str(err.value) and "likely succeed" not in str(err.value)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_pickle_that_would_run_a_command_gets_our_sentence_only(tmp_path):
    """The one message that must never point to the unsafe path (torch's advice to pass
    weights_only=False), whatever torch's wording."""
    marker = tmp_path / "ran"
    for protocol in (0, 2, 4):
        path = tmp_path / f"evil{protocol}.pth"
        path.write_bytes(pickle.dumps({"w": _Command(f"touch {marker}")}, protocol=protocol))
        with pytest.raises(ValueError) as err:
            read_checkpoint(path)
        text = str(err.value)
        assert "refusing to unpickle" in text and "weights_only" not in text and "likely succeed" not in text
    assert not marker.exists()


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(FileNotFoundError, match="No checkpoint file at"):
        read_checkpoint(tmp_path / "absent.pth")
    with pytest.raises(ValueError, match="No checkpoint file at .*Registry names: segany_vit_t_512, vit_b"):
        load_model(str(tmp_path / "absent.pth"), device="cpu")
    with pytest.raises(ValueError, match="'vit_q' is neither a registry name.*vit_b_lm"):
        load_model("vit_q", device="cpu")
    with pytest.raises(ValueError, match="is a folder"):
        load_model(tmp_path, device="cpu")


def test_garbage_and_truncated_files(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00not a checkpoint" * 100)
    with pytest.raises(ValueError, match="not a PyTorch checkpoint|damaged or incomplete"):
        read_checkpoint(junk)
    good = tmp_path / "small.pth"
    torch.save({"image_encoder.pos_embed": torch.zeros(1000)}, good)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="damaged or incomplete"):
        read_checkpoint(cut)
    with pytest.raises(ValueError, match="holds a list"):
        torch.save([torch.zeros(1)], good)
        read_checkpoint(good)


# --- devices ------------------------------------------------------------------------------


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="Unknown device 'gpu0'"):
        resolve_device("gpu0")
    with pytest.raises(TypeError):
        resolve_device(0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="use device='cpu'"):
            resolve_device("cuda")
    else:
        with pytest.raises(ValueError, match="does not exist"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    with pytest.raises(ValueError, match="preprocess must be one of"):
        load_model("vit_b", preprocess="imagenet")


def test_nan_weights_are_refused_with_the_key(tmp_path, tiny_model_path):
    """Such a checkpoint loaded without a word and every score was NaN."""
    state = torch.load(tiny_model_path, weights_only=True)
    key = next(k for k, v in state.items() if v.is_floating_point() and "mask_decoder" in k)
    state[key] = state[key].clone()
    state[key].view(-1)[0] = float("nan")
    path = tmp_path / "diverged.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=f"{key}.*NaN or infinite"):
        load_model(path, device="cpu")
