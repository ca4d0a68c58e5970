#!/usr/bin/env bash
# Regenerate devhub/spec/ from pinned octokit npm packages.
#
#   bash scripts/vendor_github_data.sh [TARBALL_DIR]
#
# Without TARBALL_DIR the tarballs are fetched with `npm pack` (npm checks the registry's
# integrity hash) into a temp dir. With it, tarballs already there are reused, so the files
# can be regenerated offline. Either way each tarball must match the sha256 pinned below,
# which is what makes the output reproducible byte for byte.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
OUT="$ROOT/devhub/spec"

# package@version  tarball  sha256
PINS=(
  "@octokit/openapi@23.0.2 octokit-openapi-23.0.2.tgz 71a18407dd5e8464f4e0525daf03deabbe65abd9287d6adc7b5d98f516cd0d0c"
  "@octokit/webhooks-examples@7.6.1 octokit-webhooks-examples-7.6.1.tgz 89e6cb1c6345d32e3dd775617fa54effbdc26c859e514898d7728e95e9738280"
  "@octokit/webhooks-schemas@7.6.1 octokit-webhooks-schemas-7.6.1.tgz 94be9136c02e5246912d6a4b1f178f8d5430ae36839e46ecfcad0020f42f33ca"
)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tarballs="${1:-$work/tarballs}"
mkdir -p "$tarballs"

for pin in "${PINS[@]}"; do
  read -r spec tgz sha <<<"$pin"
  if [[ ! -f "$tarballs/$tgz" ]]; then
    # npm warns about unrelated user config on every call; keep its output only on failure.
    npm pack --silent --pack-destination "$tarballs" "$spec" >"$work/npm.log" 2>&1 \
      || { cat "$work/npm.log" >&2; echo "npm pack $spec failed" >&2; exit 1; }
  fi
  echo "$sha  $tarballs/$tgz" | sha256sum --check --quiet - \
    || { echo "sha256 mismatch for $tgz: not the pinned $spec" >&2; exit 1; }
done

# The openapi tarball unpacks to ~400 MB; take only the one spec file and the licence.
x() { mkdir -p "$work/$2" && tar xzf "$tarballs/$1" -C "$work/$2" "${@:3}"; }
x octokit-openapi-23.0.2.tgz openapi \
  package/generated/api.github.com.json package/package.json package/LICENSE
x octokit-webhooks-examples-7.6.1.tgz webhooks-examples \
  package/api.github.com/index.json package/package.json
x octokit-webhooks-schemas-7.6.1.tgz webhooks-schemas \
  package/schema.json package/package.json

mkdir -p "$OUT"
"$PYTHON" "$ROOT/scripts/vendor_github_data.py" \
  --openapi "$work/openapi/package" \
  --examples "$work/webhooks-examples/package" \
  --schemas "$work/webhooks-schemas/package" \
  --tarballs "$tarballs" \
  --out "$OUT"
