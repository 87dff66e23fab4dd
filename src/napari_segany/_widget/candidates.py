"""The candidate picker: every candidate mask as a thumbnail with its predicted IoU.

All thumbnails show the same crop (around the union of the candidates) so they
can be compared at a glance; the chosen one is outlined. Click or press 1/2/3.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QEvent, QSize, Qt, Signal
from qtpy.QtGui import QIcon, QImage, QPixmap
from qtpy.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QToolButton, QVBoxLayout, QWidget

THUMB = 88
MASK_RGB = np.array([0, 229, 255], dtype=np.float32)


def crop_box(masks: np.ndarray, margin: float = 0.35, min_side: int = 24) -> tuple[int, int, int, int]:
    """(r0, c0, r1, c1) around the union of (K, H, W) ``masks``, square-ish, in bounds."""
    h, w = masks.shape[-2:]
    union = masks.any(axis=0)
    if not union.any():
        return 0, 0, h, w
    rows, cols = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
    cr, cc = (rows[0] + rows[-1]) / 2, (cols[0] + cols[-1]) / 2
    side = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    side = int(min(max(side * (1 + 2 * margin), min_side), max(h, w)))
    r0 = int(np.clip(round(cr - side / 2), 0, max(h - side, 0)))
    c0 = int(np.clip(round(cc - side / 2), 0, max(w - side, 0)))
    return r0, c0, min(r0 + side, h), min(c0 + side, w)


def thumbnail(image: np.ndarray, mask: np.ndarray, box, window: tuple[float, float], tint=MASK_RGB) -> np.ndarray:
    """RGB uint8 picture of ``image`` (H, W[, C]) inside ``box`` with ``mask`` tinted (``tint``: RGB 0-255)."""
    r0, c0, r1, c1 = box
    crop = np.asarray(image[r0:r1, c0:c1], dtype=np.float32)
    if crop.ndim == 3:
        crop = crop[..., :3] if crop.shape[-1] >= 3 else crop[..., :1]
    else:
        crop = crop[..., None]
    lo, hi = window
    unit = np.clip((crop - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    rgb = np.broadcast_to(unit, unit.shape[:2] + (3,)) * 255.0
    m = mask[r0:r1, c0:c1, None]
    out = np.where(m, 0.45 * rgb + 0.55 * np.asarray(tint, np.float32), rgb)
    return np.ascontiguousarray(out.astype(np.uint8))


def to_pixmap(rgb: np.ndarray, size: int = THUMB) -> QPixmap:
    h, w = rgb.shape[:2]
    img = QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).copy()
    return QPixmap.fromImage(img).scaled(size, size, Qt.KeepAspectRatio, Qt.FastTransformation)


class CandidatePicker(QWidget):
    """K thumbnail buttons; emits ``chosen(index)`` when the user picks one."""

    chosen = Signal(int)

    def __init__(self, parent=None, max_candidates: int = 3) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.title = QLabel("Candidates: add a point or a box to see them")
        layout.addWidget(self.title)
        row = QHBoxLayout()
        self.buttons: list[QToolButton] = []
        for i in range(max_candidates):
            b = QToolButton(self)
            b.setCheckable(True)
            b.setToolButtonStyle(Qt.ToolButtonTextUnderIcon)
            b.setIconSize(QSize(THUMB, THUMB))
            policy = QSizePolicy(QSizePolicy.Fixed, QSizePolicy.Fixed)
            policy.setRetainSizeWhenHidden(True)  # the picker keeps its size with fewer candidates
            b.setSizePolicy(policy)
            b.setStyleSheet("QToolButton { border: 3px solid transparent; padding: 2px; }"
                            "QToolButton:checked { border: 3px solid #00e5ff; }")
            b.setToolTip(f"Candidate {i + 1} (key {i + 1})")
            b.clicked.connect(lambda _=False, i=i: self.chosen.emit(i))
            b.setVisible(False)
            row.addWidget(b)
            self.buttons.append(b)
        row.addStretch(1)
        layout.addLayout(row)
        self._fix_sizes()

    def _fix_sizes(self) -> None:
        """Give every button the room its thumbnail and the longest score text need, and the
        picker its full height from the start: showing candidates never resizes the dock."""
        blank = QPixmap(THUMB, THUMB)
        blank.fill(Qt.transparent)
        for i, b in enumerate(self.buttons):
            text, icon = b.text(), b.icon()
            b.setIcon(QIcon(blank))
            b.setMinimumSize(0, 0)
            b.setMaximumSize(16777215, 16777215)
            hints = []
            for d in "0123456789":  # the widest score text (digits need not be equally wide)
                b.setText(f"{i + 1}: IoU -{d}.{d}{d}")
                hints.append(b.sizeHint())
            b.setFixedSize(max(h.width() for h in hints), max(h.height() for h in hints))
            b.setText(text)
            b.setIcon(icon)
        self.setFixedHeight(self.layout().sizeHint().height())

    def changeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().changeEvent(event)
        if event.type() in (QEvent.StyleChange, QEvent.FontChange) and getattr(self, "buttons", None):
            self._fix_sizes()  # napari's theme (font, padding) arrives when the widget is docked

    def shown(self) -> int:
        """Number of thumbnails currently shown."""
        return sum(not b.isHidden() for b in self.buttons)

    def set_candidates(self, image: np.ndarray | None, masks: np.ndarray | None, scores, window, chosen: int,
                       tint=MASK_RGB) -> None:
        """Show (K, H, W) ``masks`` over ``image``, tinted in ``tint`` (RGB 0-255, the preview's
        colour); None clears the picker."""
        if masks is None or image is None or len(masks) == 0:
            for b in self.buttons:
                b.setVisible(False)
                b.setIcon(QIcon())
            self.title.setText("Candidates: add a point or a box to see them")
            return
        box = crop_box(masks)
        k = min(len(masks), len(self.buttons))
        for i, b in enumerate(self.buttons):
            if i < k:
                b.setIcon(QIcon(to_pixmap(thumbnail(image, masks[i], box, window, tint))))
                b.setText(f"{i + 1}: IoU {float(scores[i]):.2f}")
                b.setVisible(True)
            else:
                b.setVisible(False)
        self.title.setText(f"Candidates ({k}): click or press 1-{k}" if k > 1 else "Candidate")
        self.set_chosen(chosen)

    def set_chosen(self, index: int) -> None:
        for i, b in enumerate(self.buttons):
            b.setChecked(i == index)
