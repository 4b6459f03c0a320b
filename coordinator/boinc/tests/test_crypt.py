"""BOINC code signing (coordinator.boinc.crypt): formats, signatures, rotation, interop.

The padding and payload checks here are written with plain integers, not with the module's own
verify, so a mistake in both signer and verifier cannot cancel out. Where Debian's libboinc7 is
installed, BOINC 7.20's own lib/crypt.cpp (libboinc_crypt.so.7) checks our output; where
crypt_prog is installed, it does too.
"""

from __future__ import annotations

import ctypes
import hashlib
import multiprocessing
import os
import shutil
import struct
import subprocess
import traceback
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from coordinator.boinc import crypt

# A fixed 1024-bit key for the known-answer test: two 512-bit primes made once with
# cryptography's generator and written down here.
KAT_P = int(
    "fa35dea7f38d26bb6ea14256a974f5b7c711e1a1b0521e969c343f3e22526b5f"
    "1a305f2dab4b2be6acc446f50fd39c9cc492316e05fb5e9ea0ef2ea26dd1d985",
    16,
)
KAT_Q = int(
    "c1caddf8d905485b6425e6a10373fbd125975f2c34bc1b6ff373c76d80a8995e"
    "35df09b5df5c4d654c0f3d97cb5d322f4e29134e13e3e7c7110024302ba88e07",
    16,
)
KAT_MD5 = "4099f1638c92d3e210bf9442dc131fe6"  # md5(b"tessera")
KAT_SIGNATURE = (
    "178b8ad8a73affd804bcb76586a06ad8f1a8c580703bf7c6e521ca0be47bf553\n"
    "ac01c9c9d78a3b76bb7eea557905795aed5e754d0a004df333b61eef801cfaa9\n"
    "dccda1cfd6263579ef77c4d3b86121c6603a957dcbb0121c79590d57cb923833\n"
    "5c18272a8503915e301bc737185a7613737b0e275c7041c307a6ba5d40a82e3b\n"
    ".\n"
)

APP_FILE = b"#!/bin/sh\necho tessera probe app\n"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return crypt.generate_private_key()


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return crypt.generate_private_key()


def numbers(key: rsa.RSAPrivateKey) -> tuple[int, int]:
    public = key.public_key().public_numbers()
    return public.n, public.e


def kat_key() -> rsa.RSAPrivateKey:
    e = 65537
    n = KAT_P * KAT_Q
    d = pow(e, -1, (KAT_P - 1) * (KAT_Q - 1))
    return rsa.RSAPrivateNumbers(
        p=KAT_P,
        q=KAT_Q,
        d=d,
        dmp1=rsa.rsa_crt_dmp1(d, KAT_P),
        dmq1=rsa.rsa_crt_dmq1(d, KAT_Q),
        iqmp=rsa.rsa_crt_iqmp(KAT_P, KAT_Q),
        public_numbers=rsa.RSAPublicNumbers(e, n),
    ).private_key()


def recovered_payload(n: int, e: int, signature_text: str) -> bytes:
    """Undo a BOINC signature by hand: hex lines to an int, s^e mod n, check type-1 padding."""
    lines = signature_text.split("\n")
    assert lines[-2:] == [".", ""]
    s = int("".join(lines[:-2]), 16)
    assert 0 < s < n
    block = pow(s, e, n).to_bytes(128, "big")
    assert block[:2] == b"\x00\x01"
    separator = block.index(b"\x00", 2)
    assert separator >= 10  # at least eight 0xFF
    assert block[2:separator] == b"\xff" * (separator - 2)
    return block[separator + 1 :]


# --- key text ----------------------------------------------------------------------------------


def test_generated_key_is_what_crypt_prog_makes(key: rsa.RSAPrivateKey) -> None:
    assert crypt.BOINC_KEY_BITS == 1024
    assert key.key_size == 1024
    assert key.public_key().public_numbers().e == 65537


def test_public_key_text_has_boincs_layout(key: rsa.RSAPrivateKey) -> None:
    text = crypt.public_key_text(key)
    n, _ = numbers(key)
    assert text.endswith("\n.\n")
    lines = text.split("\n")
    assert lines[0] == "1024"
    hex_lines = lines[1:-2]
    assert len(hex_lines) == 8  # 256 bytes, 32 a line
    assert all(len(line) == 64 and line == line.lower() for line in hex_lines)
    assert lines[-2:] == [".", ""]
    body = bytes.fromhex("".join(hex_lines))
    assert int.from_bytes(body[:128], "big") == n
    # The exponent is left-padded to 128 bytes: 125 zero bytes, then 01 00 01.
    assert body[128:] == b"\x00" * 125 + b"\x01\x00\x01"
    assert hex_lines[4:7] == ["0" * 64] * 3
    assert hex_lines[7] == "0" * 58 + "010001"


def test_public_key_text_round_trips(key: rsa.RSAPrivateKey) -> None:
    text = crypt.public_key_text(key)
    assert crypt.parse_public_key_text(text) == numbers(key)
    assert crypt.parse_public_key_text(crypt.public_key_text(key.public_key())) == numbers(key)
    # What a client keeps (stripped) and what sits in an XML element (padded) read the same.
    assert crypt.parse_public_key_text(text.strip()) == numbers(key)
    assert crypt.parse_public_key_text("\n  " + text + "  \n") == numbers(key)


def test_kat_key_text_is_pinned() -> None:
    text = crypt.public_key_text(kat_key())
    n_hex = f"{KAT_P * KAT_Q:0256x}"
    expected = "1024\n" + "".join(n_hex[i : i + 64] + "\n" for i in range(0, 256, 64))
    expected += ("0" * 64 + "\n") * 3 + "0" * 58 + "010001\n.\n"
    assert text == expected


def _key_lines(key: rsa.RSAPrivateKey) -> list[str]:
    return crypt.public_key_text(key).split("\n")


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda lines: "", "bit count"),
        (lambda lines: "garbage", "bit count"),
        (lambda lines: "1024", "bit count"),
        (lambda lines: "\n".join(["2048", *lines[1:]]), "1024-bit"),
        (lambda lines: "\n".join(["01024", *lines[1:]]), "bit count"),
        (lambda lines: "\n".join(["1024 ", *lines[1:]]), "bit count"),
        (lambda lines: "\n".join(lines[:-2]), "'.'"),
        (lambda lines: "\n".join([*lines[:-2], "x", ""]), "'.'"),
        (lambda lines: "\n".join([lines[0], lines[1][:-1] + "g", *lines[2:]]), "line 1"),
        (lambda lines: "\n".join([lines[0], lines[1][:-1], *lines[2:]]), "line 1"),
        (lambda lines: "\n".join([lines[0], lines[1] + "00", *lines[2:]]), "line 1"),
        (lambda lines: "\n".join([lines[0], lines[1] + " ", *lines[2:]]), "line 1"),
        (lambda lines: "\r\n".join(lines), "bit count"),
        (lambda lines: "\n".join([lines[0], *lines[2:]]), "224 bytes"),
        (lambda lines: "\n".join([lines[0], lines[1], *lines[1:]]), "288 bytes"),
        (lambda lines: "\n".join([lines[0], "", *lines[1:]]), "line 1"),
    ],
)
def test_parse_public_key_text_refuses_bad_text(key: rsa.RSAPrivateKey, mangle, message: str) -> None:
    with pytest.raises(crypt.BoincKeyError, match=message):
        crypt.parse_public_key_text(mangle(_key_lines(key)))


def test_parse_public_key_text_refuses_a_bad_modulus() -> None:
    short = "1024\n" + ("00" * 32 + "\n") * 8 + ".\n"
    with pytest.raises(crypt.BoincKeyError, match="modulus has 0 bits"):
        crypt.parse_public_key_text(short)
    even = "1024\n" + ("ff" * 32 + "\n") * 3 + "ff" * 31 + "fe\n" + ("00" * 32 + "\n") * 3
    even += "00" * 29 + "010001\n.\n"
    with pytest.raises(crypt.BoincKeyError, match="usable RSA"):
        crypt.parse_public_key_text(even)
    with pytest.raises(crypt.BoincKeyError, match="str"):
        crypt.parse_public_key_text(b"1024\n")  # type: ignore[arg-type]


def test_keys_other_than_1024_bits_are_refused() -> None:
    big = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(crypt.BoincKeyError, match="1024-bit"):
        crypt.public_key_text(big)
    with pytest.raises(crypt.BoincKeyError, match="1024-bit"):
        crypt.sign_md5_hex(big, KAT_MD5)
    with pytest.raises(crypt.BoincKeyError, match="1024-bit"):
        crypt.private_key_pem(big)
    pem = big.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(crypt.BoincKeyError, match="1024-bit"):
        crypt.load_private_key_pem(pem)


# --- signatures --------------------------------------------------------------------------------


def test_signature_has_boincs_layout(key: rsa.RSAPrivateKey) -> None:
    signature = crypt.sign_file_bytes(key, APP_FILE)
    lines = signature.split("\n")
    assert len(lines) == 6  # 128 bytes = 4 lines of 32, then ".", then the final newline
    assert all(len(line) == 64 and line == line.lower() for line in lines[:4])
    assert lines[4:] == [".", ""]


def test_signature_passes_an_independent_check(key: rsa.RSAPrivateKey) -> None:
    n, e = numbers(key)
    md5_hex = hashlib.md5(APP_FILE).hexdigest()
    signature = crypt.sign_file_bytes(key, APP_FILE)
    # The payload is the 32 ASCII characters of the lowercase MD5 hex: no NUL, no DigestInfo.
    assert recovered_payload(n, e, signature) == md5_hex.encode("ascii")
    assert crypt.sign_md5_hex(key, md5_hex) == signature  # type-1 padding is deterministic


def test_signature_matches_what_openssl_recovers(key: rsa.RSAPrivateKey) -> None:
    # RSA_public_decrypt with RSA_PKCS1_PADDING, as the client does, through OpenSSL.
    signature = crypt.sign_file_bytes(key, APP_FILE)
    raw = bytes.fromhex("".join(signature.split("\n")[:-2]))
    recovered = key.public_key().recover_data_from_signature(raw, padding.PKCS1v15(), None)
    assert recovered == hashlib.md5(APP_FILE).hexdigest().encode("ascii")


def test_known_answer() -> None:
    k = kat_key()
    assert crypt.sign_md5_hex(k, KAT_MD5) == KAT_SIGNATURE
    assert crypt.sign_file_bytes(k, b"tessera") == KAT_SIGNATURE
    # The hard-coded text, worked out again here with plain integers.
    n = KAT_P * KAT_Q
    d = pow(65537, -1, (KAT_P - 1) * (KAT_Q - 1))
    block = b"\x00\x01" + b"\xff" * (128 - 3 - 32) + b"\x00" + KAT_MD5.encode("ascii")
    s = pow(int.from_bytes(block, "big"), d, n).to_bytes(128, "big").hex()
    independent = "".join(s[i : i + 64] + "\n" for i in range(0, 256, 64)) + ".\n"
    assert independent == KAT_SIGNATURE
    assert crypt.verify_md5_hex(n, 65537, KAT_MD5, KAT_SIGNATURE)


def test_verify_accepts_good_signatures(key: rsa.RSAPrivateKey) -> None:
    n, e = numbers(key)
    signature = crypt.sign_file_bytes(key, APP_FILE)
    assert crypt.verify_file_bytes(n, e, APP_FILE, signature)
    assert crypt.verify_md5_hex(n, e, hashlib.md5(APP_FILE).hexdigest(), signature)
    assert crypt.verify_file_bytes(n, e, APP_FILE, signature.strip())
    assert crypt.verify_string(n, e, "some text", crypt.sign_string(key, "some text"))
    assert crypt.verify_string(n, e, "åäö ✓", crypt.sign_string(key, "åäö ✓"))


def test_tampered_file_fails(key: rsa.RSAPrivateKey) -> None:
    n, e = numbers(key)
    signature = crypt.sign_file_bytes(key, APP_FILE)
    assert not crypt.verify_file_bytes(n, e, APP_FILE + b"\n", signature)
    assert not crypt.verify_file_bytes(n, e, APP_FILE.replace(b"probe", b"prob3"), signature)
    assert not crypt.verify_string(n, e, "some text.", crypt.sign_string(key, "some text"))


def test_signature_by_another_key_fails(key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey) -> None:
    n, e = numbers(key)
    assert not crypt.verify_file_bytes(n, e, APP_FILE, crypt.sign_file_bytes(other_key, APP_FILE))


def test_altered_signature_fails(key: rsa.RSAPrivateKey) -> None:
    n, e = numbers(key)
    signature = crypt.sign_file_bytes(key, APP_FILE)
    digit = "0" if signature[100] != "0" else "1"  # a hex digit in the second line
    flipped = signature[:100] + digit + signature[101:]
    assert not crypt.verify_file_bytes(n, e, APP_FILE, flipped)
    # The same number with a zero byte in front is no longer the 128 bytes BOINC writes.
    assert not crypt.verify_file_bytes(n, e, APP_FILE, "00\n" + signature)


def test_truncated_signature_fails(key: rsa.RSAPrivateKey) -> None:
    n, e = numbers(key)
    signature = crypt.sign_file_bytes(key, APP_FILE)
    lines = signature.split("\n")
    truncations = [
        "\n".join([*lines[:3], ".", ""]),  # a whole line missing
        "\n".join(lines[:4]),  # the "." line missing
        signature[:150],  # cut in the middle of a line
        signature[:-4] + "\n.\n",  # the last byte missing
        ".\n",
    ]
    for truncated in truncations:
        assert not crypt.verify_file_bytes(n, e, APP_FILE, truncated), truncated


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "\n",
        ".",
        "hello",
        "zz\n.\n",
        "0x" + "ab" * 127 + "\n.\n",
        ("ff" * 32 + "\n") * 4 + ".\n",  # not below the modulus
        ("00" * 32 + "\n") * 4 + ".\n",
        ("01" * 32 + "\n") * 4 + ".\n",
        "<file_signature>\n</file_signature>",
        None,
        b"00\n.\n",
    ],
)
def test_garbage_signature_text_fails_without_raising(key: rsa.RSAPrivateKey, garbage) -> None:
    n, e = numbers(key)
    assert crypt.verify_file_bytes(n, e, APP_FILE, garbage) is False
    assert crypt.verify_string(n, e, "text", garbage) is False


def test_md5_hex_must_be_boincs_lowercase(key: rsa.RSAPrivateKey) -> None:
    n, e = numbers(key)
    for bad in [KAT_MD5.upper(), KAT_MD5[:-1], KAT_MD5 + "0", "", "g" * 32]:
        with pytest.raises(ValueError, match="lowercase hex"):
            crypt.sign_md5_hex(key, bad)
        with pytest.raises(ValueError, match="lowercase hex"):
            crypt.verify_md5_hex(n, e, bad, KAT_SIGNATURE)


def test_strings_with_nul_are_refused(key: rsa.RSAPrivateKey) -> None:
    n, e = numbers(key)
    with pytest.raises(ValueError, match="NUL"):
        crypt.sign_string(key, "a\x00b")
    assert crypt.verify_string(n, e, "a\x00b", crypt.sign_string(key, "a")) is False


# --- key rotation ------------------------------------------------------------------------------


def test_key_rotation(key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey) -> None:
    old_n, old_e = numbers(key)
    new_n, new_e = numbers(other_key)
    new_text = crypt.public_key_text(other_key)

    signature = crypt.sign_string(key, new_text)
    assert crypt.verify_string(old_n, old_e, new_text, signature)
    assert not crypt.verify_string(new_n, new_e, new_text, signature)

    # A client checks the new key's text with its surrounding whitespace stripped, so the
    # <code_sign_key_signature> has to sign the stripped text.
    rotation = crypt.key_rotation_signature(key, other_key)
    assert crypt.verify_string(old_n, old_e, new_text.strip(), rotation)
    assert not crypt.verify_string(new_n, new_e, new_text.strip(), rotation)
    assert not crypt.verify_string(old_n, old_e, new_text.strip(), signature)
    assert (
        recovered_payload(old_n, old_e, rotation)
        == hashlib.md5(new_text.strip().encode()).hexdigest().encode()
    )


# --- PEM ---------------------------------------------------------------------------------------


def test_private_key_pem_round_trips(key: rsa.RSAPrivateKey) -> None:
    pem = crypt.private_key_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, unencrypted
    loaded = crypt.load_private_key_pem(pem)
    assert loaded.private_numbers() == key.private_numbers()
    assert crypt.sign_file_bytes(loaded, APP_FILE) == crypt.sign_file_bytes(key, APP_FILE)


def test_load_private_key_pem_refuses_what_it_cannot_use(key: rsa.RSAPrivateKey) -> None:
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for data, message in [
        (encrypted, "cannot load"),
        (b"not a key", "cannot load"),
        (b"", "cannot load"),
        (ec_pem, "must be RSA"),
    ]:
        with pytest.raises(crypt.BoincKeyError, match=message):
            crypt.load_private_key_pem(data)


# --- BOINC's own code --------------------------------------------------------------------------


def _in_child(check, *args) -> None:  # type: ignore[no-untyped-def]
    """Run ``check`` in a forked process: Debian's libboinc is built with -ffast-math, and
    loading it turns on flush-to-zero for the whole process, which would change every later
    test's floating point (hypothesis notices)."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)

    def run() -> None:
        try:
            check(*args)
            sender.send(("ok", ""))
        except pytest.skip.Exception as skipped:
            sender.send(("skip", str(skipped)))
        except BaseException:  # the parent reports it
            sender.send(("fail", traceback.format_exc()))

    child = context.Process(target=run)
    child.start()
    outcome, text = receiver.recv() if receiver.poll(120) else ("fail", "the check did not answer")
    child.join(10)
    if outcome == "skip":
        pytest.skip(text)
    assert outcome == "ok", text


def _libboinc_crypt():
    """BOINC 7.x's lib/crypt.cpp as Debian ships it (libboinc7), or a skip saying why not."""
    try:
        lib = ctypes.CDLL("libboinc_crypt.so.7")
        libc = ctypes.CDLL(None)
        functions = {
            "check_file_signature2": lib._Z21check_file_signature2PKcS0_S0_Rb,
            "check_string_signature2": lib._Z23check_string_signature2PKcS0_S0_Rb,
            "generate_signature": lib._Z18generate_signaturePcS_R17R_RSA_PRIVATE_KEY,
            "print_key_hex": lib._Z13print_key_hexP8_IO_FILEP3KEYi,
        }
    except (OSError, AttributeError) as exc:
        pytest.skip(f"BOINC 7.x libboinc_crypt.so.7 (Debian libboinc7) not usable here: {exc}")
    for name in ("check_file_signature2", "check_string_signature2"):
        functions[name].argtypes = [ctypes.c_char_p] * 3 + [ctypes.POINTER(ctypes.c_bool)]
        functions[name].restype = ctypes.c_int
    functions["generate_signature"].argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p]
    functions["generate_signature"].restype = ctypes.c_int
    functions["print_key_hex"].argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    functions["print_key_hex"].restype = ctypes.c_int
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.fopen.restype = ctypes.c_void_p
    libc.fclose.argtypes = [ctypes.c_void_p]
    functions["fopen"] = libc.fopen
    functions["fclose"] = libc.fclose
    return functions


def _boinc_check(function, first: str, signature: str, key_text: str) -> bool:
    answer = ctypes.c_bool(False)
    retval = function(first.encode(), signature.encode(), key_text.encode(), ctypes.byref(answer))
    return retval == 0 and answer.value


def _boinc_private_key(key: rsa.RSAPrivateKey) -> bytes:
    """R_RSA_PRIVATE_KEY (lib/crypt.h): bits, then big-endian fields of 128 and 64 bytes."""
    pn = key.private_numbers()
    fields = [
        (pn.public_numbers.n, 128),
        (pn.public_numbers.e, 128),
        (pn.d, 128),
        (pn.p, 64),
        (pn.q, 64),
        (pn.dmp1, 64),
        (pn.dmq1, 64),
        (pn.iqmp, 64),
    ]
    return struct.pack("=H", 1024) + b"".join(value.to_bytes(size, "big") for value, size in fields)


def test_boinc_library_verifies_our_signatures(key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey) -> None:
    _in_child(_library_verifies, key, other_key)


def _library_verifies(key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey) -> None:
    boinc = _libboinc_crypt()
    key_text = crypt.public_key_text(key)
    md5_hex = hashlib.md5(APP_FILE).hexdigest()
    signature = crypt.sign_file_bytes(key, APP_FILE)
    check_file = boinc["check_file_signature2"]
    assert _boinc_check(check_file, md5_hex, signature, key_text)
    assert _boinc_check(check_file, md5_hex, signature, key_text.strip())  # as a client keeps it
    assert not _boinc_check(check_file, hashlib.md5(APP_FILE + b"x").hexdigest(), signature, key_text)
    assert not _boinc_check(check_file, md5_hex, crypt.sign_file_bytes(other_key, APP_FILE), key_text)

    check_string = boinc["check_string_signature2"]
    new_text = crypt.public_key_text(other_key)
    rotation = crypt.key_rotation_signature(key, other_key)
    assert _boinc_check(check_string, new_text.strip(), rotation, key_text)
    assert not _boinc_check(check_string, new_text.strip(), rotation, crypt.public_key_text(other_key))


def test_boinc_library_writes_what_we_write(key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    _in_child(_library_writes, key, tmp_path)


def _library_writes(key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    boinc = _libboinc_crypt()
    # generate_signature with the same key makes the same text, byte for byte.
    private = ctypes.create_string_buffer(_boinc_private_key(key))
    out = ctypes.create_string_buffer(1024)
    text = "1024\nsome key text\n."
    assert boinc["generate_signature"](ctypes.create_string_buffer(text.encode()), out, private) == 0
    assert out.value.decode() == crypt.sign_string(key, text)
    # print_key_hex of the public key struct writes the same file as public_key_text.
    n, e = numbers(key)
    public = ctypes.create_string_buffer(
        struct.pack("=H", 1024) + n.to_bytes(128, "big") + e.to_bytes(128, "big")
    )
    path = tmp_path / "code_sign_public"
    handle = boinc["fopen"](os.fsencode(path), b"w")
    assert handle
    try:
        assert boinc["print_key_hex"](handle, public, 2 + 256) == 0
    finally:
        boinc["fclose"](handle)
    assert path.read_text() == crypt.public_key_text(key)


def test_crypt_prog_verifies_our_signatures(key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    crypt_prog = shutil.which("crypt_prog")
    if crypt_prog is None:
        pytest.skip("BOINC's crypt_prog is not installed (Debian ships it in boinc-server-maker)")
    public = tmp_path / "code_sign_public"
    public.write_text(crypt.public_key_text(key))
    app = tmp_path / "app.sh"
    app.write_bytes(APP_FILE)
    signature = tmp_path / "app.sh.sig"
    signature.write_text(crypt.sign_file_bytes(key, APP_FILE))
    run = subprocess.run(
        [crypt_prog, "-verify", str(app), str(signature), str(public)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 0 and "signature is valid" in run.stdout, run
    # Not -verify_string: crypt_prog reads only the first 256 characters of that signature file,
    # less than the 262 of a full signature text, so it cannot check one.
