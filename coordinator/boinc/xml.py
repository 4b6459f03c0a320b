"""BOINC's XML, read safely and written plainly (docs/boinc.md).

Everything a BOINC client sends is untrusted: ``parse`` refuses a body over its cap, any DTD or
entity (defusedxml: no billion laughs, no external entities) and nesting deeper than
MAX_DEPTH, with an ``XmlRefused`` that says which. ``text``, ``number`` and ``integer`` read one
child's text with its own bounds. Small replies are built with ElementTree; the scheduler's
reply, on the hot path, with ``Writer``. Both escape every value.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from io import BytesIO
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

MAX_DEPTH = 16  # a scheduler request nests five deep; far more is an attack
MAX_TEXT = 4096


class XmlRefused(ValueError):
    """A body that is not XML we read; the message says why, for the client's event log."""


def parse(body: bytes, *, max_bytes: int) -> ET.Element:
    """The root element of ``body``, or XmlRefused."""
    if len(body) > max_bytes:
        raise XmlRefused(f"the request is over {max_bytes} bytes")
    root: ET.Element | None = None
    try:
        depth = 0
        for event, node in iterparse(BytesIO(body), events=("start", "end"), forbid_dtd=True):
            depth += 1 if event == "start" else -1
            root = node if root is None else root
            if depth > MAX_DEPTH:
                raise XmlRefused(f"the XML nests deeper than {MAX_DEPTH} elements")
    except DefusedXmlException as error:
        raise XmlRefused(f"DTDs and entities are not accepted ({type(error).__name__})") from None
    except ET.ParseError as error:
        raise XmlRefused(f"the XML is not well-formed ({error})") from None
    if root is None:
        raise XmlRefused("the request is empty")
    return root


def text(element: ET.Element | None, name: str, *, default: str = "", max_length: int = MAX_TEXT) -> str:
    """The stripped text of the child ``name``; XmlRefused when it is longer than ``max_length``."""
    child = element.find(name) if element is not None else None
    if child is None:
        return default
    value = "".join(child.itertext()).strip()
    if len(value) > max_length:
        raise XmlRefused(f"<{name}> is longer than {max_length} characters")
    return value


def number(element: ET.Element | None, name: str, *, default: float = 0.0, low: float, high: float) -> float:
    """A finite number in [low, high] from the child ``name``."""
    raw = text(element, name, max_length=64)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise XmlRefused(f"<{name}> is not a number") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise XmlRefused(f"<{name}> must be between {low:g} and {high:g}")
    return value


def integer(element: ET.Element | None, name: str, *, default: int = 0, low: int, high: int) -> int:
    raw = text(element, name, max_length=32)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise XmlRefused(f"<{name}> is not a whole number") from None
    if not low <= value <= high:
        raise XmlRefused(f"<{name}> must be between {low} and {high}")
    return value


def element(tag: str, *children: ET.Element | None, **values: object) -> ET.Element:
    """``<tag>`` holding one child element per keyword (``add``), then ``children``."""
    node = ET.Element(tag)
    add(node, **values)
    node.extend(child for child in children if child is not None)
    return node


def add(parent: ET.Element, **values: object) -> ET.Element:
    """Append one child element per keyword to ``parent``: None or False leaves it out, True
    makes an empty flag element such as ``<executable/>``, a float has six decimals."""
    for name, value in values.items():
        if value is None or value is False:
            continue
        child = ET.SubElement(parent, name)
        if value is not True:
            child.text = f"{value:.6f}" if isinstance(value, float) else str(value)
    return parent


def render(root: ET.Element) -> bytes:
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=False) + b"\n"


def error_reply(code: int, message: str) -> bytes:
    """BOINC's web RPC error (``xml_error`` in html/inc/util_basic.inc)."""
    return render(element("error", error_num=code, error_msg=message))


class Writer:
    """XML written straight to text, indented as ElementTree would: several times faster than
    building a tree, for the scheduler's reply (hundreds of elements, one per task field).
    Tags are ours; every value is escaped."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.depth = 0

    def open(self, tag: str) -> Writer:
        self.parts.append(f"{'  ' * self.depth}<{tag}>\n")
        self.depth += 1
        return self

    def close(self, tag: str) -> Writer:
        self.depth -= 1
        self.parts.append(f"{'  ' * self.depth}</{tag}>\n")
        return self

    def add(self, **values: object) -> Writer:
        """One child element per keyword, as ``add`` makes them: None or False leaves it out,
        True makes an empty flag element, a float has six decimals."""
        indent = "  " * self.depth
        for name, value in values.items():
            if value is None or value is False:
                continue
            if value is True:
                self.parts.append(f"{indent}<{name} />\n")
                continue
            shown = f"{value:.6f}" if isinstance(value, float) else escape(str(value))
            self.parts.append(f"{indent}<{name}>{shown}</{name}>\n")
        return self

    def attributed(self, tag: str, value: str, **attributes: str) -> Writer:
        """One element with attributes and text, such as ``<message priority="low">``."""
        said = "".join(f' {name}="{escape(text, {chr(34): "&quot;"})}"' for name, text in attributes.items())
        self.parts.append(f"{'  ' * self.depth}<{tag}{said}>{escape(value)}</{tag}>\n")
        return self

    def render(self) -> bytes:
        return "".join(self.parts).encode()
