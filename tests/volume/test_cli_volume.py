"""`napari-segany embed` and `napari-segany propagate` on a small real volume."""

from __future__ import annotations

import json

import numpy as np
import tifffile

from napari_segany.cli import main


def test_embed_then_propagate_from_the_cache(nuclei3d, tiny_model_path, tmp_path, capsys):
    vol = tmp_path / "vol.tif"
    tifffile.imwrite(vol, nuclei3d[0][29:31, 64:160, 64:160])
    model = ["--model", str(tiny_model_path), "--device", "cpu"]
    assert main(["embed", str(vol), "--cache", str(tmp_path / "c"), *model]) == 0
    assert "2 computed" in capsys.readouterr().out
    out = tmp_path / "out.tif"
    args = ["propagate", str(vol), "-o", str(out), "--slice", "1", "--point", "48,48", "--cache",
            str(tmp_path / "c"), "--iou-threshold", "-1", "--area-change", "1e9", "--json", *model]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["embedded"] == 0 and report["cached"] == 2  # everything came from the cache
    assert report["crops"] == 0  # 96 px slices are never zoomed (this model's frame is 1024 px)
    labels = tifffile.imread(out)
    assert labels.shape == (2, 96, 96) and labels.dtype == np.uint16
    assert main(args) == 1  # exists: refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main(["propagate", str(vol), "-o", str(tmp_path / "x.tif"), "--slice", "5", "--point", "4,4",
                 *model]) == 1
    assert "outside the volume" in capsys.readouterr().err


def test_embed_into_a_cache_it_cannot_write_says_so(nuclei3d, tiny_model_path, tmp_path, capsys):
    """embed exists to fill the cache: a cache folder that cannot be written ends it with a sentence
    naming the folder (the API carries on in memory instead)."""
    vol = tmp_path / "vol.tif"
    tifffile.imwrite(vol, nuclei3d[0][29:31, 64:96, 64:96])
    rc = main(["embed", str(vol), "--cache", "/proc/segany-embeddings", "--model", str(tiny_model_path)])
    err = capsys.readouterr().err
    assert rc == 1 and "/proc/segany-embeddings" in err and "another --cache folder" in err
    assert "Traceback" not in err
