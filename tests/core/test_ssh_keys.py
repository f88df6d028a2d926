"""SSH keys on the account: OpenSSH's own keys (made by a real ssh-keygen) are accepted, named by the
fingerprint ssh-keygen prints, and handed to every lease the client rents; anything else is a clear 400."""

import shutil
import subprocess
from pathlib import Path

import pytest

from agent.lifecycle import manifest_from
from core.models import SshKey
from core.ssh import KeyProblem, parse_public_key
from marketplace import services as market
from tests import factories as f
from tests.factories import USD

pytestmark = pytest.mark.skipif(not shutil.which("ssh-keygen"), reason="needs OpenSSH's ssh-keygen")


def keygen(tmp_path: Path, kind: str, bits: int | None = None, comment: str = "me@laptop") -> tuple[str, str]:
    """A fresh key pair's public line and the fingerprint ``ssh-keygen -l`` gives it."""
    path = tmp_path / f"{kind}-{bits}"
    args = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", comment, "-f", str(path)]
    if bits:
        args += ["-b", str(bits)]
    subprocess.run(args, check=True, capture_output=True)
    listed = subprocess.run(["ssh-keygen", "-lf", f"{path}.pub"], check=True, capture_output=True, text=True)
    return Path(f"{path}.pub").read_text(), listed.stdout.split()[1]


@pytest.mark.parametrize(
    ("kind", "bits"), [("ed25519", None), ("ecdsa", 256), ("ecdsa", 384), ("ecdsa", 521), ("rsa", 2048), ("rsa", 4096)]
)
def test_openssh_keys_are_accepted_with_their_fingerprint(tmp_path: Path, kind: str, bits: int | None) -> None:
    line, fingerprint = keygen(tmp_path, kind, bits)
    key = parse_public_key(line)
    assert key.fingerprint == fingerprint and key.comment == "me@laptop"
    assert line.startswith(key.line + " ") and key.kind == line.split()[0]


def test_what_is_not_an_acceptable_public_key_says_why(tmp_path: Path) -> None:
    weak, _ = keygen(tmp_path, "rsa", 1024)
    dsa = "ssh-dss AAAAB3NzaC1kc3MAAACBAP" + "A" * 200 + " old@box"
    ed25519, _ = keygen(tmp_path, "ed25519")
    private = (tmp_path / "ed25519-None").read_text()
    other, _ = keygen(tmp_path, "ecdsa", 256)
    cases = {
        weak: "This RSA key has 1024 bits: at least 2048 are needed.",
        dsa: "DSA keys are refused",
        private: "That is a private key",
        "": "Paste your public key",
        "ssh-ed25519": "A public key is its type, then its base64 data",
        "ssh-ed25519 not-base64!! me": "not a valid public key",
        f"ssh-ed25519 {other.split()[1]}": "not a valid public key",  # the data of another type
        ed25519 + other: "One key at a time",
        "ssh-foo AAAA": "Unsupported key type 'ssh-foo'",
        "x" * 20_000: "At most 16384 characters",
    }
    for text, why in cases.items():
        with pytest.raises(KeyProblem, match=why.replace("(", r"\(").replace(")", r"\)")):
            parse_public_key(text)


@pytest.mark.django_db
def test_the_api_adds_lists_and_removes_keys(tmp_path: Path) -> None:
    client = f.client_user()
    api = f.api(client, f.CLIENT)
    line, fingerprint = keygen(tmp_path, "ed25519")
    added = api.post("/api/v1/account/ssh-keys/", {"name": "laptop", "public_key": line}, format="json")
    assert added.status_code == 201
    body = added.json()
    assert body["fingerprint"] == fingerprint and body["kind"] == "ssh-ed25519" and body["name"] == "laptop"
    assert body["public_key"] == " ".join(line.split()[:2])  # without the comment
    assert [k["id"] for k in api.get("/api/v1/account/ssh-keys/").json()] == [body["id"]]
    # the same key again: a conflict that names the first
    again = api.post("/api/v1/account/ssh-keys/", {"name": "again", "public_key": line}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "duplicate_ssh_key"
    # bad input: one JSON shape naming the field, and nothing written
    for bad in ({"name": "x", "public_key": "ssh-rsa AAAA"}, {"name": "", "public_key": line}, {"name": "x"}):
        refused = api.post("/api/v1/account/ssh-keys/", bad, format="json")
        assert refused.status_code == 400 and refused.json()["error"]["fields"], bad
    assert SshKey.objects.count() == 1
    # someone else's key is not found; a provider or read-only token does not touch a client's keys
    stranger = f.api(f.client_user(), f.CLIENT)
    assert stranger.delete(f"/api/v1/account/ssh-keys/{body['id']}/").status_code == 404
    assert (
        f.api(client, f.READ_ONLY).post("/api/v1/account/ssh-keys/", {"name": "r", "public_key": line}).status_code
        == 403
    )
    assert f.api(f.provider().user, f.PROVIDER).get("/api/v1/account/ssh-keys/").status_code == 403
    assert api.delete(f"/api/v1/account/ssh-keys/{body['id']}/").status_code == 204
    assert api.get("/api/v1/account/ssh-keys/").json() == []
    assert api.delete("/api/v1/account/ssh-keys/99999999999999999999/").status_code == 404


@pytest.mark.django_db
def test_the_account_page_adds_and_removes_keys_and_keeps_a_refused_one_as_typed(tmp_path: Path) -> None:
    from tests.web.test_pages import browser, post

    client = f.client_user()
    c = browser(client)
    assert "No SSH keys yet" in c.get("/account/").content.decode()
    weak, _ = keygen(tmp_path, "rsa", 1024)
    refused = post(c, "/account/ssh-keys/", {"ssh-name": "old laptop", "ssh-public_key": weak})
    html = refused.content.decode()
    assert refused.status_code == 400 and "at least 2048 are needed" in html and 'value="old laptop"' in html
    line, fingerprint = keygen(tmp_path, "ed25519")
    assert post(c, "/account/ssh-keys/", {"ssh-name": "laptop", "ssh-public_key": line}).status_code == 302
    page = c.get("/account/").content.decode()
    assert fingerprint in page and "laptop" in page and f"SSH key “laptop” added ({fingerprint})." in page
    key = SshKey.objects.get()
    assert post(c, f"/account/ssh-keys/{key.pk}/remove/", {}).status_code == 302
    assert not SshKey.objects.exists()


@pytest.mark.django_db
def test_every_lease_receives_the_clients_keys_as_public_key(tmp_path: Path) -> None:
    client = f.client_user(balance=100 * USD)
    first, _ = keygen(tmp_path, "ed25519", comment="a")
    second, _ = keygen(tmp_path, "ecdsa", 256, comment="b")
    api = f.api(client, f.CLIENT)
    for name, line in (("laptop", first), ("desktop", second)):
        assert (
            api.post("/api/v1/account/ssh-keys/", {"name": name, "public_key": line}, format="json").status_code == 201
        )
    provider = f.provider()
    order = f.order(client)
    lease = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(provider, order, USD).pk)
    data = f.api(provider.user, f.PROVIDER).get(f"/api/v1/leases/{lease.pk}/manifest/").json()
    keys = [" ".join(first.split()[:2]), " ".join(second.split()[:2])]
    assert data["ssh_authorized_keys"] == keys
    manifest = manifest_from(data)
    assert manifest.workload_env()["PUBLIC_KEY"] == "\n".join(keys)
    # a workload that sets PUBLIC_KEY itself keeps its own
    own = manifest_from({**data, "env": {"PUBLIC_KEY": "ssh-ed25519 AAAAmine"}})
    assert own.workload_env()["PUBLIC_KEY"] == "ssh-ed25519 AAAAmine"
    # without keys, no PUBLIC_KEY at all
    assert "PUBLIC_KEY" not in manifest_from({**data, "ssh_authorized_keys": []}).workload_env()
