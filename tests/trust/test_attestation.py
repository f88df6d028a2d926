"""Hardware attestation, the verifier: NRAS's detached tokens in their real format, signed for real
with keys and certificates generated here; every rule of the policy refuses the bundle that breaks
it, and nothing malformed gets past the parser."""

import base64
import copy
import json
import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from tests.trust.nras import KID, Nras, bundle, sign
from trust import attestation
from trust.attestation import KeySet, Malformed, Policy, Rejected, verify

NONCE = "4d6e0c49321d22daa9bd7fc2205e381f9506c20e77dd5082ecf5e124ec0f4618"


@pytest.fixture(scope="module")
def nras() -> Nras:
    return Nras.create()


def keys_for(nras: Nras, *, now: datetime | None = None, jwks: dict | None = None) -> KeySet:
    return KeySet.from_jwks(jwks or nras.jwks(), [nras.root], now or datetime.now(UTC))


def test_an_h100_in_confidential_computing_mode_attests(nras: Nras) -> None:
    gpus = verify(bundle(nras.key, NONCE, gpus=2), nonce=NONCE, keys=keys_for(nras), policy=Policy())
    assert [(g.name, g.architecture, g.driver_version) for g in gpus] == [
        ("GPU-0", "Hopper", "570.133.20"),
        ("GPU-1", "Hopper", "570.133.20"),
    ]
    assert len({g.ueid for g in gpus}) == 2
    as_text = json.dumps(bundle(nras.key, NONCE))  # as the agent sends it: the JSON text
    assert verify(as_text, nonce=NONCE.upper(), keys=keys_for(nras), policy=Policy())[0].hwmodel.startswith("GH100")
    # as NVIDIA's attestation SDK returns it: NRAS's answer inside the SDK's own (unsigned by NVIDIA) wrapper
    outer = jwt.encode({"sub": "overall"}, "a key of the SDK, not of NVIDIA: 32+ bytes", algorithm="HS256")
    wrapped = [["JWT", outer], {"REMOTE_GPU_CLAIMS": bundle(nras.key, NONCE)}]
    assert len(verify(wrapped, nonce=NONCE, keys=keys_for(nras), policy=Policy())) == 1
    with pytest.raises(Malformed):
        verify([["JWT", outer], {"REMOTE_GPU_CLAIMS": "x"}], nonce=NONCE, keys=keys_for(nras), policy=Policy())


@pytest.mark.parametrize(
    ("gpu", "platform", "code"),
    [
        ({"measres": "fail"}, {}, "measurements_mismatch"),
        ({"dbgstat": "enabled"}, {}, "debug_enabled"),
        ({"secboot": False}, {}, "claims_failed"),
        ({"x-nvidia-gpu-attestation-report-nonce-match": False}, {}, "claims_failed"),
        ({"x-nvidia-gpu-driver-rim-signature-verified": None}, {}, "claims_failed"),
        ({"hwmodel": "AD102 A01"}, {}, "unknown_chip"),
        ({"x-nvidia-gpu-driver-version": "525.60.13"}, {}, "old_driver"),
        ({"eat_nonce": "00" * 32}, {}, "nonce_mismatch"),
        ({"iss": "https://attacker.example"}, {}, "wrong_issuer"),
        ({}, {"x-nvidia-overall-att-result": False}, "not_attested"),
        ({}, {"eat_nonce": "11" * 32}, "nonce_mismatch"),
    ],
)
def test_each_rule_refuses_what_breaks_it(nras: Nras, gpu: dict, platform: dict, code: str) -> None:
    with pytest.raises(Rejected) as refused:
        verify(bundle(nras.key, NONCE, gpu=gpu, platform=platform), nonce=NONCE, keys=keys_for(nras), policy=Policy())
    assert refused.value.code == code


def test_a_token_for_another_nonce_an_old_token_and_a_replay_are_refused(nras: Nras) -> None:
    with pytest.raises(Rejected, match="another nonce"):
        verify(bundle(nras.key, "ab" * 32), nonce=NONCE, keys=keys_for(nras), policy=Policy())
    stale = bundle(nras.key, NONCE, issued=time.time() - 3000)  # appraised 50 minutes ago, still unexpired
    with pytest.raises(Rejected) as refused:
        verify(stale, nonce=NONCE, keys=keys_for(nras), policy=Policy())
    assert refused.value.code == "expired"
    expired = bundle(nras.key, NONCE, issued=time.time() - 7200)
    with pytest.raises(Rejected, match="expired"):
        verify(expired, nonce=NONCE, keys=keys_for(nras), policy=Policy())


def test_tokens_not_bound_together_are_refused(nras: Nras) -> None:
    first, second = bundle(nras.key, NONCE, gpus=2), bundle(nras.key, NONCE, gpus=2)
    swapped = [first[0], {"GPU-0": second[1]["GPU-0"], "GPU-1": first[1]["GPU-1"]}]  # a GPU from another answer
    with pytest.raises(Rejected) as refused:
        verify(swapped, nonce=NONCE, keys=keys_for(nras), policy=Policy())
    assert refused.value.code == "unbound_gpu"
    missing = [first[0], {"GPU-0": first[1]["GPU-0"]}]
    with pytest.raises(Rejected, match="exactly the GPU tokens"):
        verify(missing, nonce=NONCE, keys=keys_for(nras), policy=Policy())
    twice = bundle(nras.key, NONCE, gpus=2, gpu={"ueid": "7"})  # one card listed as two
    with pytest.raises(Rejected, match="twice"):
        verify(twice, nonce=NONCE, keys=keys_for(nras), policy=Policy())


def test_signatures_and_keys_outside_the_trusted_chain_are_refused(nras: Nras) -> None:
    impostor = Nras.create()  # its own root: valid certificates, but not ours
    with pytest.raises(Rejected) as refused:
        verify(bundle(impostor.key, NONCE), nonce=NONCE, keys=keys_for(nras), policy=Policy())
    assert refused.value.code == "bad_signature"  # signed by a key other than the one its kid names
    foreign = KeySet.from_jwks(impostor.jwks(), [nras.root], datetime.now(UTC))
    with pytest.raises(Rejected) as refused:
        verify(bundle(impostor.key, NONCE), nonce=NONCE, keys=foreign, policy=Policy())
    assert refused.value.code == "untrusted_key" and "trusted root" in str(refused.value)

    token = bundle(nras.key, NONCE)
    token[0][1] = sign(nras.key, {"iss": "x"}, kid="another-key")
    with pytest.raises(Rejected) as refused:
        verify(token, nonce=NONCE, keys=keys_for(nras), policy=Policy())
    assert refused.value.code == "unknown_key"

    tampered = bundle(nras.key, NONCE)
    header, payload, signature = tampered[0][1].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["x-nvidia-overall-att-result"] = True
    claims["eat_nonce"] = NONCE
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    tampered[0][1] = f"{header}.{forged}.{signature}"
    with pytest.raises(Rejected) as refused:
        verify(tampered, nonce=NONCE, keys=keys_for(nras), policy=Policy())
    assert refused.value.code == "bad_signature"

    unsigned = sign(nras.key, {"iss": "x"})
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": KID}).encode()).rstrip(b"=").decode()
    token = bundle(nras.key, NONCE)
    token[0][1] = header + "." + unsigned.split(".")[1] + "."
    with pytest.raises(Rejected, match="not ES384"):
        verify(token, nonce=NONCE, keys=keys_for(nras), policy=Policy())


def test_a_key_whose_chain_is_broken_or_out_of_date_is_not_trusted(nras: Nras) -> None:
    later = datetime.now(UTC) + timedelta(days=60)  # past the signing certificate's 30 days
    assert "not valid now" in keys_for(nras, now=later).refused[KID]
    jwks = copy.deepcopy(nras.jwks())
    jwks["keys"][0]["x5c"] = jwks["keys"][0]["x5c"][:1]  # the intermediate left out
    assert "trusted root" in keys_for(nras, jwks=jwks).refused[KID]
    jwks = copy.deepcopy(nras.jwks())
    other = Nras.create().jwks()["keys"][0]
    jwks["keys"][0]["x"], jwks["keys"][0]["y"] = other["x"], other["y"]  # a key its certificate does not name
    assert "not the one its certificate certifies" in keys_for(nras, jwks=jwks).refused[KID]
    jwks = copy.deepcopy(nras.jwks())
    del jwks["keys"][0]["x5c"]
    assert "no certificate chain" in keys_for(nras, jwks=jwks).refused[KID]
    with pytest.raises(Rejected, match="not trusted"):
        verify(bundle(nras.key, NONCE), nonce=NONCE, keys=keys_for(nras, jwks=jwks), policy=Policy())


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "not json",
        "{}",
        "[]",
        '[["JWT"], {}]',
        '[["JWS", "a.b.c"], {"GPU-0": "a.b.c"}]',
        '[["JWT", "a.b.c"], {}]',
        '[["JWT", "a.b.c"], {"GPU-0": 7}]',
        '[["JWT", "not a jwt"], {"GPU-0": "x"}]',
        "x" * (attestation.MAX_BUNDLE_BYTES + 1),
        ["JWT", "a.b.c"],
        None,
    ],
)
def test_malformed_bundles_are_refused_before_any_check(nras: Nras, raw: object) -> None:
    with pytest.raises(Malformed):
        verify(raw, nonce=NONCE, keys=keys_for(nras), policy=Policy())
    with pytest.raises(Malformed):
        KeySet.from_jwks({"keys": "nope"}, [nras.root], datetime.now(UTC))
