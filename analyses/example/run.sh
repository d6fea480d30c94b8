#!/usr/bin/env bash
# The report of the example model shipped with the package (src/irrepprobe/examples/u0_lee_small.pt, a U0
# model at L=[0,1,2]) over its own 500 test molecules: reports/example/. The capture goes to
# experiments/example/ (not committed; seconds to redo). A rerun reuses the control captures, the
# utilisation table and the fine-tuned runs of --recovery when they match.
# The three legs per order: dependence and recovery (--recovery: fine-tuned with the order masked, against
# the same fine-tuning of the checkpoint) from the report itself; necessity from `irrepprobe prune --drop-l L`
# (the same config, split, budget and seed retrained from scratch without the order; about 2 min each).
# Run: bash analyses/example/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -f experiments/example/meta.json ] || irrepprobe capture --out experiments/example
ckpt=src/irrepprobe/examples/u0_lee_small.pt
for l in 1 2; do
    [ -f "experiments/example-prune-l$l/pruned-seed0/result.json" ] || \
        irrepprobe prune "$ckpt" --drop-l "$l" --out "experiments/example-prune-l$l"
done
irrepprobe report experiments/example --out reports/example --recovery \
    --necessity l=1:experiments/example-prune-l1/pruned-seed0/capture \
    --necessity l=2:experiments/example-prune-l2/pruned-seed0/capture
