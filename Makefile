# Quickstart targets: `make demo` (main job on the sample data) and `make test`.
# Both set up everything they need on a fresh Debian machine.

VENV   ?= .venv
PY     := $(VENV)/bin/python
# torchvision is needed only by the reference implementation used in the
# parity tests; this pair installs from the machine's local package store.
TORCH  ?= torch==2.14.1 torchvision==0.29.1
MODEL  ?=
OUT    ?= out

.PHONY: setup system-deps demo test bench docs clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[napari,test,docs,cluster]"
	@# an older venv of ours may still hold PyQt5, which qtpy would pick first: napari's
	@# support for it is deprecated, and the tests run on the binding users get (PyQt6)
	$(PY) -m pip uninstall -q -y pyqt5 pyqt5-qt5 pyqt5-sip 2>/dev/null || true
	touch $@

setup: $(VENV)/.installed

# Xvfb, Mesa and Qt's xcb libraries for the napari GUI tests (needs root).
system-deps:
	@missing=$$(for p in $$(cat tools/apt-packages.txt); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

demo: setup
	@mkdir -p $(OUT)
	$(VENV)/bin/napari-segany segment sample_data/nuclei2d.tif $(if $(MODEL),--model $(MODEL)) \
		--point 346,70 -o $(OUT)/nuclei2d_object.tif --overlay $(OUT)/nuclei2d_overlay.png --overwrite

test: setup system-deps
	xvfb-run -a -s "-screen 0 1600x1200x24" $(PY) -m pytest -q -p no:cacheprovider

bench: setup
	$(PY) benchmarks/bench_speed.py

# The documentation site (mkdocs.yml) into site/; warnings are errors, as in tests/test_docs.py.
docs: setup
	$(PY) -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache site
