#!/usr/bin/env bash
# MACE pruned of l=2 (issue 26): the MACE model of reports/codes (trained by mace_run_train on 1,184 QM9
# molecules, H C N O, to the U0 atomization energy; hidden 8x0e+8x1o+8x2e, max_ell 2, 2 interactions)
#   1. pruned by irrepprobe: surgery to hidden 8x0e+8x1o, max_ell 1 (MACE's own classes, the kept weights
#      copied), fine-tuned for 200 Adam steps on the U0 labels of 80% of the training molecules, beside the
#      same small architecture from a fresh initialisation with the same 200 steps (prune's own table, on the
#      other 20%);
#   2. the small architecture trained from scratch by mace_run_train with the original's recipe (40 epochs);
#   3. every model on the 150 test molecules (summarise.py): reports/prune-mace/.
# Needs analyses/codes/compare.sh's runs (it is called when they are missing) and the mace extra in
# MACE_ENV (default .ci-mace). Every step is skipped when its output exists.   Run: bash analyses/prune-mace/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
codes=experiments/codes/compare
out=experiments/prune-mace
mace_env=${MACE_ENV:-.ci-mace}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
[ -f "$codes/mace/mace.model" ] || bash analyses/codes/compare.sh
run=(env PYTHONPATH="$PWD/src" "$mace_env/bin/python" -m irrepprobe)
[ -f "$out/pruned/report.md" ] || "${run[@]}" prune "$codes/mace/mace.model" --format mace --trust --drop-l 2 \
    --data "$codes/data/train.xyz" --target u0_atom --steps 200 --out "$out/pruned"
if [ ! -f "$out/scratch/small.model" ]; then
    mkdir -p "$out/scratch"
    "$mace_env/bin/mace_run_train" --name small --work_dir "$out/scratch" --seed 0 --device cpu --default_dtype float32 \
        --train_file "$codes/data/train.xyz" --valid_file "$codes/data/val.xyz" --test_file "$codes/data/test.xyz" \
        --energy_key u0_atom --E0s average --compute_forces True --loss weighted --energy_weight 1.0 \
        --forces_weight 0.0 --scaling std_scaling --error_table PerAtomMAE \
        --model MACE --hidden_irreps 8x0e+8x1o --max_ell 1 --correlation 2 --num_interactions 2 \
        --r_max 5.0 --num_radial_basis 8 --radial_MLP "[16, 16]" --MLP_irreps 8x0e \
        --batch_size 16 --valid_batch_size 32 --lr 0.01 --max_num_epochs 40 --patience 100 \
        --eval_interval 5 --plot False --save_cpu
fi
PYTHONPATH="$PWD/src" "$mace_env/bin/python" analyses/prune-mace/summarise.py
