"""Observable model state and two-way widget binding (the shape of krita-ai-diffusion's properties).

A model declares its state as `Property` class attributes; the class gets a `<name>_changed` signal for
each, emitted with the new value only when the value really changes. `bind()` ties a property to a
widget both ways, so a panel holds layout and the state lives in a model that a test can drive.

    class MixingModel(Observable):
        degree = Property(1.0, float)        # MixingModel.degree_changed: Signal(object)

    bind(model, "degree", slider, to_widget=lambda d: round(d * 100), to_model=lambda v: v / 100)

No feedback loops: a binding writes the widget only when it shows something else, and ignores the
widget's change signals while it does; a model ignores a value equal to the one it holds. So a value
the widget cannot show exactly (0.3333 in a 3-decimal spin box) stays exact in the model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any, Optional

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSlider,
    QComboBox,
    QDoubleSpinBox,
    QLabel,
    QLineEdit,
    QSpinBox,
    QWidget,
)


def _same(old, new) -> bool:
    """Equal and of one type: 1 → 1.0 or 0 → False is a change a widget may need to show."""
    return type(old) is type(new) and old == new


class Property:
    """A model value with a `<name>_changed` signal (made by ObservableType). `convert` normalises what
    is assigned (e.g. `float`) before it is compared with the value held."""

    def __init__(self, default: Any = None, convert: Optional[Callable[[Any], Any]] = None) -> None:
        self.default, self.convert = default, convert
        self.name = ""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        try:
            return obj.__dict__[self.name]
        except KeyError:  # first read: each instance gets its own copy of a mutable default
            value = obj.__dict__[self.name] = copy.copy(self.default)
            return value

    def __set__(self, obj, value) -> None:
        if self.convert is not None:
            value = self.convert(value)
        if _same(self.__get__(obj), value):
            return
        obj.__dict__[self.name] = value
        obj._property_changed(self.name, value)
        getattr(obj, f"{self.name}_changed").emit(value)


class ObservableType(type(QObject)):
    """Adds `<name>_changed = Signal(object)` for each Property in a class body (one declared by hand,
    e.g. with a narrower type, is kept). Signals must exist when Qt builds the class's meta-object."""

    def __new__(mcs, name, bases, namespace, **kw):
        for key, value in list(namespace.items()):
            if isinstance(value, Property):
                namespace.setdefault(f"{key}_changed", Signal(object))
        return super().__new__(mcs, name, bases, namespace, **kw)


class Observable(QObject, metaclass=ObservableType):
    """Base of the GUI models: a QObject whose Property attributes are observable."""

    def _property_changed(self, name: str, value) -> None:
        """A property took a new value; its signal follows. Where a model keeps its own rules (derived
        state, a recipe), so that observers of the signal see them applied."""


def observable_fields(datacls, name: Optional[str] = None) -> type:
    """An Observable base class with one Property per field of the dataclass `datacls` (its defaults):
    a model that mirrors an engine config stays complete when the config gains a field."""

    def default(f):
        return f.default_factory() if f.default is MISSING else f.default

    namespace = {f.name: Property(default(f)) for f in fields(datacls)}
    namespace["__module__"] = __name__
    return ObservableType(name or f"Observable{datacls.__name__}", (Observable,), namespace)


# --- binding ------------------------------------------------------------------------------------
_NOTHING = object()  # what an empty combo box holds: nothing to store


def _accessors(widget: QWidget, data: bool):
    """(read, write, user-change signal or None) of the widget's value."""
    if isinstance(widget, QComboBox):
        if data:
            def select(value) -> None:
                i = widget.findData(value)
                if i >= 0:
                    widget.setCurrentIndex(i)

            def current():
                return widget.currentData() if widget.currentIndex() >= 0 else _NOTHING

            return current, select, widget.currentIndexChanged
        return widget.currentText, widget.setCurrentText, widget.currentTextChanged
    if isinstance(widget, (QSpinBox, QDoubleSpinBox, QAbstractSlider)):
        return widget.value, widget.setValue, widget.valueChanged
    if isinstance(widget, QLineEdit):
        return widget.text, widget.setText, widget.textChanged
    if isinstance(widget, QAbstractButton):
        return widget.isChecked, widget.setChecked, widget.toggled
    if isinstance(widget, QLabel):
        return widget.text, widget.setText, None
    raise TypeError(f"bind: no value to bind on a {type(widget).__name__}")


def _identity(value):
    return value


class Binding(QObject):
    """One property ↔ one widget. A child of the widget: it goes, and its connections with it, when the
    widget is deleted (rows of a list rebuilt), so a model never writes to a dead widget."""

    def __init__(self, model: QObject, name: str, widget: QWidget, read: Optional[Callable], write, signal,
                 to_widget: Callable = _identity, to_model: Optional[Callable] = _identity) -> None:
        super().__init__(widget)
        self.model, self.name = model, name
        self._read, self._write, self._to_widget, self._to_model = read, write, to_widget, to_model
        self._showing = False
        getattr(model, f"{name}_changed").connect(self.show)
        if signal is not None and to_model is not None:
            signal.connect(self.store)
        self.show(getattr(model, name))

    def show(self, value) -> None:
        """Model → widget (only when the widget shows something else: a QLineEdit's cursor stays put)."""
        shown = self._to_widget(value)
        if self._read is not None and _same(self._read(), shown):
            return
        self._showing = True
        try:
            self._write(shown)
        finally:
            self._showing = False

    def store(self, *_) -> None:
        """Widget → model, unless the change is the one `show` is making."""
        if self._showing:
            return
        value = self._read()
        if value is not _NOTHING:
            setattr(self.model, self.name, self._to_model(value))


def bind(model: QObject, name: str, widget: QWidget, *, to_widget: Callable = _identity,
         to_model: Callable = _identity, one_way: bool = False) -> Binding:
    """Tie `model.<name>` to the widget's value both ways: a spin box's or slider's value, a line
    edit's text, a check box's or other checkable button's state, a combo box's current text (see
    `bind_combo` for its item data); a label shows it (one way). `to_widget`/`to_model` convert
    (a slider in percent, 0 shown for None); `one_way` leaves the model alone when the widget changes."""
    read, write, signal = _accessors(widget, data=False)
    return Binding(model, name, widget, read, write, signal, to_widget, None if one_way else to_model)


def bind_combo(model: QObject, name: str, combo: QComboBox, *, one_way: bool = False) -> Binding:
    """Tie `model.<name>` to the item data of the combo's current item both ways (a value with no item
    leaves the combo where it is)."""
    read, write, signal = _accessors(combo, data=True)
    return Binding(model, name, combo, read, write, signal, _identity, None if one_way else _identity)


def follow(model: QObject, name: str, widget: QWidget, show: Callable[[Any], None]) -> Binding:
    """Call `show(value)` now and on every change of `model.<name>`, for as long as `widget` lives: a
    one-way view that is not a widget value (a colour icon, a visibility, a tooltip)."""
    return Binding(model, name, widget, None, show, None, _identity, None)


__all__ = ["Binding", "Observable", "ObservableType", "Property", "bind", "bind_combo", "follow",
           "observable_fields"]
