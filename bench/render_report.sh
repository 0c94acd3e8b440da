#!/usr/bin/env bash
# Render netae's HTML reports and screenshot them with headless Chromium, so that a person can
# look at what an analyst would see (issues 8 and 19).
#
#   bench/render_report.sh            # writes bench/out/{sample.netae,report.html,report.png,train.html,train.png}
#   EVAL=/work/shared/eval bench/render_report.sh   # also dev_mixed.pcap with its labels: dev.{html,png}
#   PYTHON=/path/to/python TOP=10 WIDTH=1280 HEIGHT=2000 EPOCHS=12 OUT=bench/out bench/render_report.sh
#
# Needs Debian's chromium (apt-get install -y chromium). Models are trained once and reused;
# delete bench/out/*.netae to retrain. Chromium's --screenshot captures the window only, so
# HEIGHT sets how much of the page the PNG shows (the incidents, hosts and timeline come first).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
TOP=${TOP:-10}
WIDTH=${WIDTH:-1280}
HEIGHT=${HEIGHT:-2000}
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

report() {  # report CAPTURE MODEL LABELS HTML: a report; exit status 1 (anomalies found) is expected
    local status=0
    "$PYTHON" -m netae report "$1" -m "$2" -o "$4" --labels "$3" --top "$TOP" --device cpu --quiet || status=$?
    [ "$status" -le 1 ] || exit "$status"
}

shoot() {  # shoot HTML PNG HEIGHT
    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$(mktemp -d)" --hide-scrollbars --window-size="$WIDTH","$3" \
        --screenshot="$(realpath "$2")" "file://$(realpath "$1")" 2>"$OUT/chromium.log" >/dev/null
    echo "$2"
}

if [ ! -f "$OUT/sample.netae" ]; then
    "$PYTHON" -m netae train sample_pcaps/normal -o "$OUT/sample.netae" --seed 0 --epochs "${EPOCHS:-12}" \
        --report "$OUT/train.html" --quiet
fi
report sample_pcaps/mixed.pcap "$OUT/sample.netae" sample_pcaps/mixed_labels.csv "$OUT/report.html"
shoot "$OUT/report.html" "$OUT/report.png" "$HEIGHT"
[ -f "$OUT/train.html" ] && shoot "$OUT/train.html" "$OUT/train.png" 1500

if [ -n "${EVAL:-}" ]; then
    if [ ! -f "$OUT/eval.netae" ]; then
        "$PYTHON" -m netae train "$EVAL/train_benign.pcap" -o "$OUT/eval.netae" --seed 0 --quiet
    fi
    report "$EVAL/dev_mixed.pcap" "$OUT/eval.netae" "$EVAL/dev_labels.csv" "$OUT/dev.html"
    shoot "$OUT/dev.html" "$OUT/dev.png" "$HEIGHT"
fi
ls -l "$OUT"/*.html "$OUT"/*.png
