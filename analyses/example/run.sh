#!/usr/bin/env bash
# The report of the example model shipped with the package (src/irrepprobe/examples/u0_lee_small.pt, a U0
# model at L=[0,1,2]) over its own 500 test molecules: reports/example/. The capture goes to
# experiments/example/ (not committed; seconds to redo). A rerun reuses the control captures and the
# utilisation table when they match.   Run: bash analyses/example/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -f experiments/example/meta.json ] || irrepprobe capture --out experiments/example
irrepprobe report experiments/example --out reports/example
