"""A stand-in for NVIDIA's Remote Attestation Service in tests: a root CA, an intermediate and a
signing key generated here, a JWKS with the chain, and detached EAT bundles in NRAS's format with
the claims NRAS gives an H100 in confidential-computing mode. Tokens are signed for real (ES384),
so the verifier checks real signatures and chains.

Run as a program (the agent's ``attestation_command`` in tests): prints a bundle for the nonce in
``GPUMARKET_ATTESTATION_NONCE``, signed with the key in the PEM file named by ``NRAS_TEST_KEY``.
"""

import base64
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from trust.attestation import REQUIRED_TRUE

ISSUER = "https://nras.attestation.nvidia.com"
KID = "nras-test-key-1"


def _name(common: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Attestation"),
            x509.NameAttribute(NameOID.COMMON_NAME, common),
        ]
    )


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    days: int = 30,
    start: datetime | None = None,
) -> x509.Certificate:
    start = start or datetime.now(UTC) - timedelta(days=1)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA384())
    )


@dataclass
class Nras:
    root: x509.Certificate
    intermediate: x509.Certificate
    leaf: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, *, leaf_start: datetime | None = None, leaf_days: int = 30) -> "Nras":
        root_key, mid_key, key = (ec.generate_private_key(ec.SECP384R1()) for _ in range(3))
        root = _cert("Test Attestation Root CA", root_key, "Test Attestation Root CA", root_key, ca=True, days=3650)
        intermediate = _cert("Test Attestation Intermediate", mid_key, "Test Attestation Root CA", root_key, ca=True)
        leaf = _cert(
            "Test NRAS Signing",
            key,
            "Test Attestation Intermediate",
            mid_key,
            ca=False,
            days=leaf_days,
            start=leaf_start,
        )
        return cls(root, intermediate, leaf, key)

    def root_pem(self) -> str:
        return self.root.public_bytes(serialization.Encoding.PEM).decode()

    def key_pem(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    def jwks(self) -> dict:
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        chain = [cert.public_bytes(serialization.Encoding.DER) for cert in (self.leaf, self.intermediate)]
        return {
            "keys": [
                {**jwk, "kid": KID, "alg": "ES384", "use": "sig", "x5c": [base64.b64encode(c).decode() for c in chain]}
            ]
        }


def gpu_claims(nonce: str, index: int, **overrides: Any) -> dict:
    claims = {
        "iss": ISSUER,
        "eat_nonce": nonce,
        "ueid": str(642960189298007511250958030500749152730221142468 + index),
        "hwmodel": "GH100 A01 GSP BROM",
        "oemid": "5703",
        "secboot": True,
        "dbgstat": "disabled",
        "measres": "success",
        "x-nvidia-gpu-driver-version": "570.133.20",
        "x-nvidia-gpu-vbios-version": "96.00.CF.00.02",
        "x-nvidia-attestation-warning": None,
    }
    # every check NRAS reports, found true (``secboot`` among them)
    claims.update(dict.fromkeys(REQUIRED_TRUE, True))
    return {**claims, **overrides}


def sign(key: ec.EllipticCurvePrivateKey, claims: dict, *, kid: str = KID, issued: float | None = None) -> str:
    now = int(time.time() if issued is None else issued)
    return jwt.encode(
        {"iat": now, "nbf": now, "exp": now + 3600, **claims}, key, algorithm="ES384", headers={"kid": kid}
    )


def bundle(
    key: ec.EllipticCurvePrivateKey,
    nonce: str,
    *,
    gpus: int = 1,
    gpu: dict | None = None,
    platform: dict | None = None,
    issued: float | None = None,
) -> list:
    """NRAS's answer for ``gpus`` H100s attested for ``nonce`` (claims overridden as given)."""
    tokens = {f"GPU-{i}": sign(key, gpu_claims(nonce, i, **(gpu or {})), issued=issued) for i in range(gpus)}
    submods = {name: ["DIGEST", ["SHA-256", hashlib.sha256(t.encode()).hexdigest()]] for name, t in tokens.items()}
    head = {
        "iss": ISSUER,
        "sub": "NVIDIA-PLATFORM-ATTESTATION",
        "x-nvidia-ver": "2.0",
        "eat_nonce": nonce,
        "x-nvidia-overall-att-result": True,
        "submods": submods,
        **(platform or {}),
    }
    return [["JWT", sign(key, head, issued=issued)], tokens]


if __name__ == "__main__":  # the agent's attestation command in tests
    with open(os.environ["NRAS_TEST_KEY"], "rb") as handle:
        signing_key = serialization.load_pem_private_key(handle.read(), password=None)
    count = int(os.environ.get("NRAS_TEST_GPUS", "1"))
    sys.stdout.write(json.dumps(bundle(signing_key, os.environ["GPUMARKET_ATTESTATION_NONCE"], gpus=count)))  # type: ignore[arg-type]
