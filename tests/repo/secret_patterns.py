"""detect-secrets plugins for the credentials this project could leak: Google's.

Loaded by tests/repo/test_secrets.py through detect-secrets' ``file://`` plugin path.
"""

from __future__ import annotations

import re

from detect_secrets.plugins.base import RegexBasedDetector


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
