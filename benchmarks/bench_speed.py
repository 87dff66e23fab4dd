"""Speed and accuracy of our predictor against the reference, side by side.

Same as ``napari-segany bench``; see ``--help``. Example:
    python benchmarks/bench_speed.py --arch vit_b,vit_t --json benchmarks/results/speed_cpu.json
"""

import sys

from napari_segany.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
