"""``python -m napari_segany.cli``: the same as the ``napari-segany`` command."""

import sys

from . import main

sys.exit(main())
