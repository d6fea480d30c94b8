#!/usr/bin/env bash
# The speed/accuracy front of a MACE model trained by MACE's own tools (issue 39): tests/data/mace/
# tiny_mace.model (analyses/codes/train_mace.sh: 400 QM9 molecules, U0 atomization energy, 8x0e+8x1o+8x2e,
# 2 interactions). MACE keeps one channel count for every block (one hidden_irreps, a channel-wise product),
# so each cut is a count of channels: 4 of 8, l=2 dropped with 4 left, and the control (the original
# fine-tuned with the same budget); 2 seeds of 200 Adam steps (about 5 minutes each on 2 cores) toward QM9's DFT u0_atom on 400 QM9
# molecules the model never saw, compared on its 100 test molecules. Report: reports/prune-front/mace.
# Needs: a MACE environment (pip install torch==2.13.0 && pip install -e ".[mace]").
# Run: bash analyses/prune-front/mace.sh   (a rerun reuses every finished fine-tuning)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/prune-front/mace
mkdir -p "$out"
[ -f "$out/qm9.xyz" ] || irrepprobe data export "$out/qm9.xyz" --split all --subset 1100
[ -f "$out/fit.xyz" ] || python - "$out" <<'PY'
import sys
from ase.io import read, write
out = sys.argv[1]
# molecules 600-1099 of QM9 (the model was trained on some of the first 600), H, C, N and O only
mols = [a for a in read(f"{out}/qm9.xyz", "600:") if set(a.numbers) <= {1, 6, 7, 8}]
write(f"{out}/fit.xyz", mols[:400], format="extxyz")
PY
irrepprobe prune tests/data/mace/tiny_mace.model --format mace --trust --front "1.0 4 drop:4" \
    --data "$out/fit.xyz" --held-out tests/data/mace/qm9_test.xyz --target u0_atom \
    --steps 200 --seeds 2 --md-steps 20 --out "$out/front"
