#!/bin/bash
# The arena suite on the lent GPU: install diffusers, train every tokenizer then every generator side by side
# (steps measured to fit the seconds given), then return part 1 of the outputs ($OUT); part 2 by `pack.py ... 2`.
set -u
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site ${WHEELS:-.gpu/whl}/*.whl || exit 3
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 MINDMAP_DATA=${MINDMAP_DATA:-$PWD/.gpu/data}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, diffusers, accelerate; print(torch.__version__, diffusers.__version__, accelerate.__version__, torch.cuda.is_available())" || exit 4
KEEP=${KEEP:-/tmp/arena-keep}   # outside the working tree (see README.md)
mkdir -p $KEEP
echo "setup $(( $(date +%s) - T0 )) s"
timeout ${SUITE_LIMIT:-470} python3 -m mindmap -v train suite --out $KEEP/ck --run-dir $KEEP/run --jobs 6 --ablation \
  --tokenizer-seconds ${TS:-150} --generator-seconds ${GS:-380} --mixed-precision bf16 > $KEEP/suite.log 2>&1
echo "suite rc=$? at $(( $(date +%s) - T0 )) s"
grep -v "it/s\]\|s/it\]" $KEEP/suite.log | tail -25
cat $KEEP/run/sync-*/steps.json 2>/dev/null
nvidia-smi --query-gpu=memory.used --format=csv,noheader
python3 benchmarks/device/pack.py $KEEP $OUT 1
echo "total $(( $(date +%s) - T0 )) s"
