"""The manifest code traded for the new App's credentials: ``POST /app-manifests/{code}/conversions``.

The one GitHub call nightcrew makes without credentials (the code is the credential), through
githubkit and the adapter's ``_call``. A code works once and for an hour: GitHub answers 404
for one that is unknown, used or expired, and that is said plainly. The call is never repeated
after a 5xx: the first attempt may have used the code up.
"""

from __future__ import annotations

from githubkit import GitHub

from github_app.github import TIMEOUT_S, GitHubError, _call
from github_app.manifest import AppCredentials, credentials_from


def convert_manifest_code(api_url: str, code: str) -> AppCredentials:
    """The App GitHub created for ``code``, with its private key and secrets."""
    client = GitHub(base_url=api_url, timeout=TIMEOUT_S, http_cache=False, auto_retry=False)
    try:
        data = _call("the manifest code's conversion",
                     lambda: client.rest.apps.create_from_manifest(code).parsed_data, write=True)
    except GitHubError as exc:
        if exc.status == 404:
            raise GitHubError(
                "GitHub does not know this manifest code (404): it was used already or is more "
                "than an hour old; run nightcrew register again", exc.status, detail=exc.detail,
            ) from exc
        raise
    return credentials_from(data.model_dump())
