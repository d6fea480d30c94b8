#!/usr/bin/env bash
# Studies III (issue 27): Lee et al.'s map criterion beside dependence and recovery on the study's headline
# models, [0,1,2,3,4] and [0,3,4,5,6] at 16,000 molecules: seed 3 of analyses/lee/seeds16k.yaml (trained by
# analyses/lee/more16k.py; the curve grid's own checkpoints are not on this machine), with seed 4's spread
# beside it where that run has finished. Writes reports/lee/map-criterion/n16000-<L set>/.
#   Run: OMP_NUM_THREADS=1 bash analyses/lee/map16k.sh [L set ...]   (default: 0,1,2,3,4 0,3,4,5,6)
set -euo pipefail
cd "$(dirname "$0")/../.."
sets=("$@")
[ ${#sets[@]} -gt 0 ] || sets=(0,1,2,3,4 0,3,4,5,6)
for ls in "${sets[@]}"; do
    A="experiments/lee-seeds16k/n16000-ls=$ls"
    seeds=()
    [ -f "$A/seed4/done.json" ] && seeds=(--seeds "$A/seed4/capture")
    irrepprobe report "$A/seed3/capture" --out "reports/lee/map-criterion/n16000-ls=$ls" --ablation-molecules 500 \
        --map-points 1000 --map-method pca --map-criterion --recovery "${seeds[@]}"
done
