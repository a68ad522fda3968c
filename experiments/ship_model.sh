#!/usr/bin/env bash
# Copy a trained, calibrated model folder into the package as the bundled default model.
#   experiments/ship_model.sh runs/decoder16_ft
# A model fine-tuned from another folder (init_from) also gets that folder's training log, as
# train_log_init.csv (init_from "bundled": the log of the model being replaced, taken before it
# is overwritten). The model card (MODEL_CARD.md) is written by hand from the study's figures.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:?usage: experiments/ship_model.sh MODEL_DIR}
dst=src/bayescellseg/pretrained/nuclei
mkdir -p "$dst"
init=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1])).get('init_from') or '')" "$src/training_config.json")
[ "$init" = "bundled" ] && init=$dst
tmp_init=$(mktemp)
trap 'rm -f "$tmp_init"' EXIT
[ -n "$init" ] && cp "$init/train_log.csv" "$tmp_init"
for f in config.json weights.safetensors train_log.csv training_curve.png training_config.json; do
  cp "$src/$f" "$dst/$f"
done
# the split, calibration and trust models of these weights, or none: never an older model's
for f in split.json calibration.json trust.json; do
  rm -f "$dst/$f"
  [ -f "$src/$f" ] && cp "$src/$f" "$dst/$f"
done
rm -f "$dst/train_log_init.csv"
[ -n "$init" ] && cp "$tmp_init" "$dst/train_log_init.csv" && chmod 644 "$dst/train_log_init.csv"
du -sh "$dst"
