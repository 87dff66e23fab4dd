"""The documentation site builds with warnings as errors, and the README's links lead somewhere.

``mkdocs build --strict`` fails on a broken link or anchor between pages, a page missing from the
nav, and a docstring that mkdocstrings cannot read (e.g. a parameter the signature does not have),
so docs and docstrings cannot drift apart unnoticed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _missing_docs_tools() -> list[str]:
    return [name for name in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")
            if _find(name) is None]


def _find(name: str):
    try:
        return importlib.util.find_spec(name)
    except ModuleNotFoundError:  # the parent package is missing
        return None


def test_site_builds_strict(tmp_path):
    missing = _missing_docs_tools()
    if missing:
        pytest.skip(f"the docs tools are not installed ({', '.join(missing)}): pip install -e '.[docs]' "
                    "(make setup installs them)")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # material's notice about its successor is not ours
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "reference" / "index.html").is_file()


def test_readme_links_and_images_exist():
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    assert targets, "the README links to nothing"
    broken = [t for t in targets if not t.startswith(("http://", "https://", "#"))
              and not (ROOT / t.split("#", 1)[0]).exists()]
    assert not broken, f"README.md links to files that do not exist: {broken}"


def test_readme_is_a_front_page():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150, (
        "README.md is a front page (at most 150 lines); put details in docs/")
