"""Mandelbrot tiles: split by tile, bitwise, resumable, assembled into a real PNG."""

from __future__ import annotations

import json
import struct
import zlib

import pytest

from workunits.interface import Checkpoint
from workunits.mandelbrot import HEADER, assimilate, compare, compute, split
from workunits.tests.interrupting import resumed

VIEW = {"width": 40, "height": 30, "tile": 16, "max_iterations": 60, "center": [-0.6, 0.0], "span": 3.0}


def test_the_picture_is_cut_into_tiles_row_by_row():
    tiles = [json.loads(data) for data in split(VIEW)]

    assert [(t["x0"], t["y0"], t["w"], t["h"]) for t in tiles] == [
        (0, 0, 16, 16), (16, 0, 16, 16), (32, 0, 8, 16),
        (0, 16, 16, 14), (16, 16, 16, 14), (32, 16, 8, 14),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"width": 0}, "width"),
        ({"tile": 4}, "tile"),
        ({"span": -1}, "span"),
        ({"center": [1]}, "center"),
        ({"zoom": 2}, "zoom"),
    ],
)
def test_bad_parameters_are_refused_by_name(change, named):
    with pytest.raises(ValueError, match=named):
        next(split({**VIEW, **change}))


def test_a_resumed_tile_gives_the_same_bytes():
    data = next(split(VIEW))
    whole = compute(data, Checkpoint())

    again, _ = resumed(compute, data, saves=5)

    assert again == whole and compare(again, whole)
    x0, y0, w, h = HEADER.unpack_from(whole)
    assert (x0, y0, w, h) == (0, 0, 16, 16) and len(whole) == HEADER.size + 256


def read_png(data: bytes) -> tuple[int, int, bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks = 8, {}
    while position < len(data):
        (length,) = struct.unpack_from(">I", data, position)
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        assert struct.unpack_from(">I", data, position + 8 + length)[0] == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        position += 12 + length
    width, height = struct.unpack_from(">II", chunks[b"IHDR"])
    return width, height, zlib.decompress(chunks[b"IDAT"])


def test_the_tiles_make_one_picture_with_the_set_in_black():
    outputs = [(i, compute(data, Checkpoint())) for i, data in enumerate(split(VIEW))]

    width, height, raw = read_png(assimilate(outputs))

    assert (width, height) == (40, 30) and len(raw) == 30 * (1 + 3 * 40)
    middle_row = raw[15 * 121 + 1 : 16 * 121]
    assert middle_row[3 * 20 : 3 * 21] == b"\x00\x00\x00"  # (-0.6, 0) is inside the set
    assert middle_row[0:3] != b"\x00\x00\x00"  # (-2.1, 0) is outside


def test_the_preview_has_the_whole_size_with_the_done_tiles_in_place():
    import struct
    import zlib

    from workunits.mandelbrot import preview

    parameters = {"width": 32, "height": 16, "tile": 16, "max_iterations": 30, "span": 3.0}
    inputs = list(split(parameters))
    first = compute(inputs[0], Checkpoint())

    picture = preview(parameters, [(0, first)])

    assert picture.startswith(b"\x89PNG")
    width, height = struct.unpack(">II", picture[16:24])
    assert (width, height) == (32, 16)
    raw = zlib.decompress(picture[picture.index(b"IDAT") + 4 : picture.index(b"IEND") - 8])
    row = raw[1 : 1 + 3 * 32]  # the first row, after its filter byte
    assert row[3 * 16 : 3 * 17] == b"\xd0\xd4\xda"  # the right tile is not done yet: grey
    assert row[:3] != b"\xd0\xd4\xda"
