"""The secret scan this project runs: detect-secrets with a plugin for Google's credentials.

`scan` is shared by tests/repo/test_secrets.py (the repository) and tests/book/test_secrets.py (the
built site); `GoogleCredentialDetector` is loaded by detect-secrets through its ``file://`` plugin
path, so it must stay importable from this file alone.
"""

from __future__ import annotations

import re

from detect_secrets import SecretsCollection
from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.settings import transient_settings


class GoogleCredentialDetector(RegexBasedDetector):
    """OAuth access tokens, API keys, service-account key files and signed URLs."""

    secret_type = "Google credential"  # pragma: allowlist secret (a label, not a secret)
    denylist = (
        re.compile(r"\bya29\.[0-9A-Za-z_\-]{20,}"),  # OAuth 2 access token
        re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b"),  # API key
        re.compile(r'"private_key_id"\s*:\s*"[0-9a-f]{16,}"'),  # service-account key file
        re.compile(r"-----BEGIN (?:RSA )?PRIVATE KEY-----"),  # the key inside such a file
        re.compile(r"X-Goog-Signature=[0-9a-f]{64,}"),  # a signed URL grants access by itself
        re.compile(r"\b1//0[0-9A-Za-z_\-]{30,}"),  # OAuth refresh token
    )


def scan(files: list[str], leave_out: frozenset[str] = frozenset()) -> dict[str, list[dict]]:
    """Every detector of detect-secrets but ``leave_out``, and Google's, over ``files``."""
    plugins = [
        {"name": cls.__name__}
        for cls in get_mapping_from_secret_type_to_class().values()
        if cls.__name__ not in leave_out | {GoogleCredentialDetector.__name__}
    ]
    plugins.append({"name": GoogleCredentialDetector.__name__, "path": f"file://{__file__}"})
    get_mapping_from_secret_type_to_class.cache_clear()  # the cache predates our plugin
    try:
        with transient_settings({"plugins_used": plugins}):
            found = SecretsCollection()
            found.scan_files(*files, num_processors=1)
            return found.json()
    finally:
        get_mapping_from_secret_type_to_class.cache_clear()
