"""BOINC code signing: 1024-bit RSA keys and signatures in BOINC's own text formats.

A stock BOINC client runs an app file only if its ``<file_signature>`` verifies with the
project's ``<code_sign_key>``. Both are BOINC's text, not PEM or base64, and the client checks
them with BOINC's own code (lib/crypt.cpp), so this module writes exactly what that code reads:

- Hex text (``print_hex_data``): lowercase hex, 32 bytes (64 characters) a line, a newline after
  a partial last line, then a line holding ``.``. The ``.`` tells a reader where the data ends.
- A public key (``print_key_hex``): the bit count in decimal and a newline, then the hex text of
  modulus || exponent, each 128 bytes (``MAX_RSA_MODULUS_LEN``), big-endian, zero-padded on the
  left. The key struct has no room for more than 1024 bits, so every key here is 1024-bit RSA.
- A signature (``sign_file``, ``sign_block``, ``generate_signature``): the 32 ASCII characters of
  the lowercase MD5 hex of the data (no NUL), put through ``RSA_private_encrypt`` with PKCS#1
  v1.5 type-1 padding and *no* DigestInfo, as 128 bytes of hex text. The client reverses it with
  ``RSA_public_decrypt`` and compares with the MD5 hex it computed. Standard "sign" APIs always
  add a DigestInfo, so the RSA operation here is done with Python integers (blinded, and checked
  with the public exponent before it is returned); ``cryptography`` makes and stores the keys.
- Key rotation: a client that holds a key takes a new one only with a
  ``<code_sign_key_signature>``, the new key's text signed as a string with the old key. Clients
  strip the whitespace around the key they receive before checking it, so the string signed is
  the stripped text; ``key_rotation_signature`` does that.

MD5 is what BOINC's clients check; nothing else is accepted by them.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

BOINC_KEY_BITS = 1024  # MAX_RSA_MODULUS_BITS in lib/crypt.h: the key struct holds no more
PUBLIC_EXPONENT = 65537  # what crypt_prog -genkey uses
KEY_FIELD_BYTES = 128  # MAX_RSA_MODULUS_LEN: each of modulus and exponent in the key text
SIGNATURE_BYTES = BOINC_KEY_BITS // 8  # RSA_size() of a 1024-bit key
HEX_BYTES_PER_LINE = 32  # print_hex_data breaks the line after every 32nd byte
PKCS1_MIN_PADDING = 11  # 0x00 0x01, at least eight 0xFF, 0x00

_MD5_HEX = re.compile(r"[0-9a-f]{32}")
_HEX_LINE = re.compile(rf"(?:[0-9a-fA-F]{{2}}){{1,{HEX_BYTES_PER_LINE}}}")
_BITS_LINE = re.compile(r"[1-9][0-9]{0,4}")


class BoincKeyError(ValueError):
    """A key, or key text, that BOINC's code-signing format cannot carry or that is malformed."""


def generate_private_key() -> rsa.RSAPrivateKey:
    """A new code-signing key: 1024-bit RSA, exponent 65537, as ``crypt_prog -genkey 1024``."""
    return rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=BOINC_KEY_BITS)


def _check_bits(bits: int) -> None:
    if bits != BOINC_KEY_BITS:
        raise BoincKeyError(
            f"BOINC code-signing keys must be {BOINC_KEY_BITS}-bit RSA "
            f"(stock clients cannot hold a bigger one); this key has {bits} bits"
        )


def _hex_text(data: bytes) -> str:
    """``data`` in print_hex_data's layout: 64 hex characters a line, then a ``.`` line."""
    lines = [data[i : i + HEX_BYTES_PER_LINE].hex() for i in range(0, len(data), HEX_BYTES_PER_LINE)]
    return "".join(line + "\n" for line in lines) + ".\n"


def _parse_hex_text(text: str, what: str) -> bytes:
    """Read hex text back strictly: hex lines of at most 32 bytes, then a ``.`` line, nothing more.

    Lines are separated by a bare newline. Callers strip the whitespace around the whole text
    first (a client strips it, and XML element text comes with it).
    """
    lines = text.split("\n")
    if len(lines) < 2 or lines[-1] != ".":
        raise BoincKeyError(f"{what}: the hex text must end with a line holding '.'")
    for number, line in enumerate(lines[:-1], start=1):
        if not _HEX_LINE.fullmatch(line):
            raise BoincKeyError(
                f"{what}: line {number} is not an even number of hex digits, "
                f"at most {HEX_BYTES_PER_LINE * 2}: {line[:80]!r}"
            )
    return bytes.fromhex("".join(lines[:-1]))


def _public_numbers(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> rsa.RSAPublicNumbers:
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    _check_bits(public.key_size)
    return public.public_numbers()


def public_key_text(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """The public key as BOINC writes it (``print_key_hex``), ending with ``".\\n"``.

    This is the ``code_sign_public`` file and the ``<code_sign_key>`` text.
    """
    numbers = _public_numbers(key)
    body = numbers.n.to_bytes(KEY_FIELD_BYTES, "big") + numbers.e.to_bytes(KEY_FIELD_BYTES, "big")
    return f"{BOINC_KEY_BITS}\n" + _hex_text(body)


def parse_public_key_text(text: str) -> tuple[int, int]:
    """``(n, e)`` from BOINC public-key text, refusing anything a 1024-bit BOINC key is not."""
    if not isinstance(text, str):
        raise BoincKeyError("public key text must be a str")
    stripped = text.strip()
    bits_line, newline, rest = stripped.partition("\n")
    if not newline or not _BITS_LINE.fullmatch(bits_line):
        raise BoincKeyError("public key text must start with the bit count in decimal on its own line")
    bits = int(bits_line)
    _check_bits(bits)
    body = _parse_hex_text(rest, "public key text")
    if len(body) != 2 * KEY_FIELD_BYTES:
        raise BoincKeyError(
            f"public key text holds {len(body)} bytes; BOINC's is {2 * KEY_FIELD_BYTES} "
            f"(modulus and exponent, {KEY_FIELD_BYTES} each)"
        )
    n = int.from_bytes(body[:KEY_FIELD_BYTES], "big")
    e = int.from_bytes(body[KEY_FIELD_BYTES:], "big")
    if n.bit_length() != bits:
        raise BoincKeyError(f"the modulus has {n.bit_length()} bits but the text says {bits}")
    if n % 2 == 0 or e < 3 or e % 2 == 0 or e >= n:
        raise BoincKeyError("public key text does not hold a usable RSA modulus and exponent")
    return n, e


def _check_md5_hex(md5_hex: str) -> None:
    if not isinstance(md5_hex, str) or not _MD5_HEX.fullmatch(md5_hex):
        # BOINC's md5_file/md5_block write "%02x": lowercase. Any other form never verifies.
        raise ValueError(f"expected 32 lowercase hex digits of an MD5, got {md5_hex!r}")


def _md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _string_bytes(text: str) -> bytes:
    if "\x00" in text:
        # BOINC hashes strlen(text) bytes: a NUL would end the string it checks.
        raise ValueError("BOINC signs C strings: the text must not contain NUL")
    return text.encode("utf-8")


def _rsa_private_encrypt(key: rsa.RSAPrivateKey, payload: bytes) -> bytes:
    """RSA_private_encrypt(payload, RSA_PKCS1_PADDING): type-1 padding, no DigestInfo.

    The base is blinded with a random r, so the time taken does not follow the data, and the
    result is checked with the public exponent before it is returned.
    """
    private = key.private_numbers()
    n, e, d = private.public_numbers.n, private.public_numbers.e, private.d
    size = (n.bit_length() + 7) // 8
    if len(payload) > size - PKCS1_MIN_PADDING:
        raise ValueError(f"payload of {len(payload)} bytes does not fit a {size}-byte RSA block")
    block = b"\x00\x01" + b"\xff" * (size - 3 - len(payload)) + b"\x00" + payload
    m = int.from_bytes(block, "big")
    while True:
        r = secrets.randbelow(n - 2) + 2
        if math.gcd(r, n) == 1:
            break
    s = (pow((m * pow(r, e, n)) % n, d, n) * pow(r, -1, n)) % n
    if pow(s, e, n) != m:
        raise BoincKeyError("RSA signing self-check failed: the private key is inconsistent")
    return s.to_bytes(size, "big")


def sign_md5_hex(key: rsa.RSAPrivateKey, md5_hex: str) -> str:
    """The BOINC signature text of a lowercase MD5 hex: what ``sign_file`` makes of a file's MD5."""
    _check_bits(key.key_size)
    _check_md5_hex(md5_hex)
    return _hex_text(_rsa_private_encrypt(key, md5_hex.encode("ascii")))


def sign_file_bytes(key: rsa.RSAPrivateKey, data: bytes) -> str:
    """The ``<file_signature>`` text for a file with these contents."""
    return sign_md5_hex(key, _md5_hex(data))


def sign_string(key: rsa.RSAPrivateKey, text: str) -> str:
    """What ``generate_signature`` makes of a string: the signature of its UTF-8 bytes' MD5."""
    return sign_md5_hex(key, _md5_hex(_string_bytes(text)))


def key_rotation_signature(old_key: rsa.RSAPrivateKey, new_key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """The ``<code_sign_key_signature>`` that lets clients holding ``old_key`` accept ``new_key``.

    The client strips the whitespace around the ``<code_sign_key>`` text it receives, then checks
    that stripped text as a string signature with the key it holds, so the stripped text of the
    new key is what is signed here.
    """
    return sign_string(old_key, public_key_text(new_key).strip())


def verify_md5_hex(n: int, e: int, md5_hex: str, signature_text: str) -> bool:
    """The client's check: decrypt the signature with (n, e), strip the PKCS#1 type-1 padding,
    and compare what is left with the MD5 hex. Any malformed signature text is simply False.

    Stricter than BOINC's check in two ways that its own signer never trips: the signature must
    be the full modulus length (128 bytes), and the recovered data exactly the 32 characters.
    """
    _check_md5_hex(md5_hex)
    if not isinstance(signature_text, str):
        return False
    try:
        signature = _parse_hex_text(signature_text.strip(), "signature")
    except BoincKeyError:
        return False
    size = (n.bit_length() + 7) // 8
    if n < 3 or len(signature) != size:
        return False
    s = int.from_bytes(signature, "big")
    if s >= n:
        return False
    block = pow(s, e, n).to_bytes(size, "big")
    payload = md5_hex.encode("ascii")
    padding_length = size - 3 - len(payload)
    if padding_length < PKCS1_MIN_PADDING - 3:
        return False
    expected = b"\x00\x01" + b"\xff" * padding_length + b"\x00" + payload
    return secrets.compare_digest(block, expected)


def verify_file_bytes(n: int, e: int, data: bytes, signature_text: str) -> bool:
    """Whether ``signature_text`` is a valid ``<file_signature>`` for these file contents."""
    return verify_md5_hex(n, e, _md5_hex(data), signature_text)


def verify_string(n: int, e: int, text: str, signature_text: str) -> bool:
    """``check_string_signature``: whether ``signature_text`` signs this string."""
    try:
        data = _string_bytes(text)
    except ValueError:
        return False
    return verify_md5_hex(n, e, _md5_hex(data), signature_text)


def private_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    """The private key as unencrypted PKCS#8 PEM; callers keep the file mode 0600."""
    _check_bits(key.key_size)
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def load_private_key_pem(data: bytes) -> rsa.RSAPrivateKey:
    """A code-signing key back from unencrypted PEM, refused unless it is 1024-bit RSA."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:  # TypeError: the PEM is encrypted
        raise BoincKeyError(f"cannot load the code-signing key PEM: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise BoincKeyError(f"the code-signing key must be RSA, not {type(key).__name__}")
    _check_bits(key.key_size)
    return key
