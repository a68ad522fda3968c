#!/usr/bin/env bash
# Copy a trained, calibrated model folder into the package as a bundled model.
#   experiments/ship_model.sh runs/ensemble16_ft                      # the default, nuclei
#   experiments/ship_model.sh runs/nuclei_nc nuclei_nc "CC BY-NC-SA 4.0 (trained on MoNuSeg 2018)"
# The second argument is the folder under src/bayescellseg/pretrained (default nuclei); the
# third, when the weights are not MIT, is their licence, recorded as "licence" in config.json
# (predict prints it). A model fine-tuned from another folder (init_from) also gets that
# folder's training log, as train_log_init.csv (init_from "bundled": the default model's log,
# taken before it is overwritten), unless MODEL_DIR has its own train_log_init.csv. A folder
# from `experiments/distance_head.py export` also brings finetune.json and finetune_log.csv.
# MODEL_CARD.md (and a LICENSE file) are written by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:?usage: experiments/ship_model.sh MODEL_DIR [NAME [LICENCE]]}
name=${2:-nuclei}
licence=${3:-}
root=src/bayescellseg/pretrained
dst=$root/$name
mkdir -p "$dst"
init=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1])).get('init_from') or '')" "$src/training_config.json")
[ "$init" = "bundled" ] && init=$root/nuclei
tmp_init=$(mktemp)
trap 'rm -f "$tmp_init"' EXIT
if [ -f "$src/train_log_init.csv" ]; then
  cp "$src/train_log_init.csv" "$tmp_init"
  init=own
elif [ -n "$init" ]; then
  cp "$init/train_log.csv" "$tmp_init"
fi
for f in config.json weights.safetensors train_log.csv training_curve.png training_config.json; do
  cp "$src/$f" "$dst/$f"
done
# the split, calibration and trust models of these weights, or none: never an older model's
for f in split.json calibration.json trust.json finetune.json finetune_log.csv; do
  rm -f "$dst/$f"
  [ -f "$src/$f" ] && cp "$src/$f" "$dst/$f"
done
rm -f "$dst/train_log_init.csv"
[ -n "$init" ] && cp "$tmp_init" "$dst/train_log_init.csv" && chmod 644 "$dst/train_log_init.csv"
if [ -n "$licence" ]; then
  "${PYTHON:-.venv/bin/python}" -c "import sys; from bayescellseg.model.store import update_extras; update_extras(sys.argv[1], licence=sys.argv[2])" "$dst" "$licence"
fi
du -sh "$dst"
