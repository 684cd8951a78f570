#!/usr/bin/env bash
# Reproduces services/console/vendor/fhirclient from the npm registry and checks it.
#
# The console's demo SMART app uses the browser build of the SMART JavaScript client
# (npm package fhirclient). Hearth serves that file unmodified, so it is kept in the
# repository apart from Hearth's own sources. This script downloads the published
# package with `npm pack`, checks the SHA-256 of each vendored file against SHA256SUMS
# and, with --write, copies the files into the vendor folder first.
#
# Usage: infra/vendor-fhirclient.sh [--write]
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
vendor="$root/services/console/vendor/fhirclient"
version="2.6.3"
files=(build/fhir-client.pure.min.js build/fhir-client.pure.min.js.LICENSE.txt LICENSE)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "fhirclient@$version" >/dev/null)
tar -xzf "$work/fhirclient-$version.tgz" -C "$work"

if [[ "${1:-}" == "--write" ]]; then
    for file in "${files[@]}"; do
        cp "$work/package/$file" "$vendor/$(basename "$file")"
    done
    (cd "$vendor" && sha256sum "${files[@]/#*\//}" >SHA256SUMS)
    echo "wrote fhirclient $version into $vendor" >&2
fi

# The published files must match the recorded checksums, and so must the vendored copies.
(cd "$vendor" && sha256sum --check --quiet SHA256SUMS)
for file in "${files[@]}"; do
    expected="$(grep " $(basename "$file")\$" "$vendor/SHA256SUMS" | cut -d' ' -f1)"
    actual="$(sha256sum "$work/package/$file" | cut -d' ' -f1)"
    if [[ "$expected" != "$actual" ]]; then
        echo "fhirclient $version from npm: $file has SHA-256 $actual, expected $expected" >&2
        exit 1
    fi
done
echo "fhirclient $version: vendored files match the npm package" >&2
