#!/usr/bin/env bash
# Every measurement in this folder, in the order they were taken, from the repository root:
#   ./results/amd-epyc-zen4/run.sh
# Machine: a 2-core AMD EPYC VM (Zen 4, AVX-512 with AVX-512 BF16, no AMX); see README.md here.
set -euo pipefail
dir=results/amd-epyc-zen4
cnns="apex/squad_count_v2 lol/goldnumber-fraction lol/goldnumber-int lol/timer-minutes sot/coin_count-digits_3_4-v2 sot/timer3 noscope-coral noscope-night noscope-roundabout noscope-taipei"
# bf16: torch.compile (inductor, weights frozen) and eager, every model and fold, the CPU protocol's counts
./run_inference.sh $dir/bf16.csv --precision bf16 --backend compile
./run_inference.sh $dir/bf16.csv --precision bf16 --backend eager
# plain eager fp32 f=1 against the bf16 compile path at f=1 and f=4, trials interleaved
python3 util/benchmark_eager.py --tasks $cnns --precision bf16 --backend compile --out $dir/benchmark_bf16.md
# fp32: the default CPU protocol (ONNX Runtime)
./run_inference.sh $dir/fp32.csv
python3 util/inference_report.py $dir/bf16.csv
python3 util/inference_report.py $dir/fp32.csv
# folded torchvision models (fold_cnn) and --align widths, measured on 2026-12-01 (results/README.md)
./results/torchvision.sh amd-epyc-zen4
python3 util/benchmark_align.py --out $dir/align.md
