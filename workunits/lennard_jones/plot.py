"""A small plot of isotherms, pressure against density, as a PNG from the standard library."""

from __future__ import annotations

import struct
import zlib

WIDTH, HEIGHT = 480, 320
LEFT, RIGHT, TOP, BOTTOM = 40, 20, 20, 30  # margins around the plot's frame
WHITE, FRAME, ZERO = b"\xff\xff\xff", b"\x40\x40\x40", b"\xc8\xc8\xc8"
COLD, HOT = (40, 90, 200), (210, 50, 40)  # the lowest temperature blue, the highest red


class Canvas:
    """RGB pixels, (0, 0) at the top left."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(WHITE * (width * height))

    def dot(self, x: int, y: int, colour: bytes) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            at = 3 * (y * self.width + x)
            self.pixels[at : at + 3] = colour

    def line(self, start: tuple[int, int], end: tuple[int, int], colour: bytes) -> None:
        (x0, y0), (x1, y1) = start, end
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for k in range(steps + 1):
            self.dot(round(x0 + (x1 - x0) * k / steps), round(y0 + (y1 - y0) * k / steps), colour)

    def square(self, x: int, y: int, half: int, colour: bytes) -> None:
        for dy in range(-half, half + 1):
            for dx in range(-half, half + 1):
                self.dot(x + dx, y + dy, colour)

    def png(self) -> bytes:
        def chunk(kind: bytes, body: bytes) -> bytes:
            return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

        row = 3 * self.width
        raw = b"".join(b"\x00" + self.pixels[y * row : (y + 1) * row] for y in range(self.height))
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)  # 8-bit RGB
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b"")
        )


def _span(values: list[float], default: tuple[float, float]) -> tuple[float, float]:
    if not values:
        return default
    low, high = min(values), max(values)
    pad = 0.05 * (high - low) if high > low else 0.05 * max(abs(low), 1.0)
    return low - pad, high + pad


def colour(index: int, count: int) -> bytes:
    t = index / (count - 1) if count > 1 else 0.0
    return bytes(round(c + (h - c) * t) for c, h in zip(COLD, HOT))


def isotherms_png(planned: list[tuple[float, float]], measured: list[tuple[float, float, float]]) -> bytes:
    """``planned``: every (temperature, density) of the batch, which fix the frame and the
    colours; ``measured``: the (temperature, density, pressure) points done so far."""
    canvas = Canvas(WIDTH, HEIGHT)
    x_low, x_high = _span([d for _, d in planned] + [d for _, d, _ in measured], (0.0, 1.0))
    y_low, y_high = _span([0.0] + [p for _, _, p in measured], (0.0, 1.0))
    right, bottom = WIDTH - RIGHT, HEIGHT - BOTTOM

    def at(density: float, pressure: float) -> tuple[int, int]:
        x = LEFT + (density - x_low) / (x_high - x_low) * (right - LEFT)
        return round(x), round(bottom - (pressure - y_low) / (y_high - y_low) * (bottom - TOP))

    zero = at(x_low, 0.0)[1]
    canvas.line((LEFT, zero), (right, zero), ZERO)
    for a, b in (((LEFT, TOP), (right, TOP)), ((right, TOP), (right, bottom))):
        canvas.line(a, b, FRAME)
    for a, b in (((LEFT, bottom), (right, bottom)), ((LEFT, TOP), (LEFT, bottom))):
        canvas.line(a, b, FRAME)
    for density in sorted({d for _, d in planned}):
        x = at(density, 0.0)[0]
        canvas.line((x, bottom), (x, bottom + 4), FRAME)  # a tick at every density of the sweep
    temperatures = sorted({t for t, _ in planned} | {t for t, _, _ in measured})
    for index, temperature in enumerate(temperatures):
        ink = colour(index, len(temperatures))
        points = sorted(at(d, p) for t, d, p in measured if t == temperature)
        for start, end in zip(points, points[1:]):
            canvas.line(start, end, ink)
        for x, y in points:
            canvas.square(x, y, 2, ink)
    return canvas.png()
