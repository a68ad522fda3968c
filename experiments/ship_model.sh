#!/usr/bin/env bash
# Copy a trained, calibrated model folder into the package as the bundled default model.
#   experiments/ship_model.sh runs/decoder16_ft
# A model fine-tuned from another folder (init_from) also gets that folder's training log, as
# train_log_init.csv. The model card (MODEL_CARD.md) is written by hand from the study's figures.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:?usage: experiments/ship_model.sh MODEL_DIR}
dst=src/bayescellseg/pretrained/nuclei
mkdir -p "$dst"
for f in config.json weights.safetensors train_log.csv training_curve.png training_config.json; do
  cp "$src/$f" "$dst/$f"
done
# the calibration of these weights (bayescellseg calibrate), or none: never an older model's
rm -f "$dst/calibration.json"
[ -f "$src/calibration.json" ] && cp "$src/calibration.json" "$dst/calibration.json"
init=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1])).get('init_from') or '')" "$src/training_config.json")
rm -f "$dst/train_log_init.csv"
[ -n "$init" ] && cp "$init/train_log.csv" "$dst/train_log_init.csv"
du -sh "$dst"
