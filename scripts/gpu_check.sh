#!/usr/bin/env bash
# The GPU checks in one device call (well under 10 minutes): GPU tests, then the 7B-shaped benchmark with and
# without gradient checkpointing. The lent machine has torch, transformers and pytest but not our other
# dependencies, which these checks do not need.   Usage there: bash scripts/gpu_check.sh
set -uo pipefail
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
OUT=${OUT:-/tmp}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$OUT/gpu_tests.txt"
python3 scripts/bench.py --workload llama7b-shape 2>&1 | tee "$OUT/bench_gpu.txt"
python3 scripts/bench.py --workload llama7b-shape --checkpointing --steps 5 2>&1 | tee "$OUT/bench_gpu_checkpointing.txt"
