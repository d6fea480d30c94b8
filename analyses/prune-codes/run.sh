#!/usr/bin/env bash
# MACE and NequIP pruned of l=2 (issue 26): the models of reports/codes (trained by their own tools,
# mace_run_train and nequip-train, on 1,184 QM9 molecules with H C N O to the U0 atomization energy; hidden
# irreps up to l=2, 2 layers) lose l=2 by surgery in their own classes, and are compared on the 150 test
# molecules with the same small architecture trained from scratch. Per family:
#   1. irrepprobe prune --drop-l 2 --target u0_atom: surgery, fine-tuned for 200 Adam steps on the U0 labels
#      of 80% of the training molecules, beside the small architecture from a fresh initialisation given the
#      same 200 steps (prune's own table, on the other 20% of the training molecules);
#   2. the small architecture trained from scratch by the family's own tool with the original's recipe
#      (MACE: 8x0e+8x1o, max_ell 1, 40 epochs; NequIP: l_max 1, 30 epochs);
#   3. summarise.py FAMILY: every model on the test molecules -> reports/prune-codes/FAMILY/; then the index.
# Needs analyses/codes/compare.sh's runs (called when missing), the mace extra in MACE_ENV (default .ci-mace)
# and the nequip extra in this environment. Every step is skipped when its output exists.
# Run: bash analyses/prune-codes/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
codes=experiments/codes/compare
out=experiments/prune-codes
mace_env=${MACE_ENV:-.ci-mace}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
[ -f "$codes/mace/mace.model" ] && [ -f "$codes/nequip/best.ckpt" ] || bash analyses/codes/compare.sh
mace=(env PYTHONPATH="$root/src" "$mace_env/bin/python")
prune() {  # family, model file, then the python that runs irrepprobe
    local family=$1 model=$2
    shift 2
    [ -f "$out/$family/pruned/report.md" ] || "$@" -m irrepprobe prune "$model" --format "$family" --trust --drop-l 2 \
        --data "$codes/data/train.xyz" --target u0_atom --steps 200 --out "$out/$family/pruned"
}
prune mace "$codes/mace/mace.model" "${mace[@]}"
prune nequip "$codes/nequip/best.ckpt" python
if [ ! -f "$out/mace/scratch/small.model" ]; then
    mkdir -p "$out/mace/scratch"
    "$mace_env/bin/mace_run_train" --name small --work_dir "$out/mace/scratch" --seed 0 --device cpu \
        --default_dtype float32 --train_file "$codes/data/train.xyz" --valid_file "$codes/data/val.xyz" \
        --test_file "$codes/data/test.xyz" --energy_key u0_atom --E0s average --compute_forces True --loss weighted \
        --energy_weight 1.0 --forces_weight 0.0 --scaling std_scaling --error_table PerAtomMAE \
        --model MACE --hidden_irreps 8x0e+8x1o --max_ell 1 --correlation 2 --num_interactions 2 \
        --r_max 5.0 --num_radial_basis 8 --radial_MLP "[16, 16]" --MLP_irreps 8x0e \
        --batch_size 16 --valid_batch_size 32 --lr 0.01 --max_num_epochs 40 --patience 100 \
        --eval_interval 5 --plot False --save_cpu
fi
[ -f "$out/nequip/scratch/best.ckpt" ] || nequip-train -cp "$root/analyses/codes" -cn tiny_nequip \
    hydra.run.dir="$root/$out/nequip/scratch" data_dir="$root/$codes/data" max_epochs=30 training_module.model.l_max=1
"${mace[@]}" analyses/prune-codes/summarise.py mace
PYTHONPATH="$root/src" python analyses/prune-codes/summarise.py nequip
python analyses/prune-codes/summarise.py index
