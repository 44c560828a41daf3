#!/usr/bin/env bash
# Replays the README's walk-through against a running service (./scripts/run on a fresh DATA_DIR and
# ARTIFACTS_DIR) and writes each step's real output to OUT (default ./walkthrough): what the README shows
# comes from one run of this, so every number in it can be had again with the same seeds.
#   ./scripts/walkthrough.sh [OUT]          RETRAIN_URL (default http://localhost:8080)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-walkthrough}
url=${RETRAIN_URL:-http://localhost:8080}
mkdir -p "$out"
out=$(cd "$out" && pwd)
step() { echo "== $1" >&2; }
wait_for() { # job id -> its final status
  until curl -s "$url/v1/jobs/$1" | grep -qE '"state":"(completed|failed|cancelled)"'; do sleep 1; done
  curl -s "$url/v1/jobs/$1"
}
id_of() { sed -n 's/.*"id":"\([0-9a-f-]\{36\}\)".*/\1/p' | head -1; }

step 'submit'
spec='{
    "mode": "fine_tuning", "weights": "random", "inputSize": 32, "epochs": 5,
    "dataset": {"type": "synthetic", "numClasses": 4, "imagesPerClass": 30, "imageSize": 32},
    "augmentation": {"randomResizedCrop": false, "horizontalFlip": false},
    "fineTuning": {"trainableFrom": "conv1", "freezeBatchNorm": false}
  }'
curl -si -X POST "$url/v1/jobs" -H 'content-type: application/json' -d "$spec" | tr -d '\r' > "$out/01-submit.txt"
job=$(id_of < "$out/01-submit.txt")
step 'poll while it trains'
until curl -s "$url/v1/jobs/$job" | grep -q '"phase":"training","epoch":2'; do sleep 0.2; done
curl -s "$url/v1/jobs/$job" > "$out/02-running.json"
wait_for "$job" > "$out/03-completed.json"

step 'events'
events_job=$(curl -s -X POST "$url/v1/jobs" -H 'content-type: application/json' -d '{
    "mode": "fine_tuning", "weights": "random", "inputSize": 32, "epochs": 2,
    "dataset": {"type": "synthetic", "numClasses": 4, "imagesPerClass": 30, "imageSize": 32},
    "augmentation": {"randomResizedCrop": false, "horizontalFlip": false}}' | id_of)
curl -sN "$url/v1/jobs/$events_job/events" > "$out/04-events.txt"

step 'cli watch'
cat > "$out/spec.json" <<'EOF'
{"mode": "fine_tuning", "weights": "random", "inputSize": 32, "epochs": 3,
 "dataset": {"type": "synthetic", "numClasses": 4, "imagesPerClass": 30, "imageSize": 32},
 "augmentation": {"randomResizedCrop": false, "horizontalFlip": false}}
EOF
RETRAIN_URL=$url npx retrain jobs submit "$out/spec.json" --watch > "$out/05-cli.txt" 2>&1

step 'summary, metrics, preflight'
curl -s -H 'accept: text/plain' "$url/v1/jobs/$job/summary?depth=1" > "$out/06-summary.txt"
curl -s "$url/v1/jobs/$job/metrics" > "$out/07-metrics.json"
curl -s "$url/v1/jobs/$job/preflight" > "$out/08-preflight.json"

step 'downloads'
(cd "$out" && curl -s -OJ -D - "$url/v1/jobs/$job/checkpoint" | tr -d '\r' > 09-download.txt)
curl -s -o /dev/null -w '%{http_code} %{size_download}\n' "$url/v1/jobs/$job/checkpoint?format=safetensors" >> "$out/09-download.txt"

step 'onnx'
onnx_job=$(curl -s -X POST "$url/v1/jobs" -H 'content-type: application/json' -d '{
    "mode": "fine_tuning", "weights": "random", "inputSize": 32, "epochs": 3,
    "dataset": {"type": "synthetic", "numClasses": 4, "imagesPerClass": 30, "imageSize": 32},
    "augmentation": {"randomResizedCrop": false, "horizontalFlip": false}, "checkpoints": {"keepEveryN": 1}}' | id_of)
wait_for "$onnx_job" > /dev/null
(cd "$out" && curl -s -D - "$url/v1/jobs/$onnx_job/checkpoint?format=onnx" -o /dev/null | tr -d '\r' > 10-onnx.txt)
until [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/v1/jobs/$onnx_job/checkpoint?format=onnx")" = 200 ]; do sleep 2; done
(cd "$out" && curl -s -OJ -D - "$url/v1/jobs/$onnx_job/checkpoint?format=onnx" | tr -d '\r' >> 10-onnx.txt)
until [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/v1/jobs/$onnx_job/checkpoint?epoch=2&format=safetensors")" = 200 ]; do sleep 2; done
curl -s -o /dev/null -w '%{http_code} %{size_download}\n' "$url/v1/jobs/$onnx_job/checkpoint?epoch=2&format=safetensors" >> "$out/10-onnx.txt"
echo "$onnx_job" > "$out/onnx-job"

step 'predict'
data=$(ls -d "${DATA_DIR:-data}"/.synthetic/*/ 2>/dev/null | head -1)
curl -s -X POST "$url/v1/jobs/$job/predict?topK=2" -F "image=@${data}c02-stripes-hue180/img-0003.png" \
  -F "image=@${data}c00-disc-hue000/img-0007.png" > "$out/11-predict.json"
curl -s -X POST "$url/v1/jobs/$onnx_job/predict?topK=4&precision=fp32" -F "image=@${data}c02-stripes-hue180/img-0003.png;filename=stripes.png" \
  -F "image=@${data}c00-disc-hue000/img-0007.png;filename=disc.png" > "$out/12-predict-onnx-job.json"

step 'upload'
(cd "$data" && tar -czf "$out/shapes.tar.gz" c00-disc-hue000 c01-square-hue090 c02-stripes-hue180 c03-checker-hue270)
curl -s -X POST "$url/v1/datasets?name=shapes" -H 'content-type: application/gzip' --data-binary "@$out/shapes.tar.gz" > "$out/13-upload.json"

step 'pretrained'
pretrained=$(curl -s -X POST "$url/v1/jobs" -H 'content-type: application/json' -d '{"mode":"pretrained","weights":"random"}' | id_of)
wait_for "$pretrained" > /dev/null
curl -s -H 'accept: text/plain' "$url/v1/jobs/$pretrained/summary?depth=0" > "$out/14-pretrained-summary.txt"

step 'bad input'
curl -s -X POST "$url/v1/jobs" -H 'content-type: application/json' \
  -d '{"mode":"feature_extraction","inputSize":100,"fineTuning":{},"dataset":{"type":"folder","path":"../etc"}}' > "$out/15-bad-input.json"

step 'default weights'
weights_job=$(curl -s -X POST "$url/v1/jobs" -H 'content-type: application/json' -d '{"mode":"pretrained"}' | id_of)
wait_for "$weights_job" > "$out/16-default-weights.json"
curl -s "$url/v1/weights" > "$out/17-weights.json"
echo "written to $out" >&2
