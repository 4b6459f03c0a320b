"""NaN guards: deterministic NaN bits for a fraction of what canonicalizing every operation costs.

WebAssembly leaves the bits of a NaN that arithmetic produces to the machine (x86 makes the sign
negative, ARM positive). Only three kinds of instruction can tell those bits apart: a float store,
a reinterpretation as an integer, and ``copysign`` (it reads the sign). wasmtime's
``cranelift_nan_canonicalization`` rewrites the result of every float operation instead, which
costs the Lennard-Jones kernel a fifth of its speed. ``guard`` puts a few instructions before each
of those observation points (``x != x ? canonical NaN : x``) and marks the module with a custom
section; the client's runner turns Cranelift's canonicalization off only for a module that
``check`` finds guarded everywhere, so a module that only claims it keeps the slow, safe setting
(docs/science-apps.md, "Determinism").

The guard instructions count towards the module's fuel like any others; they are part of the
published module, so every host meters the same instructions. Modules with instructions this pass
does not know (SIMD, exceptions, garbage collection) are left as they are, and run with
canonicalization. Pure Python on the standard library: the runner imports it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

MARKER = "tessera.nan-guard"
MARKER_VERSION = b"1"
HEADER = b"\0asm\x01\0\0\0"
CUSTOM, TYPE, FUNCTION, CODE = 0, 1, 3, 10
F32, F64 = 0x7D, 0x7C
VALUE_TYPES = {0x7F, 0x7E, F32, F64, 0x7B, 0x70, 0x6F}
CANONICAL = {F32: struct.pack("<I", 0x7FC00000), F64: struct.pack("<Q", 0x7FF8000000000000)}
CONST = {F32: 0x43, F64: 0x44}
NOT_EQUAL = {F32: 0x5C, F64: 0x62}
LOCAL_GET, LOCAL_SET, SELECT = 0x20, 0x21, 0x1B

# Where a NaN's bits become visible, and the type of the value on top of the stack there.
OBSERVERS = {
    0x38: F32,  # f32.store
    0x39: F64,  # f64.store
    0x98: F32,  # f32.copysign (the sign operand)
    0xA6: F64,  # f64.copysign
    0xBC: F32,  # i32.reinterpret_f32
    0xBD: F64,  # i64.reinterpret_f64
}
# What may come right before an observation point without a guard: a load or a constant of its
# type leaves bits that are the same on every machine.
SETTLED = {F32: {0x2A, 0x43}, F64: {0x2B, 0x44}}
NO_IMMEDIATE = {0x00, 0x01, 0x05, 0x0B, 0x0F, 0x1A, 0x1B, 0xD1, *range(0x45, 0xC5)}
ONE_INDEX = {0x0C, 0x0D, 0x10, 0x12, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0xD2}
BLOCKS = {0x02, 0x03, 0x04}
MEMORY_ACCESS = set(range(0x28, 0x3F))
# 0xFC sub-opcodes: how many index immediates follow (saturating truncations, bulk memory, tables).
MISC_INDEXES = {
    **dict.fromkeys(range(8), 0),
    **{8: 2, 9: 1, 10: 2, 11: 1, 12: 2, 13: 1, 14: 2, 15: 1, 16: 1, 17: 1},
}


class Unsupported(ValueError):
    """The module uses an instruction or a form this pass does not know."""


@dataclass(frozen=True)
class Instruction:
    opcode: int
    start: int
    end: int


class Reader:
    """A cursor over a byte string, reading the binary format's integers."""

    def __init__(self, data: bytes, position: int = 0, end: int | None = None) -> None:
        self.data, self.position = data, position
        self.end = len(data) if end is None else end

    def byte(self) -> int:
        if self.position >= self.end:
            raise Unsupported("the module ends in the middle of an item")
        value = self.data[self.position]
        self.position += 1
        return value

    def unsigned(self) -> int:
        result = shift = 0
        while True:
            value = self.byte()
            result |= (value & 0x7F) << shift
            shift += 7
            if value < 0x80:
                return result
            if shift > 70:
                raise Unsupported("an integer is too long")

    def skip_signed(self) -> None:
        self.unsigned()  # the same bytes; only their meaning differs

    def skip(self, count: int) -> None:
        if self.position + count > self.end:
            raise Unsupported("the module ends in the middle of an item")
        self.position += count

    def name(self) -> str:
        size = self.unsigned()
        start = self.position
        self.skip(size)
        return self.data[start : self.position].decode("utf-8", "replace")


def encode_unsigned(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


@dataclass(frozen=True)
class Section:
    kind: int
    header: int  # where its id byte is
    start: int  # where its contents start
    end: int


def sections(module: bytes) -> Iterator[Section]:
    if module[:8] != HEADER:
        raise Unsupported("not a WebAssembly 1.0 module")
    reader = Reader(module, 8)
    while reader.position < len(module):
        header = reader.position
        kind, size = reader.byte(), reader.unsigned()
        start = reader.position
        reader.skip(size)
        yield Section(kind, header, start, reader.position)


def instructions(reader: Reader) -> Iterator[Instruction]:
    """The instructions of one function body, from where ``reader`` stands to its end."""
    while reader.position < reader.end:
        start = reader.position
        opcode = reader.byte()
        if opcode in NO_IMMEDIATE:
            pass
        elif opcode in ONE_INDEX:
            reader.unsigned()
        elif opcode in MEMORY_ACCESS:
            align = reader.unsigned()
            if align & 0x40:  # multi-memory: an explicit memory index
                reader.unsigned()
            reader.unsigned()
        elif opcode in BLOCKS:
            if reader.data[reader.position] in VALUE_TYPES | {0x40}:
                reader.skip(1)
            else:
                reader.skip_signed()  # a type index
        elif opcode in (0x0E,):  # br_table
            for _ in range(reader.unsigned() + 1):
                reader.unsigned()
        elif opcode in (0x11, 0x13):  # call_indirect, return_call_indirect
            reader.unsigned()
            reader.unsigned()
        elif opcode == 0x1C:  # select with types
            for _ in range(reader.unsigned()):
                value_type(reader)
        elif opcode in (0x3F, 0x40):  # memory.size, memory.grow
            reader.unsigned()
        elif opcode in (0x41, 0x42):
            reader.skip_signed()
        elif opcode == 0x43:
            reader.skip(4)
        elif opcode == 0x44:
            reader.skip(8)
        elif opcode == 0xD0:  # ref.null
            value_type(reader)
        elif opcode == 0xFC:
            sub = reader.unsigned()
            if sub not in MISC_INDEXES:
                raise Unsupported(f"instruction 0xfc {sub}")
            for _ in range(MISC_INDEXES[sub]):
                reader.unsigned()
        else:
            raise Unsupported(f"instruction {opcode:#04x}")
        yield Instruction(opcode, start, reader.position)


def value_type(reader: Reader) -> int:
    kind = reader.byte()
    if kind not in VALUE_TYPES:
        raise Unsupported(f"value type {kind:#04x}")
    return kind


@dataclass
class Body:
    """One function's code: its parameter count, its locals' groups and its instructions."""

    parameters: int
    locals: list[tuple[int, int]]
    data: bytes
    code_start: int

    @classmethod
    def read(cls, data: bytes, parameters: int) -> Body:
        reader = Reader(data)
        groups = [(reader.unsigned(), value_type(reader)) for _ in range(reader.unsigned())]
        return cls(parameters, groups, data, reader.position)

    def instructions(self) -> Iterator[Instruction]:
        return instructions(Reader(self.data, self.code_start))

    def local_count(self) -> int:
        return self.parameters + sum(count for count, _ in self.locals)


def guard_sequence(kind: int, local: int) -> bytes:
    """``local.set t; const NaN; local.get t (3 times); ne; select``: a canonical NaN if t is one."""
    index = encode_unsigned(local)
    get = bytes([LOCAL_GET]) + index
    return (
        bytes([LOCAL_SET])
        + index
        + bytes([CONST[kind]])
        + CANONICAL[kind]
        + get * 3
        + bytes([NOT_EQUAL[kind], SELECT])
    )


def unguarded_points(body: Body) -> Iterator[tuple[Instruction, int]]:
    """Each observation point whose value's bits are not already settled, with its type: all but
    those right after a load or a constant of that type (a copy keeps a NaN's bits exactly)."""
    previous: Instruction | None = None
    for item in body.instructions():
        kind = OBSERVERS.get(item.opcode)
        if kind is not None and (previous is None or previous.opcode not in SETTLED[kind]):
            yield item, kind
        previous = item


def guard_body(body: Body) -> bytes:
    """The body with a guard before each unguarded point (and a scratch local per type)."""
    found = list(unguarded_points(body))
    scratch: dict[int, int] = {}
    groups = list(body.locals)
    for kind in sorted({kind for _, kind in found}):
        scratch[kind] = body.local_count() + sum(count for count, _ in groups[len(body.locals) :])
        groups.append((1, kind))
    out = bytearray(encode_unsigned(len(groups)))
    for count, kind in groups:
        out += encode_unsigned(count) + bytes([kind])
    position = body.code_start
    for item, kind in found:
        out += body.data[position : item.start] + guard_sequence(kind, scratch[kind])
        position = item.start
    out += body.data[position:]
    return bytes(out)


def body_is_guarded(body: Body) -> bool:
    """Is every unguarded point right after a guard (the seven instructions, exactly)?"""
    ends = {item.end: item for item in body.instructions()}
    return all(_follows_guard(body.data, ends, item.start, kind) for item, kind in unguarded_points(body))


def _follows_guard(data: bytes, ends: dict[int, Instruction], position: int, kind: int) -> bool:
    """Do the seven instructions that end at ``position`` make a guard of ``kind``?"""
    first = position
    for _ in range(7):
        before = ends.get(first)
        if before is None:
            return False
        first = before.start
    if data[first] != LOCAL_SET:
        return False
    local = Reader(data, first + 1).unsigned()
    return data[first:position] == guard_sequence(kind, local)


@dataclass
class Parsed:
    code: Section | None
    bodies: list[tuple[int, int]]  # each body's bytes within the module
    parameters: list[int]  # the parameter count of each function with a body
    marked: bool


def parse(module: bytes) -> Parsed:
    """What the pass needs: the code section, its bodies, their parameter counts, the marker."""
    types: list[int] = []
    functions: list[int] = []
    code: Section | None = None
    bodies: list[tuple[int, int]] = []
    marked = False
    for section in sections(module):
        reader = Reader(module, section.start, section.end)
        if section.kind == CUSTOM:
            marked = marked or _has_marker(module, section)
        elif section.kind == TYPE:
            types = [_function_type(reader) for _ in range(reader.unsigned())]
        elif section.kind == FUNCTION:
            functions = [reader.unsigned() for _ in range(reader.unsigned())]
        elif section.kind == CODE:
            code = section
            for _ in range(reader.unsigned()):
                size = reader.unsigned()
                bodies.append((reader.position, reader.position + size))
                reader.skip(size)
    # Imported functions have no body: the code section pairs with the function section.
    if len(bodies) != len(functions) or any(index >= len(types) for index in functions):
        raise Unsupported("the function and code sections disagree")
    return Parsed(code, bodies, [types[index] for index in functions], marked)


def _function_type(reader: Reader) -> int:
    if reader.byte() != 0x60:
        raise Unsupported("a type other than a function type")
    parameters = reader.unsigned()
    for _ in range(parameters):
        value_type(reader)
    for _ in range(reader.unsigned()):
        value_type(reader)
    return parameters


def guard(module: bytes) -> bytes:
    """The module with every NaN observation point guarded and the marker added (a module that
    already has the marker comes back as it is; ``Unsupported`` when it cannot be guarded)."""
    try:
        parsed = parse(module)
        if parsed.marked:
            return module
        bodies = [
            guard_body(Body.read(module[start:end], parameters))
            for (start, end), parameters in zip(parsed.bodies, parsed.parameters)
        ]
    except IndexError:
        raise Unsupported("the module ends in the middle of an item") from None
    if parsed.code is None:
        return module + marker_section()
    contents = encode_unsigned(len(bodies)) + b"".join(encode_unsigned(len(b)) + b for b in bodies)
    code = bytes([CODE]) + encode_unsigned(len(contents)) + contents
    return module[: parsed.code.header] + code + module[parsed.code.end :] + marker_section()


def marker_section() -> bytes:
    """The custom section that says "guarded" (only ``check`` makes it true)."""
    name = MARKER.encode()
    marker = encode_unsigned(len(name)) + name + MARKER_VERSION
    return bytes([CUSTOM]) + encode_unsigned(len(marker)) + marker


def guarded_if_possible(module: bytes) -> bytes:
    """``guard(module)``, or the module as it is when this pass cannot read it."""
    try:
        return guard(module)
    except Unsupported:
        return module


def _has_marker(module: bytes, section: Section) -> bool:
    reader = Reader(module, section.start, section.end)
    return reader.name() == MARKER and module[reader.position : section.end] == MARKER_VERSION


def is_marked(module: bytes) -> bool:
    """Does the module say it is guarded? (Its sections only, in microseconds; ``check`` reads
    every body.)"""
    try:
        return any(s.kind == CUSTOM and _has_marker(module, s) for s in sections(module))
    except (Unsupported, IndexError):
        return False


def check(module: bytes) -> bool:
    """Does the module carry the marker and a guard before every observation point? (False for a
    module this pass cannot read: it runs with canonicalization.)"""
    try:
        parsed = parse(module)
        return parsed.marked and all(
            body_is_guarded(Body.read(module[start:end], parameters))
            for (start, end), parameters in zip(parsed.bodies, parsed.parameters)
        )
    except (Unsupported, IndexError):
        return False
