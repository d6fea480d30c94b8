#!/usr/bin/env bash
# SevenNet-0 and SevenNet-l3i5 (both ship inside the sevenn wheel) captured on 2,000 QM9 test molecules
# (QM9's seed-0 80/10/10 split) and reported (ablation on the first 500, three interventions):
# reports/sevenn/<model>/. Captures go to experiments/sevenn/
# (not committed; about a minute each to redo). Needs: pip install -e ".[sevenn]".
#   bash analyses/sevenn/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
for model in 7net-0 7net-l3i5; do
    cap=experiments/sevenn/$model
    [ -f "$cap/meta.json" ] || irrepprobe capture "$model" --format sevenn --data qm9:test --subset 2000 --trust \
        --batch-size 32 --out "$cap"
    irrepprobe report "$cap" --out "reports/sevenn/$model" --ablation-molecules 500
done
