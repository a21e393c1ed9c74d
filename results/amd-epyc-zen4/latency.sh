#!/usr/bin/env bash
# Throughput-latency curves of the game and NoScope CNNs at f = 1..4, from the repository root:
#   ./results/amd-epyc-zen4/latency.sh [OUT [PRECISION ...]]   (default: results/amd-epyc-zen4/latency fp32 int8 bf16)
# Machine: a 2-core AMD EPYC VM (Zen 4: AVX-512, AVX-512 BF16, VNNI; no AMX), nothing else running.
# Batches double from f up to 1024 images (not the command's 4096: the CPU's curves flatten well before, and 4096
# would double the time); each trial times at least 200 batches or 1 s of them (at least 20); 3 trials.
# fp32: the CPU's default (ONNX Runtime), 39 minutes; int8: the default int8 backend here (OpenVINO on a CPU with
# VNNI), about 15; bf16: torch.compile (inductor), about 20.
set -euo pipefail
out=${1:-results/amd-epyc-zen4/latency}
shift || true
precisions=${*:-fp32 int8 bf16}
mkdir -p "$out"
ten="apex/squad_count_v2 lol/goldnumber-fraction lol/goldnumber-int lol/timer-minutes sot/coin_count-digits_3_4-v2
     sot/timer3 noscope_coral noscope_night noscope_roundabout noscope_taipei"
curve=(--curve --curve_max 1024 --trials 3 --latency_batches 200 --latency_seconds 1)
for p in $precisions; do
  ./run_inference.sh "$out/$p.csv" "${curve[@]}" --precision "$p" --models $ten
  python3 util/inference_report.py "$out/$p.csv" --out "$out/$p-report"
done
