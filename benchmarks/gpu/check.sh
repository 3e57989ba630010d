#!/bin/bash
# One device-tool call (about 9 min on an H100) for issue 11's GPU goals and the GPU defaults:
#   1. the default run on all of SST-2 from an empty cache, timed, its wall time sampled
#      (benchmarks/gpu/sample.py);
#   2. c4cc04c's teacher fine-tune at its defaults for one epoch: the baseline's examples/s;
#   3. bench scale at the defaults;
#   4. kd, ukd and ukd[teacher_layers=window] paired at the defaults, seeds 0-1
#      (benchmarks/studies/quality-gpu-defaults.yaml), six students side by side, in the time left.
# Needs .gpu/ from ../shared/tools/gpu-bundle.sh and the baseline's code in .gpu/old
# (git archive c4cc04c ukd_compress | tar -x -C .gpu/old). Run it as
#   run(command="bash benchmarks/gpu/check.sh", carry=[".gpu"], timeout_s=540)
# Everything comes back in $OUT (keep.tgz holds the logs). A CPU dry run:
#   DRY=1 TRAIN=300 OLD_S=40 SCALE_S=5 BUDGET=200 STUDY_ARGS="--train-examples 200 --epochs 1 --seeds 1" \
#     UKD_HOME=/tmp/dry OUT=/tmp/out bash benchmarks/gpu/check.sh
set -u
root=$PWD
[ -n "${DRY:-}" ] || source .gpu/env.sh
export TQDM_MININTERVAL=10
OUT=${OUT:-/tmp/out}; mkdir -p $OUT /tmp/keep
BUDGET=${BUDGET:-505}
log() { echo "[+${SECONDS}s] $*" | tee -a /tmp/keep/log.txt; }
lim=(); [ -n "${TRAIN:-}" ] && lim=(--max-train-samples $TRAIN)
nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | tee -a /tmp/keep/log.txt
(nvidia-smi dmon -s u -d 2 -o T > /tmp/keep/dmon.txt 2>&1 &)
log "default run (new code), empty cache"
t0=$SECONDS
timeout ${RUN_S:-200} python3 benchmarks/gpu/sample.py /tmp/keep/samp-default.txt -m ukd_compress distill --task sst2 --output /tmp/run "${lim[@]}" > /tmp/keep/run.log 2>&1
log "default run rc=$? wall $((SECONDS - t0)) s"
tr '\r' '\n' < /tmp/keep/run.log | grep -v "step/s\|it/s" | tail -8 | tee -a /tmp/keep/log.txt
python3 - <<'PY' 2>&1 | tee -a /tmp/keep/log.txt
import json, glob, os
for p in glob.glob(os.environ["UKD_HOME"] + "/teachers/*/teacher.json"):
    t = json.load(open(p)); print("teacher", t["training"], [round(h["eval"]["validation"]["accuracy"], 2) for h in t["history"]], t.get("settings", {}).get("batch_size"), t.get("settings", {}).get("lr"))
r = json.load(open("/tmp/run/report.json"))
print("student", r["wall_seconds"], r["training"], r["student"]["metrics"], [round(h["eval"]["validation"]["accuracy"], 2) for h in r["history"]], r["method"].get("teacher_cache_prefilled"))
PY
log "c4cc04c teacher fine-tune, its defaults, ${OLD_S:-90}s"
(cd .gpu/old && PYTHONPATH=${SITE:-/tmp/site}:$root/.gpu/old UKD_HOME=/tmp/old-home TQDM_MININTERVAL=2 timeout ${OLD_S:-90} \
  python3 -m ukd_compress teacher --base minilm-l6 --task sst2 --epochs 1 --output /tmp/old-teacher "${lim[@]}") > /tmp/keep/old.log 2>&1
tr '\r' '\n' < /tmp/keep/old.log | grep -o "[0-9]*/[0-9]* \[[0-9:]*<[^]]*ex_s=[0-9]*" | tail -3 | tee -a /tmp/keep/log.txt
log "bench scale (default batch)"
timeout ${SCALE_S:-75} python3 -m benchmarks scale --steps ${SCALE_STEPS:-4} > /tmp/keep/scale.log 2>&1; log "scale rc=$?"
grep "|" /tmp/keep/scale.log | tail -9 | tee -a /tmp/keep/log.txt; grep "projected headline" /tmp/keep/scale.log | tee -a /tmp/keep/log.txt
cp benchmarks/results/scale-cuda.* $OUT/ 2>/dev/null
left=$(( BUDGET - SECONDS )); log "study, ${left}s left"
timeout $left python3 -m benchmarks quality --study benchmarks/studies/quality-gpu-defaults.yaml ${STUDY_ARGS:---seeds 2} \
  --jobs 6 --workdir /tmp/study --name quality-gpu-defaults > /tmp/keep/study.log 2>&1; log "study rc=$?"
pkill -INT -f "ukd_compress distill" && sleep 5
tr '\r' '\n' < /tmp/keep/study.log | grep -v "step/s\|it/s\|run/s" | tail -12 | tee -a /tmp/keep/log.txt
cp benchmarks/results/quality-gpu-defaults.* $OUT/ 2>/dev/null
python3 - <<'PY' > /tmp/keep/study_runs.json
import json, glob
out = {}
for path in sorted(glob.glob("/tmp/study/*/report.json") + glob.glob("/tmp/study/*.partial/status.json")):
    d = json.load(open(path)); out[path.split("/")[-2]] = {"history": [(h["epoch"], h["step"], h["eval"]) for h in d.get("history", [])], "wall": d.get("wall_seconds"), "training": d.get("training")}
print(json.dumps(out, indent=1))
PY
pkill -f "nvidia-smi dmon"; cp /tmp/run/report.json /tmp/keep/ 2>/dev/null; cp /tmp/study/*.log /tmp/keep/ 2>/dev/null
tar czf $OUT/keep.tgz -C /tmp keep; log done
