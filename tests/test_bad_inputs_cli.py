"""The bad-input corpus, command line (issue 27 item 6): each case is one careless or unlucky
``napari-segany`` command. A wrong command line exits 2 (argparse's usage error naming the option);
a job refused exits 1 with one sentence on stderr that names the option or file. No file changes:
inputs, outputs, the model file and the cache stay as they were, and nothing is printed as done.

Cases that must be refused before the model is loaded pass ``-m {absent}``, a checkpoint that does
not exist: had the command gone on to load the model, the error would be about that file instead.
The API's corpus is in tests/test_bad_inputs_api.py."""

from __future__ import annotations

import pytest

from napari_segany.cli import main
from bad_input_helpers import assert_sentence, assert_unchanged, case, make_inputs, snapshot

NO_DISPLAY = {"DISPLAY": None, "WAYLAND_DISPLAY": None, "QT_QPA_PLATFORM": None}
CACHE = {"SEGANY_CACHE": "{cache}"}


def cli(case_id: str, argv: str, rc: int, *names: str, env: dict | None = None, xfail: str | None = None):
    return case(case_id, argv, rc, names, env or {}, xfail=xfail)


S = "segment {img} -o {out} -m {absent}"  # refused before the model loads
ST = "segment {img} -o {out} -m {model}"  # refused with the model loaded
P = "propagate {vol} -o {out} -m {absent} --slice 1"
E = "embed {vol} --cache {cache} -m {absent}"
A = "auto {img} -d {tmp}/out -m {absent}"
F = "finetune -o {tmp}/mine.pt -m {absent}"
CLI = [
    # prompts
    cli("point-negative-row", S + " --point -5,10", 1, "--point -5,10", "outside"),
    cli("point-negative-col-with-equals", S + " --point=10,-5", 1, "--point 10,-5", "outside"),
    cli("point-semicolon", S + " --point 1;2", 2, "--point"),
    cli("point-fraction-label", S + " --point 3,4,0.5", 2, "--point", "0.5"),
    cli("point-label-2", S + " --point 3,4,2", 2, "--point"),
    cli("point-nan", S + " --point nan,5", 2, "--point", "nan"),
    cli("point-inf", S + " --point 5,inf", 2, "--point", "inf"),
    cli("point-one-number", S + " --point 5", 2, "--point"),
    cli("point-four-numbers", S + " --point 1,2,1,4", 2, "--point"),
    cli("point-below-the-image", S + " --point 900,3", 1, "--point 900,3", "64 x 64"),
    cli("box-inverted", S + " --box 10,40,30,20", 2, "--box", "inverted"),
    cli("box-zero-area", S + " --box 10,10,10,40", 2, "--box"),
    cli("box-three-numbers", S + " --box 1,2,3", 2, "--box"),
    cli("box-nan", S + " --box 1,2,nan,40", 2, "--box"),
    cli("box-outside", S + " --box 100,100,120,120", 1, "--box", "outside"),
    cli("box-negative-inverted", S + " --box -5,-5,-10,-10", 2, "--box"),
    cli("no-prompt", S, 1, "--point", "--box"),
    cli("contrast-limits-reversed", S + " --point 5,5 --contrast-limits 500,100", 2, "--contrast-limits"),
    cli("contrast-limits-equal", S + " --point 5,5 --contrast-limits 100,100", 2, "--contrast-limits"),
    cli("contrast-limits-nan", S + " --point 5,5 --contrast-limits nan,100", 2, "--contrast-limits"),
    cli("contrast-limits-one", S + " --point 5,5 --contrast-limits 100", 2, "--contrast-limits"),
    cli("contrast-limits-negative-reversed", S + " --point 5,5 --contrast-limits -10,-20", 2, "--contrast-limits"),
    # other options of segment
    cli("label-id-0", S + " --point 5,5 --label-id 0", 1, "--label-id"),
    cli("label-id-70000", S + " --point 5,5 --label-id 70000", 1, "--label-id"),
    cli("label-id-text", S + " --point 5,5 --label-id seven", 2, "--label-id"),
    cli("label-id-fraction", S + " --point 5,5 --label-id 2.7", 2, "--label-id"),
    cli("views-3", S + " --point 5,5 --views 3", 2, "--views"),
    cli("candidate-5", S + " --point 5,5 --candidate 5", 2, "--candidate"),
    cli("precision-fp64", S + " --point 5,5 --precision fp64", 2, "--precision"),
    cli("regions-unknown", S + " --point 5,5 --regions some", 2, "--regions"),
    cli("crop-contrast-unknown", S + " --point 5,5 --crop-contrast loud", 2, "--crop-contrast"),
    cli("device-tpu", S + " --point 5,5 --device tpu", 1, "tpu"),
    cli("slice-on-2d", S + " --point 5,5 --slice 3", 1, "--slice"),
    cli("slice-out-of-range", "segment {vol} -o {out} -m {absent} --point 5,5 --slice 9", 1, "--slice 9"),
    cli("slice-negative", "segment {vol} -o {out} -m {absent} --point 5,5 --slice -1", 1, "--slice -1"),
    cli("slice-text", "segment {vol} -o {out} -m {absent} --point 5,5 --slice top", 2, "--slice"),
    cli("volume-without-slice", "segment {vol} -o {out} -m {absent} --point 5,5", 1, "--slice"),
    cli("channel-on-2d", S + " --point 5,5 --channel 1", 1, "--channel 1"),
    cli("channel-out-of-range", "segment {rgb} -o {out} -m {absent} --point 5,5 --channel 5", 1, "--channel 5"),
    cli("channel-negative", "segment {rgb} -o {out} -m {absent} --point 5,5 --channel -4", 1, "--channel -4"),
    cli("channel-text", S + " --point 5,5 --channel red", 2, "--channel"),
    # outputs
    cli("output-exists", "segment {img} -o {existing} -m {absent} --point 5,5", 1, "existing.tif", "--overwrite"),
    cli("output-is-input", "segment {img} -o {img} -m {absent} --point 5,5 --overwrite", 1, "img.tif", "input"),
    cli("output-png-name", "segment {img} -o {tmp}/out.png -m {absent} --point 5,5", 1, "-o", ".tif"),
    cli("output-no-suffix", "segment {img} -o {tmp}/labels -m {absent} --point 5,5", 1, "-o", ".tif"),
    cli("output-parent-is-a-file", "segment {img} -o {a_file}/out.tif -m {absent} --point 5,5", 1, "-o", "a_file",
        "not a folder"),
    cli("output-is-a-folder", "segment {img} -o {folder_tif} -m {absent} --point 5,5 --overwrite", 1, "-o",
        "a_folder.tif", "folder"),
    cli("overlay-exists", S + " --point 5,5 --overlay {rgb}", 1, "rgb.png", "--overwrite"),
    cli("overlay-jpg-name", S + " --point 5,5 --overlay {tmp}/o.jpg", 1, "--overlay", ".png"),
    cli("overlay-is-input", "segment {rgb} -o {out} -m {absent} --point 5,5 --overlay {rgb} --overwrite", 1,
        "--overlay", "input"),
    cli("overlay-parent-is-a-file", S + " --point 5,5 --overlay {a_file}/o.png", 1, "--overlay", "a_file"),
    # input images
    cli("image-missing", "segment {tmp}/missing.tif -o {out} -m {absent} --point 5,5", 1, "missing.tif"),
    cli("image-is-a-folder", "segment {tmp} -o {out} -m {absent} --point 5,5", 1, "no image file"),
    cli("image-text-as-tif", "segment {text_tif} -o {out} -m {absent} --point 5,5", 1, "notes.tif"),
    cli("image-text-as-png", "segment {text_png} -o {out} -m {absent} --point 5,5", 1, "notes.png"),
    cli("image-empty-file", "segment {empty_tif} -o {out} -m {absent} --point 5,5", 1, "empty.tif"),
    cli("image-1d", "segment {line} -o {out} -m {absent} --point 5,5", 1, "line.tif", "(100,)"),
    cli("image-5d", "segment {five_d} -o {out} -m {absent} --point 5,5 --slice 0", 1, "five.tif", "(2, 2, 2, 16, 16)"),
    cli("image-all-nan", "segment {nan_img} -o {out} -m {model} --point 5,5", 1, "finite"),
    cli("image-complex", "segment {cplx} -o {out} -m {model} --point 5,5", 1, "complex"),
    # models
    cli("model-unknown-name", "segment {img} -o {out} -m vit_q --point 5,5", 1, "'vit_q'", "vit_b"),
    cli("model-a-folder", "segment {img} -o {out} -m {folder_pth} --point 5,5", 1, "a_folder.pth", "folder"),
    cli("model-truncated", "segment {img} -o {out} -m {trunc_pth} --point 5,5", 1, "truncated.pth"),
    cli("model-random-bytes", "segment {img} -o {out} -m {garbage_pth} --point 5,5", 1, "garbage.pth"),
    cli("model-empty-file", "segment {img} -o {out} -m {empty_pth} --point 5,5", 1, "empty.pth"),
    cli("model-an-image", "segment {img} -o {out} -m {img} --point 5,5", 1, "img.tif"),
    cli("model-missing", "segment {img} -o {out} -m {absent} --point 5,5", 1, "absent.pth"),
    cli("model-empty-name", "segment {img} -o {out} -m= --point 5,5", 1, "empty"),
    # the command line itself
    cli("segment-without-output", "segment {img} --point 5,5", 2, "-o"),
    cli("segment-unknown-option", S + " --point 5,5 --frobnicate", 2, "--frobnicate"),
    cli("no-command", "", 2, "COMMAND"),
    cli("unknown-command", "segmnt {img}", 2, "segmnt"),
    # propagate
    cli("propagate-spacing-negative", P + " --point 5,5 --spacing -1,1,1", 2, "--spacing", "-1,1,1"),
    cli("propagate-spacing-zero", P + " --point 5,5 --spacing 0,1,1", 2, "--spacing"),
    cli("propagate-spacing-two", P + " --point 5,5 --spacing 1,1", 2, "--spacing"),
    cli("propagate-spacing-nan", P + " --point 5,5 --spacing 1,nan,1", 2, "--spacing"),
    cli("propagate-spacing-inf", P + " --point 5,5 --spacing 1,1,inf", 2, "--spacing"),
    cli("propagate-iou-nan", P + " --point 5,5 --iou-threshold nan", 2, "--iou-threshold"),
    cli("propagate-iou-1.5", P + " --point 5,5 --iou-threshold 1.5", 2, "--iou-threshold"),
    cli("propagate-area-change-0.5", P + " --point 5,5 --area-change 0.5", 2, "--area-change"),
    cli("propagate-area-change-nan", P + " --point 5,5 --area-change nan", 2, "--area-change"),
    cli("propagate-slice-9", "propagate {vol} -o {out} -m {absent} --slice 9 --point 5,5", 1, "--slice 9"),
    cli("propagate-slice-negative", "propagate {vol} -o {out} -m {absent} --slice -1 --point 5,5", 1, "--slice -1"),
    cli("propagate-without-slice", "propagate {vol} -o {out} -m {absent} --point 5,5", 1, "--slice"),
    cli("propagate-two-volumes-one-output", "propagate {vol} {vol} -o {out} -m {absent} --slice 1 --point 5,5", 1,
        "-o", "--output-dir"),
    cli("propagate-many-with-prompts", "propagate {vol} -d {tmp} -m {absent} --point 5,5", 1, "seeds file",
        "--point"),
    cli("propagate-cluster-without-output-dir", "propagate {vol} -o {out} -m {absent} --slice 1 --point 5,5 "
        "--cluster local", 1, "--output-dir"),
    cli("propagate-many-without-seeds", "propagate {vol} -d {tmp} -m {absent}", 1, "no seeds file", "_seeds.tif"),
    cli("propagate-output-is-input", "propagate {vol} -o {vol} -m {absent} --slice 1 --point 5,5 --overwrite", 1,
        "vol.tif", "input"),
    cli("propagate-output-exists", "propagate {vol} -o {existing} -m {absent} --slice 1 --point 5,5", 1,
        "--overwrite"),
    cli("propagate-output-parent-is-a-file", "propagate {vol} -o {a_file}/o.tif -m {absent} --slice 1 --point 5,5",
        1, "a_file", "not a folder"),
    cli("propagate-2d-image", "propagate {img} -o {out} -m {absent} --slice 1 --point 5,5", 1, "img.tif", "segment"),
    cli("propagate-axis-5", P + " --point 5,5 --axis 5", 1, "--axis 5"),
    cli("propagate-channel-of-3d", P + " --point 5,5 --channel 1", 1, "--channel"),
    cli("propagate-label-id-0", P + " --point 5,5 --label-id 0", 1, "--label-id"),
    cli("propagate-no-prompt", P, 1, "--point", "--box"),
    cli("propagate-point-outside", P + " --point 5,500", 1, "--point 5,500", "outside"),
    cli("propagate-box-inverted", P + " --box 40,40,10,10", 2, "--box"),
    cli("propagate-volume-missing", "propagate {tmp}/none.tif -o {out} -m {absent} --slice 1 --point 5,5", 1,
        "none.tif"),
    cli("propagate-volume-text", "propagate {text_tif} -o {out} -m {absent} --slice 1 --point 5,5", 1, "notes.tif"),
    # embed
    cli("embed-2d-image", "embed {img} --cache {cache} -m {absent}", 1, "img.tif"),
    cli("embed-volume-missing", "embed {tmp}/none.tif --cache {cache} -m {absent}", 1, "none.tif"),
    cli("embed-cache-is-a-file", "embed {vol} --cache {a_file} -m {absent}", 1, "--cache", "a_file"),
    cli("embed-cache-under-a-file", "embed {vol} --cache {a_file}/c -m {absent}", 1, "--cache", "a_file"),
    cli("embed-axis-9", E + " --axis 9", 1, "--axis 9"),
    cli("embed-channel-of-3d", E + " --channel 0", 1, "--channel"),
    cli("embed-without-cache", "embed {vol} -m {absent}", 2, "--cache"),
    cli("embed-contrast-reversed", E + " --contrast-limits 9,1", 2, "--contrast-limits"),
    # auto (one input that fails is reported like a refused command: exit 1, nothing written)
    cli("auto-points-per-side-0", A + " --points-per-side 0", 2, "--points-per-side"),
    cli("auto-points-per-side-300", A + " --points-per-side 300", 2, "--points-per-side", "256"),
    cli("auto-points-per-side-fraction", A + " --points-per-side 2.5", 2, "--points-per-side"),
    cli("auto-object-size-1", A + " --object-size 1", 2, "--object-size", "2 pixels"),
    cli("auto-object-size-nan", A + " --object-size nan", 2, "--object-size"),
    cli("auto-min-iou-1.5", A + " --min-iou 1.5", 2, "--min-iou", "0 to 1"),
    cli("auto-min-stability-nan", A + " --min-stability nan", 2, "--min-stability"),
    cli("auto-nms-iou-negative", A + " --nms-iou -0.2", 2, "--nms-iou"),
    cli("auto-min-area-negative", A + " --min-area -1", 2, "--min-area"),
    cli("auto-without-output", "auto {img} -m {absent}", 2, "--output-dir", "-o"),
    cli("auto-output-and-output-dir", A + " -o {tmp}/o.tif", 2, "-o", "--output-dir"),
    cli("auto-input-missing", "auto {tmp}/missing.tif -d {tmp}/out -m {absent}", 1, "missing.tif"),
    cli("auto-pattern-matches-nothing", "auto {tmp}/*.jpg -d {tmp}/out -m {absent}", 1, "*.jpg", "pattern"),
    cli("auto-folder-without-images", "auto {tmp} -d {tmp}/out -m {absent}", 1, "holds no image files"),
    cli("auto-output-is-input", "auto {img} -o {img} -m {absent} --overwrite", 1, "img.tif", "never overwritten"),
    cli("auto-output-png-name", "auto {img} -o {tmp}/o.png -m {absent}", 1, "-o", ".tif"),
    cli("auto-output-dir-is-a-file", "auto {img} -d {a_file} -m {absent}", 1, "a_file", "not a folder"),
    cli("auto-o-with-two-inputs", "auto {img} {rgb} -o {tmp}/o.tif -m {absent}", 1, "-o", "--output-dir"),
    cli("auto-same-name-twice", "auto {text_tif} {text_png} -d {tmp}/out -m {absent}", 1, "notes.tif",
        "notes.png", "same name"),
    cli("auto-image-text", "auto {text_tif} -d {tmp}/out -m {absent}", 1, "notes.tif"),
    cli("auto-image-empty-file", "auto {empty_tif} -d {tmp}/out -m {absent}", 1, "empty.tif"),
    cli("auto-image-1d", "auto {line} -d {tmp}/out -m {absent}", 1, "line.tif", "(100,)"),
    cli("auto-image-5d", "auto {five_d} -d {tmp}/out -m {absent}", 1, "five.tif", "(2, 2, 2, 16, 16)"),
    cli("auto-image-all-nan", "auto {nan_img} -d {tmp}/out -m {model}", 1, "finite"),
    cli("auto-image-complex", "auto {cplx} -d {tmp}/out -m {model}", 1, "complex"),
    cli("auto-channel-on-2d", A + " --channel 1", 1, "--channel 1"),
    cli("auto-channel-out-of-range", "auto {rgb} -d {tmp}/out -m {absent} --channel 5", 1, "--channel 5"),
    cli("auto-volume-on-2d", A + " --volume", 1, "--volume"),
    cli("auto-volume-axis-5", "auto {vol} -d {tmp}/out -m {absent} --axis 5", 1, "--axis 5"),
    cli("auto-volume-channel-of-3d", "auto {vol} -d {tmp}/out -m {absent} --volume --channel 1", 1, "--channel 1"),
    cli("auto-existing-missing", A + " --existing {tmp}/none.tif", 1, "none.tif"),
    cli("auto-existing-wrong-shape", A + " --existing {vol}", 1, "--existing", "(4, 64, 64)"),
    cli("auto-existing-two-inputs", "auto {img} {rgb} -d {tmp}/out -m {absent} --existing {img}", 1, "--existing"),
    cli("auto-existing-is-output", "auto {img} -o {existing} -m {absent} --existing {existing} --overwrite", 1,
        "existing.tif", "never overwritten"),
    cli("auto-model-missing", A, 1, "absent.pth"),
    cli("auto-device-tpu", A + " --device tpu", 1, "tpu"),
    # models and download (the cache is a folder of the test)
    cli("models-import-missing", "models --import {tmp}/none.pth --name vit_t", 1, "none.pth", env=CACHE),
    cli("models-import-without-name", "models --import {garbage_pth}", 1, "--name", env=CACHE),
    cli("models-name-without-import", "models --name vit_t", 1, "--import", env=CACHE),
    cli("models-import-unknown-name", "models --import {garbage_pth} --name vit_q", 1, "'vit_q'", env=CACHE),
    cli("models-import-garbage", "models --import {garbage_pth} --name vit_t --no-verify", 1, "garbage.pth",
        env=CACHE),
    cli("models-import-wrong-file", "models --import {trunc_pth} --name vit_b", 1, "truncated.pth", env=CACHE),
    cli("download-unknown", "download vit_q", 1, "'vit_q'", "vit_b", env=CACHE),
    cli("download-empty-name", "download =", 1, "'='", env=CACHE),
    cli("download-cache-is-a-file", "download vit_b", 1, "a_file", env={"SEGANY_CACHE": "{a_file}"}),
    cli("download-without-name", "download", 2, "name"),
    # finetune (refused before the model loads)
    cli("finetune-no-pairs", F, 1, "--pair", "_labels.tif"),
    cli("finetune-image-missing", F + " --pair {tmp}/none.tif {img_labels}", 1, "none.tif"),
    cli("finetune-labels-missing", F + " --pair {img} {tmp}/none_labels.tif", 1, "none_labels.tif"),
    cli("finetune-image-without-labels", F + " {rgb}", 1, "rgb.png", "rgb_labels.tif", "--pair"),
    cli("finetune-labels-dir-missing", F + " {img} --labels-dir {tmp}/nowhere", 1, "--labels-dir", "nowhere"),
    cli("finetune-shapes-differ", F + " --pair {img} {small_labels}", 1, "img.tif", "small_labels.tif",
        "do not match"),
    cli("finetune-labels-not-whole-numbers", F + " --pair {img} {float_labels}", 1, "float_labels.tif",
        "whole-number"),
    cli("finetune-labels-empty", F + " --pair {img} {empty_labels}", 1, "empty_labels.tif", "no objects"),
    cli("finetune-image-text", F + " --pair {text_tif} {img_labels}", 1, "notes.tif"),
    cli("finetune-volume-axis-5", F + " --pair {vol} {vol_labels} --axis 5", 1, "--axis 5"),
    cli("finetune-output-exists", "finetune --pair {img} {img_labels} -o {existing_pt} -m {absent}", 1,
        "existing.pt", "--overwrite"),
    cli("finetune-output-txt", "finetune --pair {img} {img_labels} -o {tmp}/model.txt -m {absent}", 1,
        "model.txt", ".pt"),
    cli("finetune-output-a-folder", "finetune --pair {img} {img_labels} -o {folder_pth} -m {absent}", 1,
        "a_folder.pth", "folder"),
    cli("finetune-output-registry-name", "finetune --pair {img} {img_labels} -o vit_b -m {absent}", 1, "'vit_b'",
        "registry model", env=CACHE),
    cli("finetune-output-parent-is-a-file", "finetune --pair {img} {img_labels} -o {a_file}/m.pt -m {absent}", 1,
        "a_file", "not a folder"),
    cli("finetune-without-output", "finetune --pair {img} {img_labels} -m {absent}", 2, "-o"),
    cli("finetune-pair-one-file", "finetune --pair {img} -o {tmp}/m.pt -m {absent}", 2, "--pair"),
    cli("finetune-held-out-1", F + " --pair {img} {img_labels} --held-out 1", 2, "--held-out"),
    cli("finetune-max-minutes-negative", F + " --pair {img} {img_labels} --max-minutes -1", 2, "--max-minutes"),
    cli("finetune-no-limit-no-steps", F + " --pair {img} {img_labels} --max-minutes 0", 1, "--max-minutes 0",
        "--steps"),
    cli("finetune-steps-negative", F + " --pair {img} {img_labels} --steps -3", 2, "--steps"),
    cli("finetune-lr-0", F + " --pair {img} {img_labels} --lr 0", 2, "--lr"),
    cli("finetune-save-sometimes", F + " --pair {img} {img_labels} --save sometimes", 2, "--save"),
    cli("finetune-model-missing", F + " --pair {img} {img_labels}", 1, "absent.pth"),
    # bench (refused before anything is built or measured)
    cli("bench-arch-unknown", "bench --arch vit_q", 1, "--arch", "vit_q"),
    cli("bench-arch-empty", "bench --arch ,", 1, "--arch"),
    cli("bench-precisions-fp64", "bench --arch vit_t --precisions fp64", 1, "--precisions", "fp64"),
    cli("bench-repeats-0", "bench --arch vit_t --repeats 0", 2, "--repeats"),
    cli("bench-clicks-negative", "bench --arch vit_t --clicks -1", 2, "--clicks"),
    cli("bench-batch-negative", "bench --arch vit_t --batch -2", 2, "--batch"),
    cli("bench-json-parent-is-a-file", "bench --arch vit_t --json {a_file}/r.json", 1, "--json", "a_file"),
    cli("bench-json-is-a-folder", "bench --arch vit_t --json {tmp}", 1, "--json", "folder"),
    cli("bench-device-tpu", "bench --arch vit_t --device tpu", 1, "tpu"),
    # gui (without opening napari)
    cli("gui-without-display", "gui", 1, "DISPLAY", "xvfb-run", env=NO_DISPLAY),
    cli("gui-image-missing", "gui {tmp}/none.tif", 1, "none.tif", env=NO_DISPLAY),
    cli("gui-device-tpu", "gui --device tpu", 1, "tpu", env=NO_DISPLAY),
]


@pytest.fixture(scope="module")
def inputs(tiny_model_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-cli-inputs")
    return folder, make_inputs(folder, tiny_model_path)


@pytest.mark.parametrize("argv, rc, names, env", CLI)
def test_bad_command_is_refused(inputs, tiny_model_path, tmp_path, monkeypatch, capsys, argv, rc, names, env):
    folder, paths = inputs
    values = {k: str(v) for k, v in paths.items()}
    values.update(model=str(tiny_model_path), absent=str(tmp_path / "absent.pth"), out=str(tmp_path / "out.tif"),
                  tmp=str(tmp_path), cache=str(tmp_path / "cache"))
    for key, value in env.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value.format(**values))
    args = [a.format(**values) for a in argv.split()]
    before = snapshot(folder, tmp_path, tiny_model_path)
    if rc == 2:
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == 2
    else:
        assert main(args) == rc
    out, err = capsys.readouterr()
    assert out == "", "a refused command prints nothing as done"
    assert_sentence(err, *names)
    if "{absent}" in argv and "absent.pth" not in names:
        assert "absent.pth" not in err, "the command went on to load the model before refusing"
    assert_unchanged(before, snapshot(folder, tmp_path, tiny_model_path))
