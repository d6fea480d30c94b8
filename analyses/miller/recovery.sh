#!/usr/bin/env bash
# Studies III (issue 27): dependence, recovery and the three-outcome verdict on l=1 for Miller's L1Net
# (analyses/miller/recovery.yaml: depth 2, 3,000 molecules, mu and u0_atom, 3 seeds), one report per target
# on seed 0 with seeds 1 and 2 beside it: reports/miller/recovery/<target>/.
#   Run: OMP_NUM_THREADS=1 bash analyses/miller/recovery.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/miller-recovery
irrepprobe experiment analyses/miller/recovery.yaml --out "$out"
for target in mu u0_atom; do
    r="$out/n3000-L1-d2-target=$target"
    irrepprobe report "$r/seed0/capture" --out "reports/miller/recovery/$target" --ablation-molecules 200 \
        --map-method pca --recovery --seeds "$r/seed1/capture" "$r/seed2/capture"
done
