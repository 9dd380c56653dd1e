#!/usr/bin/env bash
# The figures of docs/tasks-and-techniques.md: adversarial fine-tuning, 50% pruning, attention maps on the
# generated world. CPU-sized (a small LXMERT from scratch); each stage takes minutes.
#   bash benchmarks/more_tasks_experiments.sh [WORK_DIR] [stage ...]   stages: world base plain adv robust prune retrain attention
# base: a small model trained from scratch (the starting checkpoint); plain / adv: one more
# two epochs of fine-tuning from it without / with adversarial training (seeds 1-3 each).
set -euo pipefail
W=${1:-/tmp/more-tasks}
shift || true
STAGES=${*:-world base plain adv robust prune retrain attention}
MODEL=(--set model.hidden_size=64 --set model.num_attention_heads=4 --set model.intermediate_size=128
       --set model.l_layers=2 --set model.x_layers=1 --set model.r_layers=1
       --set data.num_workers=0 --set data.features=[\"features/store\"] --set data.valid=minival --set data.train=[\"train\"] --set train.log_every=25
       --set model.answers=vqa/trainval_label2ans.json)  # the world's own 31 answers
COMMON=(--data "$W/world" --batch-size 32 --no-progress)

for stage in $STAGES; do
  case $stage in
  world)
    lxmert synth "$W/world" --images 1000 --store --quiet --overwrite
    python -c "from lxmert.data.synth.more_tasks import derive_more_tasks as d; print(d('$W/world'))" ;;
  base)   # the starting checkpoint: VQA of the world, from scratch
    /usr/bin/time -f "%e s" lxmert finetune vqa "${COMMON[@]}" --epochs 8 --lr 1e-3 --out "$W/vqa-base" "${MODEL[@]}" ;;
  plain)  # two epochs of plain fine-tuning from it, three seeds
    for seed in 1 2 3; do
      /usr/bin/time -f "%e s" lxmert finetune vqa "${COMMON[@]}" --epochs 2 --lr 2e-4 --seed $seed \
        --init "$W/vqa-base/best" --out "$W/vqa-plain-$seed" "${MODEL[@]}"
    done ;;
  adv)    # the same runs with VILLA-style adversarial training on words and regions
    for seed in 1 2 3; do
      /usr/bin/time -f "%e s" lxmert finetune vqa "${COMMON[@]}" --epochs 2 --lr 2e-4 --seed $seed \
        --init "$W/vqa-base/best" --out "$W/vqa-adv-$seed" "${MODEL[@]}" \
        --adv text,image --adv-steps 3 --adv-lr 1e-3 --adv-kl 1.5
    done ;;
  robust) # minival accuracy with Gaussian noise added to the region features / word embeddings
    python "$(dirname "$0")/robustness.py" "$W" > "$W/robustness.json"; cat "$W/robustness.json" ;;
  prune)  # one-shot magnitude pruning of the best baseline checkpoint, evaluated without retraining
    for s in 0.3 0.5 0.7; do
      for scope in global layer; do
        lxmert prune "$W/vqa-base/best" --sparsity $s --scope $scope --keep-embeddings --keep-head \
          --out "$W/pruned-$scope-$s" > "$W/pruned-$scope-$s.txt"
        lxmert evaluate vqa --data "$W/world" --checkpoint "$W/pruned-$scope-$s" --split minival \
          --out "$W/pruned-$scope-$s.json" --set model.answers=vqa/trainval_label2ans.json > /dev/null
      done
    done
    lxmert evaluate vqa --data "$W/world" --checkpoint "$W/vqa-base/best" --split minival --out "$W/base-eval.json" > /dev/null ;;
  retrain) # one epoch of retraining of the 70 % per-tensor pruned model, its zeros kept
    /usr/bin/time -f "%e s" lxmert finetune vqa "${COMMON[@]}" --epochs 1 --lr 2e-4 --seed 1 \
      --init "$W/pruned-layer-0.7" --keep-sparsity --out "$W/vqa-pruned-layer-0.7-retrained" "${MODEL[@]}"
    # prints "(was 70.00% zeros)": the zeros survived the retraining
    lxmert prune "$W/vqa-pruned-layer-0.7-retrained/best" --sparsity 0.7 --scope layer --keep-embeddings \
      --keep-head --out "$W/check-retrained-sparsity" | head -1 ;;
  attention)
    img=$(python -c "import json; print(json.load(open('$W/world/vqa/minival.json'))[0]['img_id'])")
    q=$(python -c "import json; print(json.load(open('$W/world/vqa/minival.json'))[0]['sent'])")
    lxmert attention "$W/vqa-base/best" --features "$W/world/features/store" --image "$img" --text "$q" \
      --out "$W/attention" --layers 0,-1 --object-vocab synth --attr-vocab synth ;;
  *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
