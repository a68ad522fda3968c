#!/usr/bin/env bash
# Train, calibrate and evaluate the study's variants on the stored DSB2018 split.
#   experiments/run_study.sh decoder16 [original16 variational16 ensemble16 deterministic16]
# Env: DATA (default ../shared/data/dsb2018/stage1_train), RUNS (default runs), LIMIT_TTA
# (evaluate TTA on the first N val images only; default: all), DEVICE (default cpu),
# THREADS (torch CPU threads for training; default: the config's), VARIANTS (which evaluations;
# default "mc det mc_tta det_tta"), TRAIN_ONLY=1 (train and calibrate, no evaluation).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
DATA=${DATA:-../shared/data/dsb2018/stage1_train}
RUNS=${RUNS:-runs}
DEVICE=${DEVICE:-cpu}
THREADS_ARGS=()
[ -n "${THREADS:-}" ] && THREADS_ARGS=(--num-threads "$THREADS")
mkdir -p "$RUNS"

timed() {  # timed OUT_JSON cmd... : run cmd, record its wall time
  local out=$1; shift
  local start end
  start=$(date +%s.%N)
  "$@"
  end=$(date +%s.%N)
  python3 -c "import json,sys; json.dump({'seconds': $end - $start, 'command': sys.argv[1:]}, open('$out', 'w'))" "$@"
}

for name in "$@"; do
  model="$RUNS/$name"
  config="experiments/configs/$name.json"
  if [ -f "$model/checkpoints/last.pt" ]; then
    "$BIN/bayescellseg" train --data "$DATA" --out "$model" --resume --device "$DEVICE" "${THREADS_ARGS[@]}"
  elif [ ! -f "$model/weights.safetensors" ]; then
    "$BIN/bayescellseg" train --data "$DATA" --out "$model" --config "$config" --device "$DEVICE" "${THREADS_ARGS[@]}"
  fi
  [ -n "$(python3 -c "import json;print(json.load(open('$model/config.json')).get('temperature') or '')")" ] ||
    "$BIN/bayescellseg" calibrate --model "$model" --data "$DATA" --split val
  # a deterministic network has one prediction: its "MC" rows would repeat the "sampling off" ones
  method=$(python3 -c "import json;m=json.load(open('$model/config.json'))['model'];print(m['method'] + ('' if m.get('dropout_rate') else '-nodropout'))")
  [ -n "${TRAIN_ONLY:-}" ] && continue
  for variant in ${VARIANTS:-mc det mc_tta det_tta}; do
    out="$RUNS/$name.eval_$variant"
    [ -f "$out/metrics.json" ] && continue
    case $variant in mc*) [ "$method" = deterministic-nodropout ] && continue ;; esac
    # nor has an ensemble without dropout: its one pass per member is what "mc" evaluates
    case $variant in det*) [ "$method" = ensemble-nodropout ] && continue ;; esac
    args=(--model "$model" --data "$DATA" --split val --out "$out" --overwrite)
    case $variant in det*) args+=(--samples 0) ;; esac
    case $variant in *tta) args+=(--tta); [ -n "${LIMIT_TTA:-}" ] && args+=(--limit "$LIMIT_TTA") ;; esac
    timed "$out.time.json" "$BIN/bayescellseg" evaluate "${args[@]}"
  done
done
"$BIN/python" experiments/study_table.py "$RUNS" > "$RUNS/study_table.md"
cat "$RUNS/study_table.md"
