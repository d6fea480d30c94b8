#!/usr/bin/env bash
# SevenNet-l3i5 pruned of l=3 (which leaves exactly SevenNet-0's architecture), distilled to l3i5's own
# energies and forces on 450 structures (rattled bulk cells, EMT-MD-sampled metal cells, QM9 molecules;
# analyses/prune-sevenn/make_data.py), compared on the held-out 20% with l3i5, the pruned model before
# fine-tuning, the same architecture trained from scratch at the same budget, and SevenNet-0 (the authors'
# small model of that architecture): reports/prune-sevenn/. The pruned files go to experiments/prune-sevenn/
# (not committed); a rerun reuses them. Needs: pip install -e ".[sevenn]".   Run: bash analyses/prune-sevenn/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/prune-sevenn
[ -f "$out/structures.extxyz" ] || python analyses/prune-sevenn/make_data.py "$out" 150
irrepprobe prune 7net-l3i5 --format sevenn --trust --drop-l 3 --data "$out/structures.extxyz" --steps 200 \
    --out "$out/pruned"
python analyses/prune-sevenn/summarise.py "$out"
