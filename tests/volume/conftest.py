"""Fixtures for the volume tests: the stand-in predictor (the real 3D nuclei are in the top conftest)."""

from __future__ import annotations

import pytest

from standin import StandInPredictor


@pytest.fixture
def standin(nuclei3d):
    def make(volume=None, truth=None, **kwargs):
        v, t = nuclei3d
        return StandInPredictor(v if volume is None else volume, t if truth is None else truth, **kwargs)

    return make
