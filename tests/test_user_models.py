"""The user's own models: a fine-tuned model saved by name lands in ``<cache>/user-models/``,
``load_model(name)`` finds it (registry names first), ``napari-segany models`` lists it with its base
model, date and held-out scores read from the file, and names that would be taken for a registry
model, an existing model of the user's or a path are refused with a sentence before any work."""

from __future__ import annotations

import os

import pytest
import torch

import napari_segany as sg
from napari_segany.cli import main
from napari_segany.weights import user_models


@pytest.fixture(scope="module")
def own_cache(tmp_path_factory):
    """A private cache folder (``$SEGANY_CACHE``) for this module's models."""
    folder = tmp_path_factory.mktemp("cache")
    before = os.environ.get("SEGANY_CACHE")
    os.environ["SEGANY_CACHE"] = str(folder)
    yield folder
    if before is None:
        del os.environ["SEGANY_CACHE"]
    else:
        os.environ["SEGANY_CACHE"] = before


@pytest.fixture(scope="module")
def crops(nuclei2d):
    image, labels = nuclei2d
    return [(image[r:r + 96, c:c + 96], labels[r:r + 96, c:c + 96]) for r, c in [(0, 0), (0, 200), (200, 0),
                                                                                 (300, 300)]]


@pytest.fixture(scope="module")
def mine(own_cache, shipped_model, crops):
    """One short run (one step: its weights, not its gain, are what is saved and listed) saved by name,
    whatever its score, with overwrite=True over an older model of that name."""
    older = own_cache / "user-models" / "my-nuclei.pt"
    older.parent.mkdir()
    older.write_bytes(b"an older model")
    return sg.finetune(shipped_model, crops, "my-nuclei", steps=1, max_minutes=None, save="always", seed=1,
                       overwrite=True)


def test_a_model_saved_by_name_goes_into_the_user_models_folder(own_cache, mine):
    path = own_cache / "user-models" / "my-nuclei.pt"
    assert mine.path == path and path.is_file()
    assert path.read_bytes()[:2] == b"PK"  # the older file was replaced (overwrite=True) by a torch zip file
    assert [p.name for p in path.parent.iterdir()] == ["my-nuclei.pt"]  # no temporary file left


def test_load_model_finds_it_by_name(mine, shipped_model):
    model = sg.load_model("my-nuclei", device="cpu")
    assert model.info.name == "my-nuclei" and model.info.source == str(mine.path)
    assert model.info.sha256 == mine.trained.info.sha256
    for key, value in mine.trained.state_dict().items():  # the weights trained, not the base model's
        assert torch.equal(model.state_dict()[key], value), key
    assert sg.load_model(str(mine.path), device="cpu").info.sha256 == model.info.sha256  # its path works too


def test_the_listing_reads_base_date_and_scores_from_the_file(mine, shipped_model):
    (found,) = user_models.list_models()
    report = mine.report
    assert found.name == "my-nuclei" and found.arch == shipped_model.info.arch
    assert found.base == shipped_model.info.name and found.date[:2] == "20" and not found.problem
    assert found.before == pytest.approx(report.before["mean"]) and found.after == pytest.approx(report.after["mean"])
    assert found.objects == report.after["objects"] > 0
    assert f"{report.before['mean']:.3f} -> {report.after['mean']:.3f}" in found.describe()


def test_models_command_lists_them_in_their_own_section(mine, shipped_model, capsys, own_cache):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    registry_part, own_part = out.split("your own models:")
    assert "segany_vit_t_512" in registry_part and "my-nuclei" not in registry_part
    assert str(own_cache / "user-models") in own_part
    line = next(ln for ln in own_part.splitlines() if ln.startswith("my-nuclei"))
    assert shipped_model.info.name in line and f"{mine.report.after['mean']:.3f}" in line


def test_a_damaged_file_is_listed_as_such(own_cache, mine):
    bad = own_cache / "user-models" / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    try:
        listed = {m.name: m for m in user_models.list_models()}
        assert listed["broken"].problem and "unreadable" in listed["broken"].describe()
        assert not listed["my-nuclei"].problem
        with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
            sg.load_model("broken")
    finally:
        bad.unlink()


@pytest.mark.parametrize("name, error, words", [
    ("vit_b", ValueError, "registry model"),
    ("segany_vit_t_512", ValueError, "registry model"),
    ("my-nuclei", FileExistsError, "already have a model called"),
    ("model.txt", ValueError, "letters, digits"),
])
def test_names_that_cannot_be_used_are_refused_before_any_work(mine, crops, name, error, words):
    listed = sorted(p.name for p in mine.path.parent.iterdir())
    with pytest.raises(error, match=words):
        sg.finetune(None, crops, name, steps=1, max_minutes=None)
    assert sorted(p.name for p in mine.path.parent.iterdir()) == listed


def test_names_and_paths_are_told_apart():
    assert user_models.is_name("my-nuclei_2") and not user_models.is_name("my.pt")
    assert not user_models.is_name("sub/model") and not user_models.is_name("-x") and not user_models.is_name("")
    assert user_models.find("vit_b") is None  # a registry name is never one of yours


def test_an_unknown_name_lists_the_users_models(mine):
    with pytest.raises(ValueError, match="your own models: my-nuclei"):
        sg.load_model("my-nucle")


def test_no_models_yet_says_how_to_make_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEGANY_CACHE", str(tmp_path))
    assert user_models.list_models() == []
    assert main(["models"]) == 0
    assert "none yet" in capsys.readouterr().out and not (tmp_path / "user-models").exists()
