#!/usr/bin/env bash
# A tiny MACE (mace-torch 0.3.16) trained on CPU on 400 QM9 molecules to their U0 atomization energy
# (QM9's u0_atom, eV, as MACE's energy; forces weight 0: QM9 has none, but MACE's weighted loss needs
# them computed), for the MACE adapter's tests and demos: orders up to l=2 (hidden 8x0e+8x1o+8x2e),
# 2 interactions, correlation 2, cutoff 5 A, float32, 40 epochs. About 3 minutes on one core.
# Data and training output go to experiments/codes/ (not committed): qm9.xyz (the first 600 molecules of
# QM9), its 599 with H, C, N, O only split at random (seed 0) into train.xyz (400), test.xyz (100) and
# valid.xyz (99); the model is experiments/codes/tiny_mace.model (and tiny_mace_compiled.model, TorchScript);
# tests/data/mace/ holds a copy of the model (tiny_mace.model) and of test.xyz (qm9_test.xyz).
# Needs: pip install torch==2.13.0 && pip install -e ".[mace]".   Run: bash analyses/codes/train_mace.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/codes
mkdir -p "$out"
[ -f "$out/qm9.xyz" ] || irrepprobe data export "$out/qm9.xyz" --split all --subset 600
python - "$out" <<'PY'
import sys
import numpy as np
from ase.io import read, write
out = sys.argv[1]
# only H, C, N, O: the one fluorine molecule among the 600 would leave F unseen in training
mols = [a for a in read(f"{out}/qm9.xyz", ":") if set(a.numbers) <= {1, 6, 7, 8}]
order = np.random.default_rng(0).permutation(len(mols))
for name, rows in (("train", order[:400]), ("test", order[400:500]), ("valid", order[500:])):
    write(f"{out}/{name}.xyz", [mols[i] for i in sorted(rows)], format="extxyz")
PY
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mace_run_train --name tiny_mace --work_dir "$out" --seed 0 --device cpu --default_dtype float32 \
    --train_file "$out/train.xyz" --valid_file "$out/valid.xyz" --test_file "$out/test.xyz" \
    --energy_key u0_atom --E0s average --compute_forces True --loss weighted --energy_weight 1.0 \
    --forces_weight 0.0 --scaling std_scaling --error_table PerAtomMAE \
    --model MACE --hidden_irreps 8x0e+8x1o+8x2e --max_ell 2 --correlation 2 --num_interactions 2 \
    --r_max 5.0 --num_radial_basis 8 --radial_MLP "[16, 16]" --MLP_irreps 8x0e \
    --batch_size 16 --valid_batch_size 32 --lr 0.01 --max_num_epochs 40 --patience 100 \
    --eval_interval 5 --plot False --save_cpu
# Its cuequivariance twin (layout ir_mul) by MACE's own conversion, on CPU, where cuequivariance is
# installed (pip install cuequivariance cuequivariance-torch): experiments/codes/tiny_mace_cueq.model
python - "$out" <<'PY'
import importlib.util, sys
if importlib.util.find_spec("cuequivariance_torch") is None:
    print("no cuequivariance_torch: no ir_mul twin")
    sys.exit(0)
import torch
from mace.cli.convert_e3nn_cueq import run
model = torch.load(f"{sys.argv[1]}/tiny_mace.model", map_location="cpu", weights_only=False)
torch.save(run(model, device="cpu", return_model=True, layout="ir_mul"), f"{sys.argv[1]}/tiny_mace_cueq.model")
PY
