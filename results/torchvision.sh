#!/usr/bin/env bash
# torchvision's resnet18 and mobilenet_v3_small and their FoldedCNNs (models.fold_cnn) at f = 1..4 on this
# machine's CPU, 64x64 images, batch 256, the default CPU inference path (fp32). Usage: results/torchvision.sh NAME
# writes results/NAME/torchvision.csv, its machine record and report (name the CPU, e.g. amd-epyc-zen4).
set -euo pipefail
cd "$(dirname "$0")/.."
out="results/${1:?name the CPU, for example amd-epyc-zen4}"
mkdir -p "$out"
for model in resnet18 mobilenet_v3_small; do
  ./run_inference.sh "$out/torchvision.csv" --model_file "docs/examples/torchvision_models.py:$model" --input_shape 3 64 64 \
    --batch_sizes 256 --device cpu
done
python3 util/inference_report.py "$out/torchvision.csv"
