#!/usr/bin/env bash
# The GPU checks (docs/benchmarks.md, "On a GPU"), for a machine with an NVIDIA GPU and PyTorch installed:
#   bash benchmarks/gpu_check.sh [OUT_DIR]          # default OUT_DIR: gpu-check
# 1. the CUDA tests: tests/test_cuda.py (training under amp off / bf16 / fp16, resume, DDP over NCCL, generation
#    against the CPU) and the log-mel front-end on CUDA;
# 2. benchmarks/bench_model.py --device cuda at amp off, bf16 and fp16: training samples/s at batch 32 (paper width,
#    full D + G + E step), inference real-time factor, peak memory.
# GPU_CHECK_PARTS="tests" (or "bench") runs one part only. Each part's output goes to OUT_DIR/*.txt; the exit status
# is non-zero if any part failed.
set -u -o pipefail
out=${1:-gpu-check}
py=${PYTHON:-python3}
mkdir -p "$out"
parts=${GPU_CHECK_PARTS:-tests bench}
status=0
{ nvidia-smi -L; $py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
torch.cuda.get_device_name())"; } 2>&1 | tee "$out/gpu.txt" || status=1
[[ " $parts " == *" tests "* ]] && { timeout 400 $py -m pytest -q -p no:cacheprovider tests/test_cuda.py \
    "tests/test_audio_frontends.py::test_logmel_on_cuda_matches_cpu" 2>&1 | tee "$out/tests.txt" || status=1; }
[[ " $parts " == *" bench "* ]] && for amp in off bf16 fp16; do
    timeout 300 $py benchmarks/bench_model.py --quick --device cuda --amp "$amp" 2>&1 \
        | tee "$out/bench_model_$amp.txt" || status=1
done
exit $status
