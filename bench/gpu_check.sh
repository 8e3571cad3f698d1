#!/usr/bin/env bash
# One-shot GPU check for issue 12 (GPU worker throughput), run from the
# repository root on a GPU machine with no network:
#
#   bash bench/gpu_check.sh            # writes $OUT/*.log and $OUT/*.json (8 files at most)
#   QUICK=1 bash bench/gpu_check.sh    # the same steps on CPU with a tiny model, in a few minutes
#
# Steps, each under `timeout`, most important first (a hang loses one step):
#   0. wheels from .whl/ into $SITE (PYTHONPATH), versions, nvidia-smi     -> env.log
#   1. random-weight emotion2vec+ large (python -m ops.random_model)    -> env.log
#   2. engine variants, 2-15 s clips (python -m bench.engine_gpu)         -> engine.log, engine.json
#   3. worker throughput, 10-minute stereo 8 kHz calls, K processes,
#      energy VAD (VAD made negligible) (python -m bench.worker_throughput) -> worker.log, worker_energy.json
#   4. the same with Silero VAD, as the worker runs today                  -> worker.log, worker_silero.json
#   5. python -m bench.vad --device cuda, when bench/vad.py exists           -> vad.log
#   6. torch.compile variant, in whatever time is left                     -> compile.log
# Sizes are environment variables (defaults below); BUDGET is the wall-clock
# seconds the whole script aims to stay under (steps get what is left, compile
# only runs with more than 60 s left). STEPS picks steps, e.g.
# STEPS=compile bash bench/gpu_check.sh for a second call that only compiles.
# Engine switches for the worker bench come from the environment as in
# production (EMOQ_ENGINE_CONV_GEMM=true ...): spawned workers inherit it.
set -x
export PYTHONUNBUFFERED=1
START=$(date +%s)
QUICK=${QUICK:-0}
OUT=${OUT:-var/gpu-check}
mkdir -p "$OUT"
if [ -z "${PY:-}" ]; then
  if [ -x /opt/torch/.venv/bin/python3 ]; then PY=/opt/torch/.venv/bin/python3; else PY=python3; fi
fi
if [ "$QUICK" = 1 ]; then
  DEVICE=${DEVICE:-cpu}; SIZE=${SIZE:-tiny}; CLIPS=${CLIPS:-16}; BUDGET=${BUDGET:-420}
  CALLS=${CALLS:-3}; CALL_SECONDS=${CALL_SECONDS:-60}; KS=${KS:-1,2}
  SILERO_CALLS=${SILERO_CALLS:-2}; SILERO_KS=${SILERO_KS:-2}; COMPILE=${COMPILE:-0}
else
  DEVICE=${DEVICE:-cuda}; SIZE=${SIZE:-large}; CLIPS=${CLIPS:-400}; BUDGET=${BUDGET:-420}
  CALLS=${CALLS:-32}; CALL_SECONDS=${CALL_SECONDS:-600}; KS=${KS:-1,2,4,8}
  SILERO_CALLS=${SILERO_CALLS:-16}; SILERO_KS=${SILERO_KS:-8}; COMPILE=${COMPILE:-1}
fi
STEPS=${STEPS:-engine,worker,silero,vad,compile}
MODEL=${MODEL:-var/models/random-$SIZE}
WHEELS=${WHEELS:-.whl}
SITE=${SITE:-/tmp/emoq-site}
DATA=${DATA:-var/bench/calls}

left() { echo $(( BUDGET - ($(date +%s) - START) )); }
step() { [[ ",$STEPS," == *",$1,"* ]]; }

# 0. environment
{
  date -u
  if compgen -G "$WHEELS/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl \
      && echo "installed $(ls "$WHEELS"/*.whl | wc -l) wheels into $SITE"
  else
    echo "no wheels in $WHEELS: using the interpreter's own packages"
  fi
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  "$PY" -c "import sys, torch, numpy; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0)); print('numpy', numpy.__version__)"
  "$PY" -c "import funasr, silero_vad, soundfile, soxr, pydantic_settings, sqlalchemy; print('funasr', funasr.__version__)"
  command -v nvidia-smi > /dev/null && nvidia-smi
  nproc; free -g
} > "$OUT/env.log" 2>&1

# 1. the model (random weights, emotion2vec+ large's architecture)
if [ ! -f "$MODEL/model.pt" ]; then
  timeout -k 10 180 "$PY" -m ops.random_model --size "$SIZE" "$MODEL" >> "$OUT/env.log" 2>&1
fi

# 2. engine variants
step engine && timeout -k 10 $(( $(left) > 60 ? ($(left) < 240 ? $(left) : 240) : 60 )) \
  "$PY" -m bench.engine_gpu --device "$DEVICE" --model "$MODEL" --clips "$CLIPS" --profile \
  --json-out "$OUT/engine.json" > "$OUT/engine.log" 2>&1
echo "engine bench rc=$? after $(( $(date +%s) - START )) s"

# 3. worker throughput with VAD made negligible (energy threshold), K = $KS
step worker && timeout -k 10 $(( $(left) > 60 ? ($(left) < 200 ? $(left) : 200) : 60 )) \
  "$PY" -m bench.worker_throughput --device "$DEVICE" --model "$MODEL" --calls "$CALLS" \
  --min-seconds "$CALL_SECONDS" --max-seconds "$CALL_SECONDS" --processes "$KS" --vad energy \
  --data-dir "$DATA" --json-out "$OUT/worker_energy.json" > "$OUT/worker.log" 2>&1
echo "worker bench (energy VAD) rc=$? after $(( $(date +%s) - START )) s"

# 4. the same with Silero VAD (today's worker)
step silero && timeout -k 10 $(( $(left) > 45 ? ($(left) < ${SILERO_MAX:-120} ? $(left) : ${SILERO_MAX:-120}) : 45 )) \
  "$PY" -m bench.worker_throughput --device "$DEVICE" --model "$MODEL" --calls "$SILERO_CALLS" \
  --min-seconds "$CALL_SECONDS" --max-seconds "$CALL_SECONDS" --processes "$SILERO_KS" --vad silero \
  --data-dir "$DATA" --json-out "$OUT/worker_silero.json" >> "$OUT/worker.log" 2>&1
echo "worker bench (Silero VAD) rc=$? after $(( $(date +%s) - START )) s"

# 5. the batched VAD's own bench, where the vad branch has landed
if step vad && [ -f bench/vad.py ]; then
  timeout -k 10 $(( $(left) > 30 ? ($(left) < 90 ? $(left) : 90) : 30 )) \
    "$PY" -m bench.vad --device "$DEVICE" > "$OUT/vad.log" 2>&1
  echo "vad bench rc=$? after $(( $(date +%s) - START )) s"
fi

# 6. torch.compile, last: compiling takes minutes and may not fit
if step compile && [ "$COMPILE" = 1 ] && [ "$(left)" -gt 60 ]; then
  timeout -k 10 "$(left)" "$PY" -m bench.engine_gpu --device "$DEVICE" --model "$MODEL" --clips "$CLIPS" --compile \
    --variants "bf16_b200_all_cast,bf16_b200_all_compile_graphs,bf16_b200_all_compile" > "$OUT/compile.log" 2>&1
  echo "compile bench rc=$? after $(( $(date +%s) - START )) s"
else
  echo "compile bench skipped ($(left) s left)" > "$OUT/compile.log"
fi

set +x
echo "== summary ($(( $(date +%s) - START )) s) =="
for f in "$OUT"/engine.log "$OUT"/compile.log; do
  [ -f "$f" ] || continue
  echo "-- $f"; grep -v '^{' "$f" | grep -E '^(device|model:|variant|fp32|bf16|profile|  )' | head -60
done
for f in "$OUT"/worker.log; do
  [ -f "$f" ] || continue
  echo "-- $f"; grep -E '^( ?K | ?[0-9]+ |device|.*FAILED)' "$f" | head -30
done
[ -f "$OUT/vad.log" ] && { echo "-- vad.log"; tail -15 "$OUT/vad.log"; }
ls -la "$OUT"
