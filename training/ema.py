"""An exponential moving average of the weights during training (Polyak averaging).

One step of the recipe sees one image, so the weights at the end carry the
noise of the last few hundred images, and an average often scores better
than the last weights. (Not in run 13, training/HISTORY.md: with decay 0.998 the
average scored 0.554 against the last weights' 0.568 on held-out scenes; the
shipped recipe does not use it.) The average is kept beside the model and never
feeds back into training: the trained weights are exactly those of a run
without it.
"""

from __future__ import annotations

import copy

import torch


class WeightAverage:
    """``decay``: the average's memory, about ``1 / (1 - decay)`` steps. The effective decay
    starts small (``(1 + n) / (10 + n)`` after ``n`` updates), so early weights are forgotten fast."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"the average's decay must be in (0, 1), got {decay}")
        self.decay, self.updates = float(decay), 0
        trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in trained]
        self.params = [p.detach() for _, p in trained]  # the optimiser updates these in place
        self.average = [p.clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.average, self.params, 1.0 - d)
        self.updates += 1

    def averaged_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """A copy of ``model`` holding the averaged weights (its buffers, e.g. BatchNorm
        statistics, are the model's: measure them again for the new weights)."""
        out = copy.deepcopy(model)
        params = dict(out.named_parameters())
        with torch.no_grad():
            for n, a in zip(self.names, self.average):
                params[n].copy_(a)
        return out
