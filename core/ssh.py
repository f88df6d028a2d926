"""OpenSSH public keys, as a client pastes them (``ssh-ed25519 AAAA… me@laptop``): parsed with
``cryptography``, held to what a current OpenSSH accepts, and named by their SHA256 fingerprint."""

import base64
import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

MIN_RSA_BITS = 2048
MAX_KEY_CHARS = 16_384  # an RSA key of 16,384 bits is under 3,000 characters
CURVES = {"secp256r1", "secp384r1", "secp521r1"}
TYPES = {"ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"}


class KeyProblem(ValueError):
    """Why a text is not an acceptable public key, in words for the person who pasted it."""


@dataclass(frozen=True)
class PublicKey:
    kind: str  # ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa…
    line: str  # "<type> <base64>", without the comment: what goes into authorized_keys
    comment: str
    fingerprint: str  # "SHA256:…", as ``ssh-keygen -lf`` prints it


def parse_public_key(text: str) -> PublicKey:
    """The key in ``text`` (one line of an ``.pub`` file), or KeyProblem."""
    if not isinstance(text, str) or not text.strip():
        raise KeyProblem("Paste your public key: the one line of your .pub file, e.g. ssh-ed25519 AAAA… you@host.")
    if len(text) > MAX_KEY_CHARS:
        raise KeyProblem(f"At most {MAX_KEY_CHARS} characters: a public key is one line.")
    if "PRIVATE KEY" in text:
        raise KeyProblem("That is a private key: never share it. Paste the .pub file's line instead.")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) != 1:
        raise KeyProblem("One key at a time: paste a single line.")
    parts = lines[0].split(maxsplit=2)
    if len(parts) < 2:
        raise KeyProblem("A public key is its type, then its base64 data, e.g. ssh-ed25519 AAAA….")
    kind, data = parts[0], parts[1]
    comment = parts[2].strip() if len(parts) > 2 else ""
    if kind == "ssh-dss":
        raise KeyProblem("DSA keys are refused by current OpenSSH: use ssh-keygen -t ed25519.")
    if kind not in TYPES:
        raise KeyProblem(
            f"Unsupported key type {kind[:40]!r}: use ed25519, ECDSA or RSA of {MIN_RSA_BITS} bits or more."
        )
    try:
        blob = base64.b64decode(data, validate=True)
        key = load_ssh_public_key(f"{kind} {data}".encode())
    except (ValueError, TypeError, base64.binascii.Error) as exc:  # type: ignore[attr-defined]  # binascii.Error is base64's
        raise KeyProblem("The key's data is not a valid public key: paste the whole line, unchanged.") from exc
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise KeyProblem(f"This RSA key has {key.key_size} bits: at least {MIN_RSA_BITS} are needed.")
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name not in CURVES:
        raise KeyProblem("Unsupported elliptic curve.")
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise KeyProblem("Unsupported key type.")
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return PublicKey(kind=kind, line=f"{kind} {data}", comment=comment[:200], fingerprint=f"SHA256:{digest}")
