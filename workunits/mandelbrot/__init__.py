"""The Mandelbrot set, computed in tiles and assembled into one PNG picture.

Each work unit is one tile of the picture: for every pixel, the number of iterations of
``z = z*z + c`` before ``|z| > 2`` (up to ``max_iterations``), written as one byte per
pixel after scaling. Additions and multiplications of IEEE doubles give the same bits
everywhere, so tiles compare bitwise. The assimilator colours the tiles and writes the
whole image as a PNG (zlib and struct from the standard library; no imaging package).

Parameters (JSON): ``{"width": 512, "height": 384, "tile": 128, "max_iterations": 200,
"center": [-0.6, 0.0], "span": 3.0}`` (span: the width of the view in the complex plane).
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

from workunits.interface import Checkpoint, Manifest

MANIFEST = Manifest(
    name="mandelbrot",
    version=4,  # 2: preview() of the picture so far; 3, 4: the bundled interface.py changed (wasm, wheels)
    title="Mandelbrot set, tile by tile",
    compare="bitwise",
    memory_bytes=64 * 1024 * 1024,
    fpops_per_unit=2e8,
    max_output_bytes=1024 * 1024,
    result_name="mandelbrot.png",
    example_parameters={
        "width": 1024,
        "height": 768,
        "tile": 128,
        "max_iterations": 500,
        "center": [-0.6, 0.0],
        "span": 3.0,
    },
)
HEADER = struct.Struct(">IIII")  # tile column, tile row, width, height: then one byte a pixel


def _number(parameters: dict[str, Any], key: str, low: float, high: float, whole: bool = True) -> Any:
    value = parameters.get(key)
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        kind = "a whole number" if whole else "a number"
        raise ValueError(f"{key} must be {kind} from {low:g} to {high:g}, not {value!r}")
    return value


def split(parameters: dict[str, Any]) -> Iterator[bytes]:
    """One unit per tile, row by row."""
    if not isinstance(parameters, dict):
        raise ValueError("the parameters must be a JSON object")
    unknown = set(parameters) - {"width", "height", "tile", "max_iterations", "center", "span"}
    if unknown:
        raise ValueError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
    width, height = _number(parameters, "width", 1, 16384), _number(parameters, "height", 1, 16384)
    tile = _number(parameters, "tile", 8, 1024)
    iterations = _number(parameters, "max_iterations", 1, 100_000)
    span = _number(parameters, "span", 1e-12, 10, whole=False)
    center = parameters.get("center", [-0.6, 0.0])
    if (
        not isinstance(center, list)
        or len(center) != 2
        or not all(isinstance(v, (int, float)) for v in center)
    ):
        raise ValueError("center must be a list of two numbers, [real, imaginary]")
    for row in range(0, height, tile):
        for column in range(0, width, tile):
            yield json.dumps(
                {
                    "x0": column,
                    "y0": row,
                    "w": min(tile, width - column),
                    "h": min(tile, height - row),
                    "width": width,
                    "height": height,
                    "max_iterations": iterations,
                    "center": [float(center[0]), float(center[1])],
                    "span": float(span),
                },
                sort_keys=True,
            ).encode()


def _escape_time(cr: float, ci: float, limit: int) -> int:
    zr = zi = 0.0
    for count in range(limit):
        zr2, zi2 = zr * zr, zi * zi
        if zr2 + zi2 > 4.0:
            return count
        zi = 2.0 * zr * zi + ci
        zr = zr2 - zi2 + cr
    return limit


def compute(data: bytes, checkpoint: Checkpoint) -> bytes:
    job = json.loads(data)
    scale = job["span"] / job["width"]
    left = job["center"][0] - job["width"] / 2 * scale
    top = job["center"][1] + job["height"] / 2 * scale
    limit = job["max_iterations"]
    state = checkpoint.state or {"rows": []}
    rows: list[str] = list(state["rows"])  # finished rows, hex, so the checkpoint is JSON
    for y in range(len(rows), job["h"]):
        ci = top - (job["y0"] + y) * scale
        counts = [_escape_time(left + (job["x0"] + x) * scale, ci, limit) for x in range(job["w"])]
        # A square root spreads the few iterations most points escape after over the scale;
        # IEEE square roots are correctly rounded, so the bytes are the same everywhere.
        rows.append(bytes(255 if c == limit else int(254 * math.sqrt(c / limit)) for c in counts).hex())
        checkpoint.save({"rows": rows}, len(rows) / job["h"])
    header = HEADER.pack(job["x0"], job["y0"], job["w"], job["h"])
    return header + b"".join(bytes.fromhex(row) for row in rows)


def compare(a: bytes, b: bytes) -> bool:
    return a == b


def _colour(level: int) -> bytes:
    """Inside the set black; outside, from deep blue through orange to white."""
    if level >= 255:
        return b"\x00\x00\x00"
    t = level / 255
    return bytes((int(255 * min(1, 3 * t)), int(255 * min(1, max(0, 3 * t - 1))), int(255 * (1 - t) ** 0.5)))


def _png(width: int, height: int, rgb_rows: list[bytes]) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    raw = b"".join(b"\x00" + row for row in rgb_rows)  # filter type 0 on every row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def _tiles(outputs: Iterable[tuple[int, bytes]]) -> list[tuple[int, int, int, int, bytes]]:
    tiles = []
    for _, output in outputs:
        x0, y0, w, h = HEADER.unpack_from(output)
        pixels = output[HEADER.size :]
        if len(pixels) != w * h:
            raise ValueError(f"the tile at ({x0}, {y0}) holds {len(pixels)} pixels, not {w * h}")
        tiles.append((x0, y0, w, h, pixels))
    return tiles


def _picture(width: int, height: int, tiles: list[tuple[int, int, int, int, bytes]], fill: bytes) -> bytes:
    palette = [_colour(level) for level in range(256)]
    image = [bytearray(fill * width) for _ in range(height)]
    for x0, y0, w, h, pixels in tiles:
        for y in range(h):
            row = b"".join(palette[level] for level in pixels[y * w : (y + 1) * w])
            image[y0 + y][3 * x0 : 3 * (x0 + w)] = row
    return _png(width, height, [bytes(row) for row in image])


def assimilate(outputs: Iterable[tuple[int, bytes]]) -> bytes:
    """Place every tile in the picture and write it as a PNG."""
    tiles = _tiles(outputs)
    if not tiles:
        raise ValueError("no tiles to assimilate")
    width = max(x0 + w for x0, _, w, _, _ in tiles)
    height = max(y0 + h for _, y0, _, h, _ in tiles)
    return _picture(width, height, tiles, b"\x00\x00\x00")


PREVIEW_FILL = b"\xd0\xd4\xda"  # a light grey where tiles are still being computed


def preview(parameters: dict[str, Any], outputs: Iterable[tuple[int, bytes]]) -> bytes:
    """The picture so far: the tiles that are done in place, grey where the rest will go."""
    width, height = int(parameters["width"]), int(parameters["height"])
    tiles = [t for t in _tiles(outputs) if t[0] + t[2] <= width and t[1] + t[3] <= height]
    return _picture(width, height, tiles, PREVIEW_FILL)
