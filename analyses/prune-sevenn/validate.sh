#!/usr/bin/env bash
# Validation of SevenNet-l3i5, its l=3-pruned versions (before fine-tuning and fine-tuned with 3 seeds) and
# SevenNet-0 (the authors' model of the pruned architecture) side by side: irrepprobe validate, every
# check's result kept under experiments/prune-sevenn/validate/cache, so a rerun costs only what is new.
# Stages "early" (the models that exist before prune's seeds) and "md" (NVE and stability of the first
# seed and SevenNet-0) may overlap prune; "all" runs everything left, the speed last (interleaved, on an
# otherwise idle machine).
set -euo pipefail
cd "$(dirname "$0")/../.."
p=experiments/prune-sevenn/pruned
models=(l3i5=7net-l3i5 pruned-before="$p/pruned-before.pth" SevenNet-0=7net-0)
[ "${1:-all}" = early ] && exec irrepprobe validate "${models[@]}" --format sevenn --trust \
    --suite eos,stress,phonons,molecules --out experiments/prune-sevenn/validate
md=(--nve-systems Si --nve-ps 0.5 --nve-fs 2 --stability-ps 0.2 --md-models pruned-seed0,SevenNet-0)
[ "${1:-all}" = md ] && exec irrepprobe validate pruned-seed0="$p/pruned.pth" SevenNet-0=7net-0 --format sevenn \
    --trust --suite nve,stability "${md[@]}" --out experiments/prune-sevenn/validate
models+=(pruned-seed0="$p/pruned.pth" pruned-seed1="$p/pruned-seed1.pth" pruned-seed2="$p/pruned-seed2.pth")
irrepprobe validate "${models[@]}" --format sevenn --trust "${md[@]}" --speed-models l3i5,pruned-seed0,SevenNet-0 --speed-repeats 2 \
    --out experiments/prune-sevenn/validate
