#!/usr/bin/env bash
# One-shot GPU check (run on a machine with an NVIDIA GPU, torch, numba, typer, rich, safetensors):
# train on sample_pcaps/normal on CUDA, score mixed.pcap on CUDA and with the CPU numba engine,
# and compare the two engines' scores and verdicts. Prints one summary line at the end.
#   bash bench/gpu_check.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp/netae-gpu}}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD
nvidia-smi -L || true
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0))"
time $PY -m netae train sample_pcaps/normal -o "$OUT/gpu.netae" --device cuda --seed 0
$PY -m netae info "$OUT/gpu.netae" | head -30
set +e
time $PY -m netae score sample_pcaps/mixed.pcap -m "$OUT/gpu.netae" --device cuda --all --format csv -o "$OUT/cuda.csv"
time $PY -m netae score sample_pcaps/mixed.pcap -m "$OUT/gpu.netae" --device cpu --engine numba --all --format csv -o "$OUT/numba.csv"
set -e
$PY - "$OUT/cuda.csv" "$OUT/numba.csv" <<'PY'
import csv, sys
a = list(csv.DictReader(open(sys.argv[1]))); b = list(csv.DictReader(open(sys.argv[2])))
key = lambda r: (r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"], r["protocol"], r["first_seen"])
da = {key(r): r for r in a}; db = {key(r): r for r in b}
assert da.keys() == db.keys(), "the two engines saw different flows"
rel = max(abs(float(da[k]["score"]) - float(db[k]["score"])) / max(abs(float(db[k]["score"])), 1e-12) for k in da)
same = sum(da[k]["is_anomaly"] == db[k]["is_anomaly"] for k in da)
print(f"gpu check: {len(da)} flows, max relative score difference cuda vs numba {rel:.2e}, verdicts equal {same}/{len(da)}")
PY
