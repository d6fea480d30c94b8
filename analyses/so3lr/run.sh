#!/usr/bin/env bash
# reports/so3lr (issue 41): SO3LR, the pretrained molecular potential shipped in so3krates-torch, through
# irrepprobe's so3lr adapter: which of its degrees (l=0 invariants, l=1-4 at one channel each) it depends on
# (ablation) and needs (recovery: each degree masked and the model fine-tuned, distilled to its own energies
# and forces, 50 steps, beside the same fine-tuning unmasked) for energy and for forces, and what each holds
# (probes: QM9's dipole vector and polarizability; S22's CCSD(T) interaction energies), on 300 QM9 test
# molecules and on the 22 S22 dimers. Needs: pip install -e ".[so3lr]". About 40 minutes on 2 cores.
# Run: bash analyses/so3lr/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/so3lr
python analyses/so3lr/s22.py "$out/s22.extxyz"
[ -f "$out/qm9/meta.json" ] || irrepprobe capture so3lr --trust --data qm9:test --subset 300 --out "$out/qm9"
irrepprobe report "$out/qm9" --out reports/so3lr/qm9 --ablation-molecules 200 --controls 3 --recovery --recovery-steps 50
[ -f "$out/s22/meta.json" ] || irrepprobe capture so3lr --trust --data "$out/s22.extxyz" --out "$out/s22"
irrepprobe report "$out/s22" --out reports/so3lr/s22 --controls 3 --recovery --recovery-steps 50
