#!/bin/sh
# One easload run on Kubernetes, with its own names: every object of OVERLAY gets the suffix
# -<RUN> (the Jobs easload-<RUN> and easload-merge-<RUN>, their ConfigMaps, Secret, Service and
# volume), the pods the label app.kubernetes.io/instance=<RUN>, and the headless Service selects
# this run's shards only.  A second run never collides with the first one's immutable Job fields.
#
#   deploy/kubernetes/run.sh OVERLAY [RUN]          start the run (kubectl apply)
#   deploy/kubernetes/run.sh --print OVERLAY [RUN]  print the manifests only
#
# RUN: lower-case letters, digits and '-', at most 20 characters (the pods' host names are
# easload-<RUN>-<index>, at most 63); default: the UTC time, e.g. 20260601-0900.
# Needs kubectl (its built-in kustomize) and writes deploy/kubernetes/runs/<RUN>/ (git-ignored; or
# $EASLOAD_K8S_RUNS/<RUN>/).  `kubectl apply`, not create: the overlay's Namespace may exist already.
set -eu
print=
if [ "${1:-}" = "--print" ]; then print=1; shift; fi
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 [--print] OVERLAY [RUN]" >&2; exit 2; }
overlay=$1
run=${2:-$(date -u +%Y%m%d-%H%M)}
case $run in
  *[!a-z0-9-]* | -* | *- | "") echo "$0: RUN must be lower-case letters, digits and '-', not '$run'" >&2; exit 2 ;;
esac
[ ${#run} -le 20 ] || { echo "$0: RUN '$run' is longer than 20 characters" >&2; exit 2; }
[ -f "$overlay/kustomization.yaml" ] || { echo "$0: no kustomization.yaml in '$overlay'" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
dir=${EASLOAD_K8S_RUNS:-$here/runs}/$run
mkdir -p "$dir"
rel=$(realpath --relative-to="$dir" "$overlay")
cat > "$dir/kustomization.yaml" <<YAML
# run $run of $overlay (written by deploy/kubernetes/run.sh)
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $rel
nameSuffix: -$run
labels:
  - pairs:
      app.kubernetes.io/instance: "$run"
    includeTemplates: true
patches:
  - target:
      kind: Service
    patch: |-
      - op: add
        path: /spec/selector/app.kubernetes.io~1instance
        value: "$run"
# the pods' subdomain and the barrier's peer names follow the Service's new name
replacements:
  - source:
      kind: Service
      name: easload
    targets:
      - select:
          kind: Job
          name: easload
        fieldPaths:
          - spec.template.spec.subdomain
          - spec.template.spec.containers.[name=easload].env.[name=EASLOAD_SERVICE].value
YAML
if [ -n "$print" ]; then
  exec kubectl kustomize "$dir"
fi
kubectl apply -k "$dir"
echo "run $run started: kubectl get pods -A -l app.kubernetes.io/instance=$run -w" >&2
