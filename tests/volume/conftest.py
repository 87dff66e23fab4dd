"""Fixtures for the volume tests: the real 3D nuclei stack and the stand-in predictor."""

from __future__ import annotations

import pytest

from standin import StandInPredictor


@pytest.fixture(scope="session")
def nuclei3d():
    from napari_segany.sample_data import load_sample

    return load_sample("nuclei3d"), load_sample("nuclei3d_labels")


@pytest.fixture
def standin(nuclei3d):
    def make(volume=None, truth=None, **kwargs):
        v, t = nuclei3d
        return StandInPredictor(v if volume is None else volume, t if truth is None else truth, **kwargs)

    return make
