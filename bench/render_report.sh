#!/usr/bin/env bash
# Render netae's HTML reports for the sample captures and screenshot them with headless Chromium,
# so that a person can look at what an analyst would see (issue 8).
#
#   bench/render_report.sh            # writes bench/out/{sample.netae,report.html,report.png,train.html,train.png}
#   PYTHON=/path/to/python TOP=10 HEIGHT=3400 EPOCHS=12 bench/render_report.sh
#
# Needs Debian's chromium (apt-get install -y chromium). The model is trained once and reused;
# delete bench/out/sample.netae to retrain. Chromium's --screenshot captures the window only, so
# HEIGHT sets how much of the page the PNG shows.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
TOP=${TOP:-10}
HEIGHT=${HEIGHT:-3400}
OUT=bench/out
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

if [ ! -f "$OUT/sample.netae" ]; then
    "$PYTHON" -m netae train sample_pcaps/normal -o "$OUT/sample.netae" --seed 0 --epochs "${EPOCHS:-12}" \
        --report "$OUT/train.html" --quiet
fi
status=0
"$PYTHON" -m netae report sample_pcaps/mixed.pcap -m "$OUT/sample.netae" -o "$OUT/report.html" \
    --labels sample_pcaps/mixed_labels.csv --top "$TOP" --device cpu --quiet || status=$?
[ "$status" -le 1 ] || exit "$status"  # 1 means anomalies were found, as expected here

shoot() {  # shoot HTML PNG HEIGHT
    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$(mktemp -d)" --hide-scrollbars --window-size=1400,"$3" \
        --screenshot="$PWD/$2" "file://$PWD/$1" 2>"$OUT/chromium.log" >/dev/null
    echo "$2"
}
shoot "$OUT/report.html" "$OUT/report.png" "$HEIGHT"
[ -f "$OUT/train.html" ] && shoot "$OUT/train.html" "$OUT/train.png" 1500
ls -l "$OUT"/*.html "$OUT"/*.png
