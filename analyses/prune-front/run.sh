#!/usr/bin/env bash
# The speed/accuracy front of SevenNet-0 (issue 39): two cuts (half of every hidden block's channels; l=2
# dropped with half of the channels left) and the control (SevenNet-0 itself fine-tuned with the same
# budget; about 20 minutes per seed on 2 cores), each fine-tuned with 2 seeds for 100 Adam steps toward SevenNet-l3i5's energies and forces on the
# 450 prune-sevenn structures, compared on the 150 held-out ones (other compositions and trajectories), MD
# speed through SevenNetCalculator. Report: reports/prune-front/sevennet-0.
# Needs: pip install -e ".[sevenn]" and experiments/prune-sevenn from analyses/prune-sevenn/make_data.py.
# Run: bash analyses/prune-front/run.sh   (a rerun reuses every finished fine-tuning)
set -euo pipefail
cd "$(dirname "$0")/../.."
src=experiments/prune-sevenn
out=experiments/prune-front
[ -f "$src/held_out.extxyz" ] || python analyses/prune-sevenn/make_data.py "$src" 150
python analyses/prune-front/label.py "$src" "$out"
irrepprobe prune 7net-0 --format sevenn --trust --front "1.0 0.5 drop:0.5" \
    --data "$out/structures.extxyz" --held-out "$out/held_out.extxyz" --target energy \
    --steps 100 --seeds 2 --md-steps 20 --out "$out/sevennet-0"
