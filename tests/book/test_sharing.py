"""The signed link of chapters/sharing.md, checked offline.

The page's command signs with a service account the reader impersonates, which needs Google. The
storage emulator cannot check a signature either (it serves every request). So the page's command
runs here with a throwaway key in the service account's place (``--private-key-file``, the other
way `gcloud storage sign-url` signs), and every claim the page makes about the link is checked
against what the installed gcloud printed: the object, the verb, the duration in seconds, the
account, and a V4 signature that the key's public half verifies, computed as Google documents it
(https://cloud.google.com/storage/docs/authentication/signatures). No request leaves the
machine: gcloud's proxy is a closed local port, so its check of the new link fails at once.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import shlex
import subprocess
from pathlib import Path
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

import pytest
import yaml
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from microscopy_notebook.paths import BOOK
from tests.book.test_commands import LOGIN_CLASS, blocks

PAGE = BOOK / "chapters" / "sharing.md"
ACCOUNT = "share-links@nexuslims-example.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def command() -> list[str]:
    (block,) = [b for b in blocks(PAGE) if b.options.get("class") == LOGIN_CLASS]
    return shlex.split(block.code)


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, rsa.RSAPublicKey]:
    """A service account key file of the page's account, made here and thrown away."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path = tmp_path_factory.mktemp("key") / "key.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "nexuslims-example",
                "private_key_id": "0",
                "private_key": pem,
                "client_email": ACCOUNT,
                "client_id": "0",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    return path, private.public_key()


def _offline_env(tmp: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp),
        "CLOUDSDK_CONFIG": str(tmp / "gcloud"),
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1",
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "1",
        # Every request through a proxy on a closed port: nothing reaches Google.
        "CLOUDSDK_PROXY_TYPE": "http",
        "CLOUDSDK_PROXY_ADDRESS": "127.0.0.1",
        "CLOUDSDK_PROXY_PORT": "9",
    }


def _canonical_request(url: str) -> str:
    """Google's V4 canonical request for a signed GET of ``url``, without its signature."""
    parts = urlsplit(url)
    query = sorted((k, v) for k, v in parse_qsl(parts.query) if k != "x-goog-signature")
    return "\n".join(
        [
            "GET",
            quote(parts.path, safe="/~"),
            "&".join(f"{k}={quote_plus(v)}" for k, v in query),
            f"host:{parts.netloc}\n",
            "host",
            "UNSIGNED-PAYLOAD",
        ]
    )


def test_the_pages_link_is_a_v4_link_for_the_object_and_duration_it_says(
    command: list[str], key: tuple[Path, rsa.RSAPublicKey], tmp_path: Path
) -> None:
    key_file, public = key
    assert command[:3] == ["gcloud", "storage", "sign-url"]
    assert f"--impersonate-service-account={ACCOUNT}" in command
    resource = command[3]
    signed = [w for w in command if not w.startswith("--impersonate-service-account")]
    signed += [f"--private-key-file={key_file}"]
    before = datetime.datetime.now(datetime.UTC)
    proc = subprocess.run(signed, env=_offline_env(tmp_path), capture_output=True, text=True)
    printed = yaml.safe_load(proc.stdout)
    assert printed, proc.stderr  # the link is printed before gcloud tries it out

    # What the page says it prints: the object, when the link expires, and the link.
    assert printed["resource"] == resource
    assert printed["http_verb"] == "GET"
    url = printed["signed_url"]
    bucket_and_object = resource.removeprefix("gs://")
    assert url.startswith(f"https://storage.googleapis.com/{bucket_and_object}?")
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["x-goog-expires"] == str(12 * 3600)  # the page's --duration=12h, in seconds
    assert query["x-goog-credential"].startswith(f"{ACCOUNT}/")
    assert query["x-goog-algorithm"] == "GOOG4-RSA-SHA256"
    expires = datetime.datetime.strptime(printed["expiration"], "%Y-%m-%d %H:%M:%S")
    expected = before + datetime.timedelta(hours=12)
    assert abs(expires.replace(tzinfo=datetime.UTC) - expected) < datetime.timedelta(minutes=5)

    # The signature: made by the account's key over Google's V4 string-to-sign.
    scope = query["x-goog-credential"].split("/", 1)[1]
    string_to_sign = "\n".join(
        [
            "GOOG4-RSA-SHA256",
            query["x-goog-date"],
            scope,
            hashlib.sha256(_canonical_request(url).encode()).hexdigest(),
        ]
    )
    public.verify(
        bytes.fromhex(query["x-goog-signature"]),
        string_to_sign.encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )


def test_a_link_signed_by_another_key_does_not_verify(
    command: list[str], key: tuple[Path, rsa.RSAPublicKey], tmp_path: Path
) -> None:
    """The check above can fail: a signature from another key is refused."""
    from cryptography.exceptions import InvalidSignature

    key_file, _ = key
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    signed = [w for w in command if not w.startswith("--impersonate-service-account")]
    signed += [f"--private-key-file={key_file}"]
    proc = subprocess.run(signed, env=_offline_env(tmp_path), capture_output=True, text=True)
    url = yaml.safe_load(proc.stdout)["signed_url"]
    query = dict(parse_qsl(urlsplit(url).query))
    scope = query["x-goog-credential"].split("/", 1)[1]
    digest = hashlib.sha256(_canonical_request(url).encode()).hexdigest()
    string_to_sign = f"GOOG4-RSA-SHA256\n{query['x-goog-date']}\n{scope}\n{digest}"
    with pytest.raises(InvalidSignature):
        other.verify(
            bytes.fromhex(query["x-goog-signature"]),
            string_to_sign.encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )


def test_the_page_says_the_longest_life_gcloud_allows(tmp_path: Path) -> None:
    """12 hours when signing as an impersonated account, 7 days with a key: `--help` says so."""
    help_text = subprocess.run(
        ["gcloud", "storage", "sign-url", "--help"],
        env=dict(_offline_env(tmp_path), PAGER="cat"),
        capture_output=True,
        text=True,
    ).stdout
    words = " ".join(help_text.split())
    assert "The max duration allowed is 12 hours." in words
    assert "the max duration allowed is 7 days when signing with either the --private-key-file" in (
        words
    )
    page = " ".join(PAGE.read_text().split())
    assert "valid for at most 12 hours" in page and "up to 7 days" in page
