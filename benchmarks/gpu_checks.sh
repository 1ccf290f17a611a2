#!/usr/bin/env bash
# The GPU figures of benchmarks/RESULTS.md and experiments/priors/results_gpu.md in one command:
#   OUT=/some/folder bash benchmarks/gpu_checks.sh
# (run from the repository root on a machine with a CUDA build of JAX). Each part has its own
# time limit, so one that hangs leaves the others' figures; every log lands in $OUT.
set -u
OUT=${OUT:-gpu-checks}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
nvidia-smi -L 2>&1 | tee "$OUT/device.log"
$py -c "import jax, flax, optax, chex, orbax.checkpoint; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())" 2>&1 | tee -a "$OUT/device.log"
timeout 120 $py benchmarks/throughput.py --device gpu --rounds 5 2>&1 | tee "$OUT/throughput_gpu.log"
timeout 60 $py benchmarks/eval_throughput.py --model burda1 --k 5000 --n-test 1000 --batch-size 100 2>&1 | tee "$OUT/eval_gpu.log"
timeout 170 $py benchmarks/sweep.py --device gpu 2>&1 | tee "$OUT/sweep_gpu.log"
timeout "${PRIORS_SECONDS:-210}" $py experiments/priors/run.py --epochs "${PRIORS_EPOCHS:-100}" --warmup-epochs "${PRIORS_WARMUP:-20}" \
  --priors vamp,normal,mog --k 5000 \
  --workdir /tmp/jaxvae-priors --out "$OUT/priors_gpu.md" 2>&1 | tee "$OUT/priors_gpu.log"
# Burda et al.'s Table 1 on the paper's schedule (batch 20): each program's step time, the scan
# unrolled 1, 8 and 32 times, then without XLA's CUDA-graph command buffers (issue 14).
timeout 300 $py benchmarks/table1_steps.py --steps 3000 --repeats 3 --unroll 1,8,32 --json "$OUT/table1_steps.json" \
  2>&1 | tee "$OUT/table1_steps.log"
XLA_FLAGS="--xla_gpu_enable_command_buffer=" timeout 120 $py benchmarks/table1_steps.py --quick --steps 3000 \
  --repeats 3 --unroll 1,8 2>&1 | tee "$OUT/table1_steps_no_command_buffers.log"
# The VDVAE presets' training steps (issue 25): each step timed, the papers' schedules projected.
timeout 300 $py benchmarks/vdvae_step.py --device gpu --steps 20 2>&1 | tee "$OUT/vdvae_gpu.log"
