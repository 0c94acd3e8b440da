#!/bin/bash
# Every CSV and JSON-lines output of the sample captures, for bench/compare_outputs.py.
# usage: bench/sample_outputs.sh NETAE_BIN OUTDIR REPO [MODEL]
#   trains on sample_pcaps/normal with --seed 0 into OUTDIR/model.netae, or scores with MODEL
#   when given (the same model on both sides isolates scoring from training)
set -e
N=$1; O=$2; R=$3; M=$4
mkdir -p "$O"
cd "$R"
if [ -n "$M" ]; then cp "$M" "$O/model.netae"; else $N train sample_pcaps/normal -o "$O/model.netae" --seed 0 -q; fi
set +e
for f in sample_pcaps/mixed.pcap sample_pcaps/normal/office_a.pcap sample_pcaps/normal/office_b.pcapng; do
  b=$(basename $f)
  $N score $f -m $O/model.netae --all --format csv -o $O/$b.csv -q
  $N score $f -m $O/model.netae --all --format jsonl -o $O/$b.jsonl -q
  $N score $f -m $O/model.netae --all --format csv --group-by host -o $O/$b.host.csv -q
  $N score $f -m $O/model.netae --all --format jsonl --group-by pair -o $O/$b.pair.jsonl -q
done
$N score sample_pcaps/mixed.pcap -m $O/model.netae --all --format csv --stream -o $O/mixed.stream.csv -q
$N info $O/model.netae --json > $O/info.json
$N evaluate sample_pcaps/mixed.pcap -m $O/model.netae --labels sample_pcaps/mixed_labels.csv --format json > $O/eval.json
echo ok
