"""``napari-segany finetune`` on crops of the real nuclei, through main(): pairs from a folder as
``napari-segany auto`` names them (``<name>_labels.tif``), a time estimate before starting, the
report, the model saved among the user's own models by name, nothing saved (and said so) when it did
not improve, and Ctrl+C that stops the training and keeps the best weights so far under the usual
rule. The runs use a small random-weight vit_t (256 px, fast: they test the command, not the
training, which tests/test_finetune.py and tests/test_user_models.py run with the included model).
Bad command lines are in the corpus (tests/test_bad_inputs_cli.py)."""

from __future__ import annotations

import json

import pytest
import tifffile

import napari_segany as sg
from napari_segany.cli import finetune as cli_finetune
from napari_segany.cli import main
from napari_segany.weights.checkpoint import read_checkpoint
from reference_models import save_fast_vit_t

CORNERS = [(0, 0), (0, 200), (200, 0), (300, 300)]


@pytest.fixture(scope="module")
def folder(nuclei2d, tmp_path_factory):
    """Four 96 x 96 crops of the real nuclei and their labels, named as `napari-segany auto` writes
    them, an image without labels and the table auto writes beside them."""
    image, labels = nuclei2d
    where = tmp_path_factory.mktemp("pairs")
    for i, (r, c) in enumerate(CORNERS):
        tifffile.imwrite(where / f"crop{i}.tif", image[r:r + 96, c:c + 96])
        tifffile.imwrite(where / f"crop{i}_labels.tif", labels[r:r + 96, c:c + 96])
    tifffile.imwrite(where / "unlabelled.tif", image[:64, :64])
    (where / "crop0_objects.csv").write_text("id,area\n")
    return where


@pytest.fixture(scope="module")
def fast_model(tmp_path_factory):
    return save_fast_vit_t(tmp_path_factory.mktemp("fast") / "fast_vit_t.pth")


def _pairs(folder) -> list[str]:
    return [a for i in range(len(CORNERS)) for a in ("--pair", str(folder / f"crop{i}.tif"),
                                                     str(folder / f"crop{i}_labels.tif"))]


def test_a_folder_of_auto_outputs_trains_a_model_saved_by_name(folder, fast_model, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEGANY_CACHE", str(tmp_path))
    rc = main(["finetune", str(folder), "-m", str(fast_model), "-o", "lab-nuclei", "--steps", "2",
               "--max-minutes", "0", "--save", "always"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "left out 1 image without <name>_labels.tif: unlabelled.tif" in err
    assert "4 pairs, starting from fast_vit_t: 4 pictures (1 held out: by image)" in err
    assert "2 steps of about" in err and "min in all" in err and "Ctrl+C" in err  # the estimate, first
    assert "Held-out mean IoU on" in out and "2 steps (all steps done)" in out
    path = tmp_path / "user-models" / "lab-nuclei.pt"
    assert path.is_file() and f"Saved 'lab-nuclei' to {path}" in out and "use it with --model lab-nuclei" in out
    provenance = read_checkpoint(path).config["finetune"]
    assert provenance["data"]["files"] == [f"crop{i}.tif" for i in range(4)]
    assert provenance["base"]["name"] == "fast_vit_t" and provenance["steps"] == 2
    assert ("although it did not improve" in out) == (not provenance["improved"])

    assert main(["models"]) == 0  # listed among the user's own models, loadable by name
    listed = capsys.readouterr().out.split("your own models:")[1]
    assert "lab-nuclei" in listed and "fast_vit_t" in listed
    assert sg.load_model("lab-nuclei", device="cpu").info.name == "lab-nuclei"


def test_not_improved_says_so_and_saves_nothing(folder, fast_model, tmp_path, capsys):
    out_path = tmp_path / "same.pt"
    images = [str(folder / f"crop{i}.tif") for i in range(len(CORNERS))]  # labels found beside them
    rc = main(["finetune", *images, "-m", str(fast_model), "-o", str(out_path), "--steps", "0", "--max-minutes", "0"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "NOT improved" in out and "Nothing was saved" in out and "fast_vit_t" in out
    assert "+0.000" in out  # no step: the same scores before and after
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_stops_the_training_and_keeps_the_best_weights_so_far(folder, fast_model, tmp_path, monkeypatch,
                                                                     capsys):
    real = cli_finetune.Progress.__call__

    def interrupt_at_step_3(self, stage, done, total):
        real(self, stage, done, total)
        if stage == "training" and done == 3:
            raise KeyboardInterrupt  # what Ctrl+C raises in the main thread

    monkeypatch.setattr(cli_finetune.Progress, "__call__", interrupt_at_step_3)
    out_path = tmp_path / "stopped.pt"
    rc = main(["finetune", *_pairs(folder), "-m", str(fast_model), "-o", str(out_path), "--steps", "50",
               "--max-minutes", "0", "--lr", "1e-3", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    summary = json.loads(out)
    report = summary["report"]
    assert summary["estimate"]["steps"] == 50 and summary["estimate"]["examples"] == 4
    assert report["stopped"] == "interrupted" and report["steps"] == 3
    assert report["after"]["objects"] == report["before"]["objects"] > 0  # the kept weights were checked
    assert 0 <= report["best_step"] <= 3
    # saved only when the best weights so far beat the starting ones on the held-out objects
    assert summary["improved"] == (report["after"]["mean"] > report["before"]["mean"])
    assert out_path.is_file() == summary["improved"] == (summary["saved"] == str(out_path))
    if summary["improved"]:
        assert sg.load_model(out_path, device="cpu").info.name == "stopped"


def test_ctrl_c_before_the_training_saves_nothing(folder, fast_model, tmp_path, monkeypatch, capsys):
    def interrupt(self, stage, done, total):
        if stage == "embedding" and done == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli_finetune.Progress, "__call__", interrupt)
    rc = main(["finetune", *_pairs(folder), "-m", str(fast_model), "-o", str(tmp_path / "none.pt"), "--steps", "5"])
    out, err = capsys.readouterr()
    assert rc == 130 and out == ""
    assert "interrupted before the result was checked: nothing was saved" in err
    assert list(tmp_path.iterdir()) == []
