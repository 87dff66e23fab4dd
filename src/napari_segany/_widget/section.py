"""A section of the dock that opens and closes under a header button, for content whose height
changes while it is open (texts that arrive, rows that come and go): it is shown or hidden, so the
dock's layout gives it the height its wrapped texts need at the dock's width. (superqt's
QCollapsible fixes the height when it opens, which cuts off what is added later.)"""

from __future__ import annotations

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QSizePolicy, QToolButton, QVBoxLayout, QWidget


class Section(QWidget):
    """``title`` on a header button, ``content()`` below it, hidden until the button is clicked.
    Emits ``toggled(bool)`` when the user opens or closes it."""

    toggled = Signal(bool)

    def __init__(self, title: str, parent=None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._button = QToolButton()
        self._button.setText(title)
        self._button.setCheckable(True)
        self._button.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self._button.setArrowType(Qt.RightArrow)
        self._button.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self._button.setStyleSheet("QToolButton { border: none; font-weight: bold; }")
        layout.addWidget(self._button)
        self._content = QWidget()
        self._content.setVisible(False)
        layout.addWidget(self._content)
        self._button.toggled.connect(self._show)

    def toggleButton(self) -> QToolButton:  # noqa: N802 (as superqt's QCollapsible)
        return self._button

    def content(self) -> QWidget:
        return self._content

    def isExpanded(self) -> bool:  # noqa: N802
        return self._button.isChecked()

    def expand(self) -> None:
        self._button.setChecked(True)

    def collapse(self) -> None:
        self._button.setChecked(False)

    def _show(self, on: bool) -> None:
        self._button.setArrowType(Qt.DownArrow if on else Qt.RightArrow)
        self._content.setVisible(on)
        self.toggled.emit(on)
