#!/usr/bin/env bash
# Multi-GPU / multi-node training with DeepSpeed ZeRO-2 through accelerate.
#
#   scripts/launch_training.sh training_configs/stage_2.yaml                  # every GPU of this machine
#   NUM_MACHINES=2 MACHINE_RANK=0 MAIN_PROCESS_IP=10.0.0.1 scripts/launch_training.sh training_configs/stage_2.yaml
#   (and MACHINE_RANK=1 on the second machine)
#
# Environment: GPUS_PER_MACHINE (default: all visible), NUM_MACHINES (1), MACHINE_RANK (0), MAIN_PROCESS_IP
# (127.0.0.1), MAIN_PROCESS_PORT (29500), MIXED_PRECISION (fp16), DEEPSPEED_CONFIG (training_configs/zero2_config.json).
# Needs: pip install deepspeed
set -euo pipefail

config="${1:?usage: scripts/launch_training.sh TRAINING_CONFIG.yaml}"
gpus="${GPUS_PER_MACHINE:-$(python -c 'import torch; print(max(torch.cuda.device_count(), 1))')}"
machines="${NUM_MACHINES:-1}"

args=(
    --use_deepspeed
    --deepspeed_config_file "${DEEPSPEED_CONFIG:-training_configs/zero2_config.json}"
    --mixed_precision "${MIXED_PRECISION:-fp16}"
    --num_machines "$machines"
    --num_processes "$((gpus * machines))"
    --machine_rank "${MACHINE_RANK:-0}"
    --main_process_ip "${MAIN_PROCESS_IP:-127.0.0.1}"
    --main_process_port "${MAIN_PROCESS_PORT:-29500}"
)
exec accelerate launch "${args[@]}" train.py --config "$config"
