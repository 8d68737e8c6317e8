#!/usr/bin/env bash
# Issue 12's device run, prepared to fit one call of the device tool (about 8 minutes on an H200):
#   1. the device checks (bf16 vs fp32, compiled vs eager with CUDA graphs, fp8, compiled decoder);
#   2. bench_stream.py at full size (universal, 352x640): eager bf16, compiled bf16 (CUDA graphs),
#      eager with fp8 block weights;
#   3. a markdown table of the three runs (GPU name included) for benchmarks/README.md.
# Every step has its own time limit so that a slow compile cannot eat the later steps.
#
#   benchmarks/device_run.sh              # on the GPU machine: device tool `run`, timeout_s 590
#   benchmarks/device_run.sh --dry-run    # here: the same steps on the CPU at tiny size (~minutes)
#
# Output: the console, and $OUT (default /tmp/device_run) gets checks.log, bench_*.json, table.md.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${OUT:-/tmp/device_run}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ "${1:-}" = "--dry-run" ] || ! $PY -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    # the same steps at tiny size, 64x112, compiled graphs traced by aot_eager (no C++ builds)
    DEV=cpu SIZE=tiny BLOCKS=2 CHECK_BLOCKS=3 T_CHECK=900 T_EAGER=300 T_COMP=600
    BACKEND=aot_eager EXTRA="--video 64x112 --compile-backend aot_eager"
    echo "== dry run on the CPU (tiny sizes)"
else
    DEV=cuda SIZE=full BLOCKS=16 CHECK_BLOCKS=5 T_CHECK=150 T_EAGER=60 T_COMP=240 BACKEND=inductor EXTRA=""
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
$PY -c "import torch; print('torch', torch.__version__)"

echo "== 1. device checks"
timeout "$T_CHECK" $PY benchmarks/device_checks.py --device "$DEV" --blocks "$CHECK_BLOCKS" --backend "$BACKEND" 2>&1 | tee "$OUT/checks.log"
echo "checks exit: ${PIPESTATUS[0]}"

bench() {  # name, limit, extra args
    local name=$1 limit=$2
    shift 2
    echo "== 2. bench_stream $name"
    timeout "$limit" $PY benchmarks/bench_stream.py --size "$SIZE" --device "$DEV" --blocks "$BLOCKS" --warmup 2 \
        --json "$OUT/bench_$name.json" $EXTRA "$@" 2>&1 | tail -n 14
}
bench eager "$T_EAGER"
bench compiled "$T_COMP" --compile
bench fp8 "$T_EAGER" --fp8

echo "== 3. table"
$PY - "$OUT" <<'PYEOF' | tee "$OUT/table.md"
import glob, json, os, sys
rows = [json.load(open(p)) | {"run": os.path.basename(p)[6:-5]} for p in sorted(glob.glob(os.path.join(sys.argv[1], "bench_*.json")))]
if rows:
    print(f"\n### bench_stream on {rows[0]['device']}, {rows[0]['video']}\n")
    print("| run | DiT dtype | DiT steps ms | context ms | decode ms | host copy ms | block ms | steady FPS | key-to-frame ms | peak GiB | recompiles |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        s = r["stage_ms"]
        print(f"| {r['run']} | {r['dtype']} | {s['denoise']:.1f} | {s['context']:.1f} | {s['decode']:.1f} | {s['host copy']:.1f} "
              f"| {r['period_ms']:.1f} | {r['steady_fps']:.1f} | {r['latency_ms']:.0f} | {r['peak_mem_gb']:.2f} | {r['recompiles']} |")
PYEOF
