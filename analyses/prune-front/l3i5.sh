#!/usr/bin/env bash
# The speed/accuracy front of SevenNet-l3i5 (issue 39) beside SevenNet-0, its authors' smaller model: l=3
# dropped (which leaves SevenNet-0's architecture) with all or half of the hidden channels, 2 seeds of 100
# Adam steps toward l3i5's own energies and forces (the labels analyses/prune-front/label.py wrote) on the 450
# prune-sevenn structures, compared on the 150 held-out ones; MD speed through SevenNetCalculator.
# Report: reports/prune-front/sevennet-l3i5.   Needs: bash analyses/prune-front/run.sh first (the labels).
# Run: bash analyses/prune-front/l3i5.sh   (a rerun reuses every finished fine-tuning)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/prune-front
irrepprobe prune 7net-l3i5 --format sevenn --trust --front "drop:1.0 drop:0.5" --reference 7net-0 \
    --data "$out/structures.extxyz" --held-out "$out/held_out.extxyz" --target energy \
    --steps 100 --seeds 2 --md-steps 20 --out "$out/sevennet-l3i5"
