#!/usr/bin/env bash
# SevenNet-0 on rattled bulk crystals (periodic): 40 Si and Cu cells, and 20 Si cells alone, captured and
# reported with energy and forces scored (no labels: the shift of the model's own energy and forces) and
# recovery (each order masked, the model fine-tuned toward its own energies and forces on half the cells,
# scored on the other half): reports/crystals/si_cu/ and reports/crystals/si/; SevenNet-l3i5 on the Si and
# Cu cells: reports/crystals/si_cu-l3i5/. Captures go to experiments/crystals/ (not committed).
# Needs: pip install -e ".[sevenn]".   Run: bash analyses/crystals/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
python analyses/crystals/make_cells.py experiments/crystals
for set in si_cu si; do
    [ -f "experiments/crystals/$set/meta.json" ] || irrepprobe capture 7net-0 --format sevenn --trust \
        --data "experiments/crystals/$set.extxyz" --out "experiments/crystals/$set"
    irrepprobe report "experiments/crystals/$set" --out "reports/crystals/$set" --recovery
done
# SevenNet-l3i5 on the Si and Cu cells: does its l=3 recover when distilled back to its own energies and forces?
[ -f experiments/crystals/si_cu-l3i5/meta.json ] || irrepprobe capture 7net-l3i5 --format sevenn --trust \
    --data experiments/crystals/si_cu.extxyz --out experiments/crystals/si_cu-l3i5
irrepprobe report experiments/crystals/si_cu-l3i5 --out reports/crystals/si_cu-l3i5 --recovery --recovery-steps 100
