#!/usr/bin/env bash
# GPU benchmarks of issue 10 in one prepared run (< 8 min on one H200): the tracker along a real trajectory at
# N = d = n = 8192 and 16384 (ratios to one GD step, synchronised wall time), then a two-step CLI run with the
# monitor at 16384 end to end. Writes everything under ${OUT:-outputs/gpu_bench}; the rows go to BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-outputs/gpu_bench}"
mkdir -p "$out"
python=${PYTHON:-python}
nvidia-smi --query-gpu=name,memory.total --format=csv > "$out/gpu.txt" 2>&1 || true
timeout 300 "$python" scripts/bench_spectral.py --device cuda --sizes 8192 16384 --repeats 3 2>&1 | tee "$out/bench_spectral.txt"
timeout 240 /usr/bin/time -v "$python" -m spikelearn.cli fit --config two_step_reused \
    --trainer.accelerator gpu --trainer.devices 1 --trainer.default_root_dir "$out/run16384" \
    --model.width 16384 --data.input_dim 16384 --data.batch_size 16384 2>&1 | tail -40 | tee "$out/two_step_16384.txt"
echo "done: $out"
