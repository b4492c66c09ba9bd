"""SHA-512 crypt ("$6$"), as specified by Ulrich Drepper's SHA-crypt and implemented by glibc.

Pure Python because the stdlib `crypt` module is deprecated and gone in Python 3.13, and the
hash must be computed where the Pulumi program runs, whatever platform that is. Tests compare
it with `openssl passwd -6` and with glibc through HAProxy's own authentication.
"""

from __future__ import annotations

import hashlib

_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# The byte order in which the 64-byte digest is encoded, three bytes per four characters.
_ORDER = (
    (0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26), (6, 27, 48),
    (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32), (12, 33, 54),
    (34, 55, 13), (56, 14, 35), (15, 36, 57), (37, 58, 16), (59, 17, 38), (18, 39, 60),
    (40, 61, 19), (62, 20, 41),
)
SALT_ALPHABET = _ALPHABET
DEFAULT_ROUNDS = 5000


def _b64(value: int, chars: int) -> str:
    out = []
    for _ in range(chars):
        out.append(_ALPHABET[value & 0x3F])
        value >>= 6
    return "".join(out)


def _repeat(digest: bytes, length: int) -> bytes:
    return (digest * (length // 64 + 1))[:length]


def sha512_crypt(password: str, salt: str, rounds: int = DEFAULT_ROUNDS) -> str:
    """Return the `$6$salt$hash` string glibc's crypt() gives for this password and salt."""
    if not 1000 <= rounds <= 999_999_999:
        raise ValueError("rounds must be within 1000..999999999")
    if not salt or len(salt) > 16 or any(c not in _ALPHABET for c in salt):
        raise ValueError("salt must be 1..16 characters of [./0-9A-Za-z]")
    pw, sb = password.encode(), salt.encode()

    alt = hashlib.sha512(pw + sb + pw).digest()
    a = hashlib.sha512(pw + sb + _repeat(alt, len(pw)))
    n = len(pw)
    while n:
        a.update(alt if n & 1 else pw)
        n >>= 1
    digest = a.digest()

    p_bytes = _repeat(hashlib.sha512(pw * len(pw)).digest(), len(pw))
    s_bytes = _repeat(hashlib.sha512(sb * (16 + digest[0])).digest(), len(sb))

    for i in range(rounds):
        c = hashlib.sha512(p_bytes if i & 1 else digest)
        if i % 3:
            c.update(s_bytes)
        if i % 7:
            c.update(p_bytes)
        c.update(digest if i & 1 else p_bytes)
        digest = c.digest()

    encoded = "".join(_b64((digest[x] << 16) | (digest[y] << 8) | digest[z], 4) for x, y, z in _ORDER)
    encoded += _b64(digest[63], 2)
    prefix = "$6$" if rounds == DEFAULT_ROUNDS else f"$6$rounds={rounds}$"
    return f"{prefix}{salt}${encoded}"


def derived_salt(*parts: str) -> str:
    """A 16-character salt derived from stable, non-secret inputs (never from the password).

    Deriving it from the password would let an attacker test guesses with one SHA-256 instead
    of 5000 rounds of SHA-512; deriving it from the stack and user keeps it unique per
    deployment and identical between runs, so previews stay clean.
    """
    digest = hashlib.sha256("\0".join(("haproxy-ha", *parts)).encode()).digest()
    return "".join(_ALPHABET[b & 0x3F] for b in digest[:16])
