"""NVIDIA confidential-computing attestation, the verifier's side (``docs/PROOF_OF_GPU.md``,
"Hardware attestation"): pure, no Django.

A provider whose GPUs run in confidential-computing mode collects their evidence for a nonce the
marketplace issued and has NVIDIA's Remote Attestation Service (NRAS) appraise it. NRAS answers
with a detached Entity Attestation Token: ``[["JWT", platform token], {"GPU-0": GPU token, ...}]``.
The platform token carries the overall result, the nonce and, per GPU, the SHA-256 digest of that
GPU's token; each GPU token carries NRAS's appraisal of that GPU (measurements, secure boot,
debug state, the chip). Every token is an ES384 JWT signed by a key that NRAS publishes in its
JWKS with an X.509 chain (``x5c``).

``verify`` accepts the bundle only if every token's key is in the key set, every key's chain leads
to a configured root and is valid now, the signatures hold, the tokens are fresh and from the
expected issuer, the nonce is the one issued, the digests bind the GPU tokens to the platform
token, and every GPU's claims satisfy the policy.
"""

import base64
import hashlib
import hmac
import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

MAX_BUNDLE_BYTES = 256 * 1024
SDK_REMOTE_CLAIMS = "REMOTE_GPU_CLAIMS"
MAX_GPUS = 64
# What NRAS checked and must have found true, per GPU.
REQUIRED_TRUE = (
    "x-nvidia-gpu-arch-check",
    "x-nvidia-gpu-attestation-report-parsed",
    "x-nvidia-gpu-attestation-report-cert-chain-validated",
    "x-nvidia-gpu-attestation-report-signature-verified",
    "x-nvidia-gpu-attestation-report-nonce-match",
    "x-nvidia-gpu-driver-rim-fetched",
    "x-nvidia-gpu-driver-rim-schema-validated",
    "x-nvidia-gpu-driver-rim-signature-verified",
    "x-nvidia-gpu-driver-rim-cert-validated",
    "x-nvidia-gpu-driver-rim-measurements-available",
    "x-nvidia-gpu-vbios-rim-fetched",
    "x-nvidia-gpu-vbios-rim-schema-validated",
    "x-nvidia-gpu-vbios-rim-signature-verified",
    "x-nvidia-gpu-vbios-rim-cert-validated",
    "x-nvidia-gpu-vbios-rim-measurements-available",
    "x-nvidia-gpu-vbios-index-no-conflict",
    "secboot",
)


class Rejected(ValueError):
    """The bundle does not attest: ``code`` says which rule failed, the message what was found."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Malformed(ValueError):
    """The bundle is not shaped like an NRAS answer: nothing was verified."""


@dataclass(frozen=True)
class Policy:
    issuer: str = "https://nras.attestation.nvidia.com"
    # chip (the first word of ``hwmodel``) → the catalog's architecture
    chips: dict[str, str] = field(
        default_factory=lambda: {"GH100": "Hopper", "GB100": "Blackwell", "GB102": "Blackwell", "GB202": "Blackwell"}
    )
    min_driver_version: str = "535.0"
    max_age_seconds: int = 600  # between NRAS's appraisal and its arrival here
    leeway_seconds: int = 60  # clocks differ


@dataclass(frozen=True)
class AttestedGpu:
    name: str  # "GPU-0", as NRAS lists it
    ueid: str  # the GPU's unique identity
    architecture: str  # catalog architecture, from the chip
    hwmodel: str
    driver_version: str
    vbios_version: str


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        return ()


class KeySet:
    """NRAS's signing keys whose certificate chains lead to a trusted root and are valid now."""

    def __init__(self, keys: dict[str, ec.EllipticCurvePublicKey], refused: dict[str, str]) -> None:
        self.keys, self.refused = keys, refused

    @classmethod
    def from_jwks(cls, jwks: Any, roots: list[x509.Certificate], now: datetime) -> "KeySet":
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise Malformed("the key set is not a JWKS (an object with a list of keys)")
        keys: dict[str, ec.EllipticCurvePublicKey] = {}
        refused: dict[str, str] = {}
        for entry in jwks["keys"]:
            kid = str(entry.get("kid", "")) if isinstance(entry, dict) else ""
            try:
                keys[kid] = _trusted_key(entry, roots, now)
            except (Rejected, ValueError, TypeError) as exc:
                refused[kid] = str(exc)
        return cls(keys, refused)

    def key(self, kid: str) -> ec.EllipticCurvePublicKey:
        if kid in self.keys:
            return self.keys[kid]
        if kid in self.refused:
            raise Rejected("untrusted_key", f"the signing key {kid!r} is not trusted: {self.refused[kid]}")
        raise Rejected("unknown_key", f"no signing key {kid!r} in the attestation service's key set")


def _trusted_key(entry: dict, roots: list[x509.Certificate], now: datetime) -> ec.EllipticCurvePublicKey:
    chain_b64 = entry.get("x5c")
    if not isinstance(chain_b64, list) or not chain_b64:
        raise Rejected("untrusted_key", "the key has no certificate chain")
    chain = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in chain_b64]
    for cert in chain:
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise Rejected("untrusted_key", f"the certificate {cert.subject.rfc4514_string()} is not valid now")
    for child, parent in itertools.pairwise(chain):
        _issued_by(child, parent)
    last = chain[-1]
    anchors = [root for root in roots if root.subject == last.issuer or root == last]
    if not any(_signed_by(last, root) for root in anchors):
        raise Rejected("untrusted_key", f"the chain does not lead to a trusted root ({last.issuer.rfc4514_string()})")
    leaf_key = chain[0].public_key()
    jwk_key = jwt.PyJWK(entry, algorithm="ES384").key
    if not isinstance(leaf_key, ec.EllipticCurvePublicKey) or leaf_key.public_numbers() != jwk_key.public_numbers():
        raise Rejected("untrusted_key", "the key is not the one its certificate certifies")
    return leaf_key


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> None:
    if not _signed_by(child, parent):
        raise Rejected("untrusted_key", f"{child.subject.rfc4514_string()} is not signed by the next certificate")
    constraints = parent.extensions.get_extension_for_class(x509.BasicConstraints).value
    if not constraints.ca:
        raise Rejected("untrusted_key", f"{parent.subject.rfc4514_string()} is not a certificate authority")


def _signed_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def parse_bundle(raw: Any) -> tuple[str, dict[str, str]]:
    """The platform token and the GPU tokens, by name, from NRAS's answer (a JSON text or the
    decoded list)."""
    if isinstance(raw, str):
        if len(raw) > MAX_BUNDLE_BYTES:
            raise Malformed(f"the token is longer than {MAX_BUNDLE_BYTES} bytes")
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise Malformed('the token is not JSON: NRAS answers [["JWT", token], {"GPU-0": token}]') from exc
    if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], list) and isinstance(raw[1], dict)):
        raise Malformed('the token is not NRAS\'s detached form [["JWT", token], {"GPU-0": token, ...}]')
    if set(raw[1]) == {SDK_REMOTE_CLAIMS}:
        # NVIDIA's attestation SDK wraps NRAS's answer in a token of its own (signed by the SDK, not
        # NVIDIA: it proves nothing): the answer is inside
        raw = raw[1][SDK_REMOTE_CLAIMS]
        if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], list) and isinstance(raw[1], dict)):
            raise Malformed(f"{SDK_REMOTE_CLAIMS} does not hold NRAS's detached token")
    head, gpus = raw
    if len(head) != 2 or head[0] != "JWT" or not isinstance(head[1], str):
        raise Malformed('the first element must be ["JWT", platform token]')
    if not gpus or len(gpus) > MAX_GPUS or not all(isinstance(k, str) and isinstance(v, str) for k, v in gpus.items()):
        raise Malformed(f"the second element must map 1 to {MAX_GPUS} GPU names to their tokens")
    return head[1], gpus


def _decode(token: str, keys: KeySet, policy: Policy, now: datetime, what: str) -> dict:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError as exc:
        raise Malformed(f"{what} is not a JWT") from exc
    if header.get("alg") != "ES384":
        raise Rejected("bad_signature", f"{what} is signed with {header.get('alg')!r}, not ES384")
    key = keys.key(str(header.get("kid", "")))
    try:
        claims = jwt.decode(
            token,
            key=key,
            algorithms=["ES384"],
            issuer=policy.issuer,
            leeway=policy.leeway_seconds,
            options={"require": ["exp", "iat", "nbf", "iss"], "verify_aud": False},
        )
    except jwt.InvalidSignatureError as exc:
        raise Rejected("bad_signature", f"{what}: the signature does not verify") from exc
    except jwt.ExpiredSignatureError as exc:
        raise Rejected("expired", f"{what} has expired") from exc
    except jwt.InvalidIssuerError as exc:
        raise Rejected("wrong_issuer", f"{what} is not from {policy.issuer}") from exc
    except jwt.InvalidTokenError as exc:
        raise Rejected("invalid_token", f"{what}: {exc}") from exc
    if now.timestamp() - float(claims["iat"]) > policy.max_age_seconds + policy.leeway_seconds:
        raise Rejected("expired", f"{what} was issued more than {policy.max_age_seconds} s ago")
    return claims


def verify(raw: Any, *, nonce: str, keys: KeySet, policy: Policy, now: datetime | None = None) -> list[AttestedGpu]:
    """The GPUs the bundle attests, or ``Rejected`` (``Malformed`` if it is not a bundle at all)."""
    now = now or datetime.now(UTC)
    platform_token, gpu_tokens = parse_bundle(raw)
    platform = _decode(platform_token, keys, policy, now, "the platform token")
    if platform.get("x-nvidia-overall-att-result") is not True:
        raise Rejected("not_attested", "the attestation service did not find the platform trustworthy")
    _nonce_matches(platform, nonce, "the platform token")
    digests = platform.get("submods")
    if not isinstance(digests, dict) or set(digests) != set(gpu_tokens):
        raise Rejected("unbound_gpu", "the platform token does not name exactly the GPU tokens sent")
    attested = []
    for name, token in sorted(gpu_tokens.items()):
        expected = digests[name]
        actual = hashlib.sha256(token.encode()).hexdigest()
        if not (
            isinstance(expected, list)
            and len(expected) == 2
            and expected[0] == "DIGEST"
            and isinstance(expected[1], list)
            and len(expected[1]) == 2
            and expected[1][0] == "SHA-256"
            and isinstance(expected[1][1], str)
            and hmac.compare_digest(expected[1][1].lower(), actual)
        ):
            raise Rejected("unbound_gpu", f"{name}'s token is not the one the platform token names")
        attested.append(_gpu(name, _decode(token, keys, policy, now, f"{name}'s token"), nonce, policy))
    ueids = [gpu.ueid for gpu in attested]
    if len(set(ueids)) != len(ueids):
        raise Rejected("duplicate_gpu", "the same GPU is listed twice")
    return attested


def _nonce_matches(claims: dict, nonce: str, what: str) -> None:
    if not hmac.compare_digest(str(claims.get("eat_nonce", "")).lower(), nonce.lower()):
        raise Rejected("nonce_mismatch", f"{what} is for another nonce than the one issued")


def _gpu(name: str, claims: dict, nonce: str, policy: Policy) -> AttestedGpu:
    _nonce_matches(claims, nonce, f"{name}'s token")
    failed = [claim for claim in REQUIRED_TRUE if claims.get(claim) is not True]
    if failed:
        raise Rejected("claims_failed", f"{name}: not true: {', '.join(failed)}")
    if claims.get("measres") != "success":
        raise Rejected("measurements_mismatch", f"{name}: its measurements do not match the reference values")
    if claims.get("dbgstat") != "disabled":
        raise Rejected("debug_enabled", f"{name}: debug mode is {claims.get('dbgstat')!r}, not disabled")
    hwmodel = str(claims.get("hwmodel", ""))
    chip = hwmodel.split(" ", 1)[0]
    if chip not in policy.chips:
        raise Rejected("unknown_chip", f"{name}: the chip {hwmodel!r} is not one the policy accepts")
    driver = str(claims.get("x-nvidia-gpu-driver-version", ""))
    if _version(driver) < _version(policy.min_driver_version):
        raise Rejected("old_driver", f"{name}: driver {driver!r} is older than {policy.min_driver_version}")
    ueid = str(claims.get("ueid", ""))
    if not ueid:
        raise Rejected("claims_failed", f"{name}: no ueid")
    return AttestedGpu(
        name=name,
        ueid=ueid,
        architecture=policy.chips[chip],
        hwmodel=hwmodel,
        driver_version=driver,
        vbios_version=str(claims.get("x-nvidia-gpu-vbios-version", "")),
    )
