#!/usr/bin/env bash
# SevenNet-l3i5 pruned of l=3 (which leaves exactly SevenNet-0's architecture), distilled to l3i5's own
# energies and forces on 450 structures (rattled bulk cells, EMT-MD-sampled metal cells, QM9 molecules;
# analyses/prune-sevenn/make_data.py) with 3 fine-tuning seeds, compared on 150 held-out structures of other
# compositions and trajectories, then validated against DFT references beside l3i5 and SevenNet-0 (the
# authors' small model of that architecture): analyses/prune-sevenn/validate.sh. Report: reports/prune-sevenn/.
# The files go to experiments/prune-sevenn/ (not committed); a rerun reuses them.
# Needs: pip install -e ".[sevenn]".   Run: bash analyses/prune-sevenn/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/prune-sevenn
[ -f "$out/held_out.extxyz" ] || python analyses/prune-sevenn/make_data.py "$out" 150
irrepprobe prune 7net-l3i5 --format sevenn --trust --drop-l 3 --data "$out/structures.extxyz" \
    --held-out "$out/held_out.extxyz" --steps 200 --seeds 3 --no-scratch --md-steps 0 --out "$out/pruned"
bash analyses/prune-sevenn/validate.sh all
python analyses/prune-sevenn/summarise.py "$out"
