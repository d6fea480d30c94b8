#!/usr/bin/env bash
# A tiny NequIP and a tiny Allegro model trained on 400 QM9 molecules (100 validation, 100 test) for
# QM9's U0 atomization energy in eV, on CPU in a few minutes each; the models the nequip adapter and its
# tests are checked on. Data and runs go to experiments/codes/ (not committed):
#   experiments/codes/data/{qm9-600,train,val,test}.xyz
#   experiments/codes/{nequip,allegro}/{best,last}.ckpt   (hookable; load with --trust)
#   experiments/codes/{nequip,allegro}/model.nequip.zip  (nequip-package'd, hookable; --trust)
# Needs: pip install nequip nequip-allegro (and irrepprobe).   Run: bash analyses/codes/train_nequip.sh [nequip|allegro]
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
out=experiments/codes
mkdir -p "$out/data"
[ -f "$out/data/qm9-600.xyz" ] || irrepprobe data export "$out/data/qm9-600.xyz" --split all --subset 600
[ -f "$out/data/test.xyz" ] || python analyses/codes/split.py "$out/data/qm9-600.xyz" "$out/data" 400 100 100 0
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
for model in "${@:-nequip allegro}"; do
    for m in $model; do
        run="$root/$out/$m"
        if [ ! -f "$run/best.ckpt" ]; then
            start=$(date +%s)
            nequip-train -cp "$root/analyses/codes" -cn "tiny_$m" hydra.run.dir="$run" data_dir="$root/$out/data"
            echo "$m: trained in $(( $(date +%s) - start )) s"
        fi
        [ -f "$run/model.nequip.zip" ] || nequip-package build "$run/best.ckpt" "$run/model.nequip.zip"
        ls -l "$run/best.ckpt" "$run/model.nequip.zip"
    done
done
