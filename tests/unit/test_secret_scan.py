"""The pre-push secret scan: what blocks a push, what does not, and that no report repeats a secret.

Every canary is built at run time from a seeded generator: this file holds no token-shaped string,
so scanning the repository itself (or pushing this file) finds nothing.
"""

from __future__ import annotations

import hashlib
import random
import string
import subprocess
import uuid
from pathlib import Path

import pytest

from runner.gates.secret_scan import Finding, SecretsFound, check_before_push, report, scan_diff

ALNUM = string.ascii_letters + string.digits


def rand(chars: str, n: int, seed: int) -> str:
    """A reproducible random run; random enough to pass any entropy check, like a real token."""
    return "".join(random.Random(seed).choices(chars, k=n))


def gh_token(prefix: str, seed: int = 1) -> str:
    return prefix + "_" + rand(ALNUM, 36, seed)


def fine_grained_pat(seed: int = 2) -> str:
    return "github" + "_pat_" + rand(ALNUM + "_", 82, seed)


def anthropic_key(seed: int = 3) -> str:
    return "sk-" + "ant-api03-" + rand(ALNUM + "_-", 60, seed)


def aws_key_pair(seed: int = 4) -> tuple[str, str]:
    key_id = "AK" + "IA" + rand(string.ascii_uppercase + string.digits, 16, seed)
    secret = rand(ALNUM + "/+", 40, seed + 1)
    return key_id, secret


def private_key_block(seed: int = 5) -> list[str]:
    dashes = "-" * 5
    body = [rand(ALNUM + "+/", 64, seed + i) for i in range(4)]
    return [f"{dashes}BEGIN RSA PRIV" + f"ATE KEY{dashes}", *body, f"{dashes}END RSA PRIV" + f"ATE KEY{dashes}"]


def new_file_diff(path: str, lines: list[str]) -> str:
    body = "".join(f"+{line}\n" for line in lines)
    return (
        f"diff --git a/{path} b/{path}\nnew file mode 100644\nindex 0000000..1111111\n"
        f"--- /dev/null\n+++ b/{path}\n@@ -0,0 +1,{len(lines)} @@\n{body}"
    )


def modify_diff(path: str, hunks: list[tuple[int, int, list[str]]]) -> str:
    """hunks: (old_start, new_start, lines with their ' ', '+', '-' markers)."""
    out = [f"diff --git a/{path} b/{path}\nindex 1111111..2222222 100644\n--- a/{path}\n+++ b/{path}\n"]
    for old_start, new_start, lines in hunks:
        old_len = sum(1 for line in lines if line[0] in " -")
        new_len = sum(1 for line in lines if line[0] in " +")
        out.append(f"@@ -{old_start},{old_len} +{new_start},{new_len} @@\n")
        out.extend(line + "\n" for line in lines)
    return "".join(out)


def assert_not_leaked(secret: str, findings: list[Finding]) -> None:
    assert secret not in report(findings)
    for finding in findings:
        assert secret not in repr(finding)
        assert secret not in str(finding)
    with pytest.raises(SecretsFound) as caught:
        raise SecretsFound(findings)
    assert secret not in str(caught.value)
    assert secret not in repr(caught.value)


# --- each kind of token ----------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["ghp", "gho", "ghu", "ghs", "ghr"])
def test_classic_github_tokens_are_found(prefix: str) -> None:
    token = gh_token(prefix)
    diff = new_file_diff("app/config.py", ["import os", f'TOKEN = "{token}"'])
    findings = scan_diff(diff)
    fingerprint = hashlib.sha256(token.encode()).hexdigest()[:8]
    # one finding, though our regex, detect-secrets' GitHubTokenDetector and the entropy check all match
    assert findings == [Finding("app/config.py", 2, "GitHub token", fingerprint)]
    assert_not_leaked(token, findings)


def test_unquoted_github_token_in_a_url_is_found() -> None:
    token = gh_token("ghs", seed=9)
    diff = new_file_diff("scripts/clone.sh", [f"git clone https://x-access-token:{token}@github.com/o/r"])
    kinds = {f.kind for f in scan_diff(diff)}
    assert "GitHub token" in kinds


def test_fine_grained_github_token_is_found() -> None:
    token = fine_grained_pat()
    findings = scan_diff(new_file_diff(".env", [f"GH_TOKEN={token}"]))
    assert [(f.path, f.line, f.kind) for f in findings] == [(".env", 1, "GitHub token")]
    assert_not_leaked(token, findings)


def test_anthropic_key_is_found() -> None:
    key = anthropic_key()
    findings = scan_diff(new_file_diff("bot.py", [f'client = Anthropic(api_key="{key}")']))
    assert [(f.line, f.kind) for f in findings] == [(1, "Anthropic API key")]
    assert findings[0].fingerprint == hashlib.sha256(key.encode()).hexdigest()[:8]
    assert_not_leaked(key, findings)


def test_aws_key_pair_is_found() -> None:
    key_id, secret = aws_key_pair()
    diff = new_file_diff(
        "deploy/settings.py",
        ["# deployment", f'AWS_ACCESS_KEY_ID = "{key_id}"', f'aws_secret_access_key = "{secret}"'],
    )
    findings = scan_diff(diff)
    assert [(f.line, f.kind) for f in findings] == [(2, "AWS access key"), (3, "AWS access key")]
    assert len({f.fingerprint for f in findings}) == 2
    assert_not_leaked(key_id, findings)
    assert_not_leaked(secret, findings)


def test_private_key_block_is_found() -> None:
    block = private_key_block()
    findings = scan_diff(new_file_diff("certs/server.key", block))
    assert [(f.line, f.kind) for f in findings] == [(1, "Private key")]
    for line in block[1:-1]:
        assert_not_leaked(line, findings)


def test_other_detect_secrets_plugins_are_in_use() -> None:
    slack = "xox" + "b-" + "1234567890-" + "1234567890123-" + rand(string.ascii_lowercase + string.digits, 24, 6)
    stripe = "sk" + "_live_" + rand(ALNUM, 24, 7)
    diff = new_file_diff("hooks.py", [f'SLACK = "{slack}"', f'STRIPE = "{stripe}"'])
    assert [(f.line, f.kind) for f in scan_diff(diff)] == [
        (1, "Slack Token"),
        (2, "Stripe Access Key"),
    ]


def test_keyword_password_is_found_but_placeholders_are_not() -> None:
    real = rand(ALNUM + "!#%", 14, 8)
    diff = new_file_diff(
        "db.py",
        [
            f'db_password = "{real}"',
            'password = "not-a-real-secret"',
            'api_key = "your-api-key"',
            'API_KEY_ENV = "ANTHROPIC_API_KEY"',
            "password = os.environ['DB_PASSWORD']",
        ],
    )
    findings = scan_diff(diff)
    assert [(f.line, f.kind) for f in findings] == [(1, "Secret keyword")]
    assert_not_leaked(real, findings)


def test_allowlist_pragma_written_by_the_agent_does_not_waive() -> None:
    token = gh_token("ghp", seed=10)
    _, secret = aws_key_pair(seed=11)
    diff = new_file_diff(
        "x.py",
        [f'T = "{token}"  # pragma: allowlist secret', f'aws_secret_key = "{secret}"  # pragma: allowlist secret'],
    )
    assert [(f.line, f.kind) for f in scan_diff(diff)] == [(1, "GitHub token"), (2, "AWS access key")]


def test_githubs_documented_example_token_is_not_a_finding() -> None:
    example = "ghs_" + "16C7e42F292c6912E7710c838347Ae178B4a"  # GitHub's public docs example
    assert scan_diff(new_file_diff("spec.json", [f'{{"token": "{example}"}}'])) == []


# --- only what the agent added counts ----------------------------------------------------------


def test_secret_only_in_removed_lines_is_not_a_finding() -> None:
    token = gh_token("ghp", seed=12)
    diff = modify_diff("app.py", [(1, 1, [" import os", f'-TOKEN = "{token}"', '+TOKEN = os.environ["TOKEN"]'])])
    assert scan_diff(diff) == []


def test_secret_in_unchanged_context_lines_is_not_a_finding() -> None:
    token = gh_token("ghp", seed=13)
    key_id, _ = aws_key_pair(seed=14)
    diff = modify_diff(
        "app.py",
        [(1, 1, [f' TOKEN = "{token}"', f' KEY = "{key_id}"', "+x = 1", " y = 2"])],
    )
    assert scan_diff(diff) == []


def test_deleted_file_is_skipped() -> None:
    token = gh_token("ghp", seed=15)
    diff = (
        "diff --git a/old.py b/old.py\ndeleted file mode 100644\nindex 1111111..0000000\n"
        f"--- a/old.py\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-import os\n-TOKEN = \"{token}\"\n"
    )
    assert scan_diff(diff) == []


def test_binary_diff_is_skipped() -> None:
    diff = (
        "diff --git a/logo.png b/logo.png\nnew file mode 100644\nindex 0000000..3333333\n"
        "Binary files /dev/null and b/logo.png differ\n"
    ) + new_file_diff("ok.py", ["x = 1"])
    assert scan_diff(diff) == []


# --- normal code is quiet ------------------------------------------------------------------------


def test_lockfile_hashes_uuids_and_git_shas_are_not_findings() -> None:
    integrity = "sha512-" + rand(ALNUM + "+/", 86, 16) + "=="
    sha256_hex = hashlib.sha256(b"wheel").hexdigest()
    commit = hashlib.sha1(b"commit").hexdigest()
    tree = hashlib.sha256(b"tree").hexdigest()
    an_id = str(uuid.UUID(int=random.Random(17).getrandbits(128)))
    diff = "".join(
        [
            new_file_diff(
                "package-lock.json",
                ['"node_modules/left-pad": {', '  "version": "1.3.0",', f'  "integrity": "{integrity}"', "}"],
            ),
            new_file_diff("yarn.lock", [f'  integrity "{integrity}"', f'  resolved "https://r/x.tgz#{commit}"']),
            new_file_diff("uv.lock", [f'{{ hash = "sha256:{sha256_hex}" }}']),
            new_file_diff("requirements.txt", [f"left-pad==1.3.0 --hash=sha256:{sha256_hex}"]),
            new_file_diff(
                "app/ids.py",
                [f'REQUEST_ID = "{an_id}"', f'TENANT = "{an_id}"', f'PINNED = "{commit}"', f'TREE = "{tree}"'],
            ),
        ]
    )
    assert scan_diff(diff) == []


def test_lockfiles_still_get_the_exact_token_patterns() -> None:
    token = gh_token("ghp", seed=18)
    diff = new_file_diff("package-lock.json", [f'  "resolved": "https://{token}@npm.pkg.github.com/x.tgz"'])
    assert [(f.path, f.kind) for f in scan_diff(diff)] == [("package-lock.json", "GitHub token")]


def test_ordinary_code_is_quiet() -> None:
    diff = new_file_diff(
        "runner/example.py",
        [
            "import hashlib",
            "def digest(data: bytes) -> str:",
            '    """Return the hex digest."""',
            "    return hashlib.sha256(data).hexdigest()",
            'URL = "https://api.github.com/repos/o/r/pulls?state=open&per_page=100"',
            'TOKEN_ENV = "GITHUB_TOKEN"',
            "token = os.environ.get(TOKEN_ENV)",
            'headers = {"Authorization": f"Bearer {token}"}',
            'password = getpass.getpass("Password: ")',
        ],
    )
    assert scan_diff(diff) == []


# --- where: paths and line numbers ---------------------------------------------------------------


def test_multi_hunk_line_numbers_are_new_file_lines() -> None:
    first, second = gh_token("ghp", seed=19), gh_token("ghs", seed=20)
    diff = modify_diff(
        "src/big.py",
        [
            (3, 3, [" a = 1", "-b = 2", "+b = 3", f'+T1 = "{first}"', " c = 4"]),
            (40, 41, [" d = 5", "-e = 6", "-f = 7", f'+T2 = "{second}"', " g = 8"]),
        ],
    )
    findings = scan_diff(diff)
    assert [(f.path, f.line) for f in findings] == [("src/big.py", 5), ("src/big.py", 42)]
    assert "`src/big.py:5`" in report(findings) and "`src/big.py:42`" in report(findings)


def test_new_file_line_numbers() -> None:
    token = anthropic_key(seed=21)
    lines = ["a = 1"] * 9 + [f'KEY = "{token}"']
    findings = scan_diff(new_file_diff("pkg/new.py", lines))
    assert [(f.path, f.line, f.kind) for f in findings] == [("pkg/new.py", 10, "Anthropic API key")]


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
        cwd=cwd, check=True, capture_output=True, text=True,
    ).stdout


def test_rename_is_reported_under_the_new_path(tmp_path: Path) -> None:
    token = gh_token("ghu", seed=22)
    lines = [f"line {i} of a file long enough to stay a rename" for i in range(20)]
    _git(tmp_path, "init", "-q")
    (tmp_path / "old_name.py").write_text("\n".join(lines) + "\n")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "base")
    _git(tmp_path, "mv", "old_name.py", "new_name.py")
    lines.insert(5, f'TOKEN = "{token}"')
    (tmp_path / "new_name.py").write_text("\n".join(lines) + "\n")
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)) + token.encode())
    _git(tmp_path, "add", "-A")
    diff = _git(tmp_path, "diff", "--cached", "-M", "HEAD")
    assert "rename from old_name.py" in diff and "Binary files" in diff
    findings = scan_diff(diff)
    assert [(f.path, f.line, f.kind) for f in findings] == [("new_name.py", 6, "GitHub token")]


# --- the gate ---------------------------------------------------------------------------------


def test_check_before_push_raises_with_a_safe_report() -> None:
    token, key = gh_token("ghp", seed=23), anthropic_key(seed=24)
    diff = new_file_diff("leak.py", [f'A = "{token}"', f'B = "{key}"', f'C = "{token}"'])
    with pytest.raises(SecretsFound) as caught:
        check_before_push(diff)
    exc = caught.value
    assert [(f.line, f.kind) for f in exc.findings] == [(1, "GitHub token"), (2, "Anthropic API key"), (3, "GitHub token")]
    assert exc.findings[0].fingerprint == exc.findings[2].fingerprint != exc.findings[1].fingerprint
    assert str(exc) == report(exc.findings)
    assert "2 × GitHub token" in str(exc) and "1 × Anthropic API key" in str(exc)
    for secret in (token, key, token[4:20], key[7:30]):
        assert secret not in str(exc) and secret not in repr(exc)
        assert all(secret not in repr(f) for f in exc.findings)


def test_check_before_push_passes_a_clean_diff() -> None:
    check_before_push(new_file_diff("ok.py", ["x = 1"]))
    check_before_push("")
    assert report([]) == "No secrets found in the diff."
