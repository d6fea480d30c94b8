#!/usr/bin/env bash
# Validation of SevenNet-l3i5, its l=3-pruned versions (before fine-tuning and fine-tuned with 3 seeds) and
# SevenNet-0 (the authors' model of the pruned architecture) side by side: irrepprobe validate, every
# check's result kept under experiments/prune-sevenn/validate/cache, so a rerun costs only what is new.
# Stage "early" runs the checks of the models that exist before prune finishes (it may overlap prune);
# "all" runs everything (NVE, stability and speed on an otherwise idle machine). Run after run.sh's prune.
set -euo pipefail
cd "$(dirname "$0")/../.."
p=experiments/prune-sevenn/pruned
models=(l3i5=7net-l3i5 pruned-before="$p/pruned-before.pth" SevenNet-0=7net-0)
[ "${1:-all}" = early ] && exec irrepprobe validate "${models[@]}" --format sevenn --trust \
    --suite eos,stress,phonons,molecules --out experiments/prune-sevenn/validate
models+=(pruned-seed0="$p/pruned.pth" pruned-seed1="$p/pruned-seed1.pth" pruned-seed2="$p/pruned-seed2.pth")
irrepprobe validate "${models[@]}" --format sevenn --trust --nve-systems Si --nve-ps 2 --nve-fs 2 \
    --md-models pruned-seed0,SevenNet-0 --speed-models l3i5,pruned-seed0,SevenNet-0 \
    --out experiments/prune-sevenn/validate
