"""What ``precision="auto"`` means on this CPU, for this model: measured once and remembered.

CPU flags do not tell whether bf16 pays: it is about twice as fast as fp32 on CPUs with AMX or
AVX-512 bf16 under some torch builds, and slower than fp32 on others. So "auto" runs the model's
encoder and decoder on a test pattern in fp32 and in bf16 and takes bf16 only when it was faster
by at least :data:`MIN_GAIN` *and* its decoder logits stay within :data:`TOLERANCE` (relative L2
error) of fp32's. The answer is stored in ``precision.json`` in the cache folder, keyed by the CPU,
the torch version, the thread count and the model, so each model is measured once per machine.

``SEGANY_PRECISION=fp32`` (or bf16, fp16) in the environment makes "auto" mean that mode without
measuring, e.g. to keep a cluster's runs identical across node types.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .userdata import cache_root, write_json_atomically

#: Largest relative L2 difference of bf16 decoder logits from fp32 logits that "auto" accepts.
TOLERANCE = 0.02
#: bf16 must take at most this fraction of fp32's time; a smaller gain is within timing noise.
MIN_GAIN = 0.9
ENV_OVERRIDE = "SEGANY_PRECISION"
CHOICES_FILE = "precision.json"


@dataclass(frozen=True)
class Choice:
    """A measured decision: the precision and the evidence behind it."""

    precision: str
    fp32_s: float  # one encoder + decoder pass in fp32, seconds
    bf16_s: float
    error: float  # relative L2 difference of the bf16 logits from the fp32 logits
    measured: str  # when (ISO date)

    def describe(self) -> str:
        why = (f"bf16 took {self.bf16_s:.2f} s against {self.fp32_s:.2f} s in fp32, logits within "
               f"{100 * self.error:.2f} %")
        return f"{self.precision} ({why}; measured {self.measured})"


def decide(fp32_s: float, bf16_s: float, error: float) -> str:
    """bf16 when it is clearly faster and close enough to fp32; else fp32."""
    return "bf16" if bf16_s <= MIN_GAIN * fp32_s and error <= TOLERANCE else "fp32"


def choose(model, model_id: str, *, cache_file: Path | None = None, report=None) -> str:
    """The precision "auto" means for ``model`` on the CPU: from the environment override, the
    remembered measurement, or a new measurement (a few encoder passes; ``report(text)`` is told
    first). A cache that cannot be read is measured again; one that cannot be written is warned
    about and the answer still used."""
    override = os.environ.get(ENV_OVERRIDE, "").strip()
    if override:
        if override not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"{ENV_OVERRIDE}={override!r} is not a precision: set it to fp32, bf16 or fp16, "
                             "or unset it to let 'auto' measure")
        return override
    path = cache_file or cache_root() / CHOICES_FILE
    key = machine_key(model_id)
    choices = _read(path)
    if key in choices:
        return choices[key]["precision"]
    if report is not None:
        report("Measuring whether bf16 is faster than fp32 on this CPU (once per model)…")
    choice = measure(model)
    choices[key] = asdict(choice)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomically(path, choices)
    except OSError as err:
        warnings.warn(f"Could not remember the precision measurement in {path} ({err}); it will be measured "
                      f"again next time. Set SEGANY_CACHE to a writable folder to keep it.", stacklevel=2)
    return choice.precision


def machine_key(model_id: str) -> str:
    """What the measurement depends on: CPU model and flags, torch version, threads, the model."""
    cpu = _cpu_description()
    text = "|".join([cpu, torch.__version__, str(torch.get_num_threads()), model_id])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def measure(model) -> Choice:
    """Time one encoder + decoder pass in fp32 and in bf16 on a test pattern (the best of three
    after a warm-up, or a single pass where fp32 takes over two seconds), and compare the logits."""
    x, points = _test_input(model)
    first_fp32, logits_fp32 = _timed_pass(model, x, points, "fp32")  # also the warm-up
    first_bf16, logits_bf16 = _timed_pass(model, x, points, "bf16")
    fp32_s, bf16_s = first_fp32, first_bf16
    if first_fp32 < 2.0:
        fp32_s = min(_timed_pass(model, x, points, "fp32")[0] for _ in range(3))
        bf16_s = min(_timed_pass(model, x, points, "bf16")[0] for _ in range(3))
    diff = torch.linalg.vector_norm(logits_bf16 - logits_fp32)
    error = float(diff / torch.linalg.vector_norm(logits_fp32).clamp_min(1e-12))
    return Choice(decide(fp32_s, bf16_s, error), round(fp32_s, 4), round(bf16_s, 4), round(error, 5),
                  time.strftime("%Y-%m-%d"))


def _test_input(model):
    """A smooth pattern of bright disks on a gradient with mild noise, normalised like an image,
    and a click on the middle of one disk (model input coordinates)."""
    size = model.image_size
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = 0.3 * xx + 0.2 * yy
    for cy, cx, r in rng.uniform((0.15, 0.15, 0.04), (0.85, 0.85, 0.12), size=(12, 3)):
        img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    img += rng.normal(0, 0.05, img.shape)
    img = (img - img.mean()) / img.std()
    x = torch.from_numpy(np.repeat(img[None, None], 3, axis=1).astype(np.float32))
    device = next(model.parameters()).device
    click = torch.tensor([[[size * 0.5, size * 0.5]]], dtype=torch.float32, device=device)
    return x.to(device), (click, torch.ones(1, 1, dtype=torch.int64, device=device))


def _timed_pass(model, x, points, precision: str) -> tuple[float, torch.Tensor]:
    device = x.device
    start = time.perf_counter()
    cast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    with torch.inference_mode(), cast:
        features = model.image_encoder(x)
        sparse, dense = model.prompt_encoder(points, None, None)
        logits, _ = model.mask_decoder(features, model.prompt_encoder.get_dense_pe(), sparse, dense, True)
    return time.perf_counter() - start, logits.float()


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict) and v.get("precision") in ("fp32", "bf16")}


@functools.lru_cache(maxsize=1)
def _cpu_description() -> str:
    """The CPU's model name and instruction-set flags (Linux), else what platform reports."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
        name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
        flags = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("flags")), "")
        return f"{name}|{hashlib.sha256(' '.join(sorted(flags.split())).encode()).hexdigest()[:16]}"
    except OSError:
        return f"{platform.processor()}|{platform.machine()}"
