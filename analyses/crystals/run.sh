#!/usr/bin/env bash
# SevenNet-0 on rattled bulk crystals (periodic): 40 Si and Cu cells, and 20 Si cells alone, captured and
# reported with energy and forces scored (no labels: the shift of the model's own energy and forces):
# reports/crystals/si_cu/ and reports/crystals/si/; Si and Cu with recovery too (each order masked, 60 Adam
# steps at learning rate 1e-4 distilled to the model's own energies and forces on 20 cells, scored on the
# other 20). Captures go to experiments/crystals/ (not committed); a rerun reuses captures and finished runs.
# Needs: pip install -e ".[sevenn]".   Run: bash analyses/crystals/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
python analyses/crystals/make_cells.py experiments/crystals
for set in si_cu si; do
    [ -f "experiments/crystals/$set/meta.json" ] || irrepprobe capture 7net-0 --format sevenn --trust \
        --data "experiments/crystals/$set.extxyz" --out "experiments/crystals/$set"
done
irrepprobe report experiments/crystals/si_cu --out reports/crystals/si_cu --recovery --recovery-steps 60 \
    --recovery-lr 1e-4
irrepprobe report experiments/crystals/si --out reports/crystals/si
