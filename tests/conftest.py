import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("SEGANY_CACHE", str(Path(__file__).parent / ".cache-never-used"))
# precision "auto" measures each new model once per machine; the suite's answers are compared with each
# other and with the reference, so they are pinned to fp32 here (tests/test_precision.py tests "auto")
os.environ.setdefault("SEGANY_PRECISION", "fp32")

from reference_models import reference_sam, save_checkpoint  # noqa: E402


@pytest.fixture(scope="session")
def reference_checkpoint(tmp_path_factory):
    """(reference model, checkpoint path) per architecture, built once a session."""
    made = {}

    def get(arch: str):
        if arch not in made:
            model = reference_sam(arch)
            path = save_checkpoint(model, tmp_path_factory.mktemp(arch) / f"random_{arch}.pth")
            made[arch] = (model, path)
        return made[arch]

    return get


@pytest.fixture(scope="session")
def nuclei2d():
    """The real 2D nuclei image (uint16) and its 125 labels."""
    from napari_segany.sample_data import load_sample

    return load_sample("nuclei2d"), load_sample("nuclei2d_labels")


@pytest.fixture(scope="session")
def nuclei3d():
    """The real 3D nuclei stack (60 x 256 x 256, uint16) and its 20 labels."""
    from napari_segany.sample_data import load_sample

    return load_sample("nuclei3d"), load_sample("nuclei3d_labels")


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """A MobileSAM-architecture (vit_t) model with seeded random weights, saved
    in the official flat checkpoint schema: small and fast, no download."""
    import torch

    from napari_segany.model import build_sam
    from napari_segany.cli.benchmark import randomise_weights

    torch.manual_seed(0)
    model = build_sam("vit_t")
    randomise_weights(model, seed=0)
    path = tmp_path_factory.mktemp("tiny") / "random_vit_t.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_model_path):
    from napari_segany import load_model

    return load_model(tiny_model_path, device="cpu")


@pytest.fixture(scope="session")
def shipped_model():
    """The included model, loaded as a user loads it, on the CPU with at most 2 threads."""
    import torch

    from napari_segany.weights.load import load_model

    torch.set_num_threads(min(2, torch.get_num_threads()))
    return load_model(device="cpu")
