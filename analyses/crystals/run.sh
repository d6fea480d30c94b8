#!/usr/bin/env bash
# SevenNet-0 on rattled bulk crystals (periodic): 40 Si and Cu cells, and 20 Si cells alone, captured and
# reported with energy and forces scored (no labels: the shift of the model's own energy and forces):
# reports/crystals/si_cu/ and reports/crystals/si/. Captures go to experiments/crystals/ (not committed).
# Needs: pip install -e ".[sevenn]".   Run: bash analyses/crystals/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
python analyses/crystals/make_cells.py experiments/crystals
for set in si_cu si; do
    irrepprobe capture 7net-0 --format sevenn --trust --data "experiments/crystals/$set.extxyz" \
        --out "experiments/crystals/$set"
    irrepprobe report "experiments/crystals/$set" --out "reports/crystals/$set"
done
