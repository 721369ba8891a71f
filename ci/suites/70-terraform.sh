#!/usr/bin/env bash
# Terraform fleet (terraform/, docs/fleet.md): fmt, init and validate of every root module,
# `terraform test` with the mocked AWS provider, checkov, the rendered first-boot script and
# host flake, the fleet-host NixOS module (parse, assertions, its Prometheus configuration
# through promtool, its NLB health check and proxy protocol through the real Traefik and
# server), and the fleet-rollout tool's tests, one of them against the real wsctl.
# needs: setup release faults
set -euo pipefail
. "$(dirname "$0")/../lib.sh"

TF_DIR="$REPO/terraform"
PLUGIN_DIR=/opt/tf-plugins
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"; find "$TF_DIR" -name .terraform -type d -prune -exec rm -rf {} +' EXIT
export TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1

# Terraform and the AWS provider come with this machine's image, not from ci/setup (no
# provider registry is reachable). Without them nothing below means anything: fail loudly.
loud_failure() {
  printf '\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
  printf '!!! TERRAFORM SUITE CANNOT RUN: %s\n' "$*" >&2
  printf '!!! The fleet configuration (terraform/) was NOT checked.\n' >&2
  printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n' >&2
  echo "RESULT terraform: NOT RUN ($*)"
  exit 1
}
command -v terraform >/dev/null || loud_failure "no terraform binary on PATH (expected /usr/local/bin/terraform)"
[ -d "$PLUGIN_DIR/registry.terraform.io/hashicorp/aws" ] ||
  loud_failure "no hashicorp/aws provider in $PLUGIN_DIR"
[ -x "$VENV/bin/checkov" ] || loud_failure "checkov is not installed in $VENV (ci/requirements.txt)"
for tool in pytest flake8; do
  [ -x "$VENV/bin/$tool" ] || loud_failure "$tool is not installed in $VENV (ci/requirements.txt)"
done
log "$(terraform version | head -1), provider(s): $(ls "$PLUGIN_DIR"/registry.terraform.io/hashicorp/aws)"

cd "$TF_DIR"
ROOTS=(modules/ws-host modules/redis modules/ws-fleet envs/example)

log "terraform fmt -check -recursive"
terraform fmt -check -recursive -diff

tests_passed=0
for root in "${ROOTS[@]}"; do
  log "init + validate: $root"
  terraform -chdir="$root" init -backend=false -plugin-dir="$PLUGIN_DIR" -input=false -no-color > "$WORK/init.log" ||
    { cat "$WORK/init.log"; die "terraform init failed in $root"; }
  terraform -chdir="$root" validate -no-color
  if [ -d "$root/tests" ]; then
    log "terraform test: $root"
    terraform -chdir="$root" test -no-color | tee "$WORK/test.log"
    summary=$(grep -E '^Success! [0-9]+ passed, 0 failed' "$WORK/test.log") ||
      die "terraform test in $root did not end in success"
    n=$(sed -E 's/^Success! ([0-9]+) passed.*/\1/' <<<"$summary")
    [ "$n" -gt 0 ] || die "terraform test in $root ran no test"
    echo "RESULT terraform test $root: $n passed, 0 failed"
    tests_passed=$((tests_passed + n))
  fi
done
echo "RESULT terraform tests: $tests_passed passed"

log "checkov (each skip is justified beside its resource)"
# Exit status 1 means failed checks, which the summary below reports; anything else is broken.
"$VENV/bin/checkov" -d "$TF_DIR" --framework terraform --skip-download -o json > "$WORK/results_json.json" || [ $? -eq 1 ]
summary=$(jq -c '.summary' "$WORK/results_json.json") || die "checkov wrote no JSON report"
jq -r '.results.failed_checks[]? | "FAILED \(.check_id) \(.resource) \(.file_path):\(.file_line_range[0])"' "$WORK/results_json.json"
jq -r '.results.skipped_checks[]? | "skipped \(.check_id) \(.resource): \(.check_result.suppress_comment)"' "$WORK/results_json.json"
read -r passed failed skipped < <(jq -r '"\(.passed) \(.failed) \(.skipped)"' <<<"$summary")
echo "RESULT checkov: $passed passed, $failed failed, $skipped skipped (justified)"
[ "$failed" -eq 0 ] || die "checkov found $failed failed check(s)"
[ "$passed" -gt 0 ] || die "checkov checked nothing"
unjustified=$(jq '[.results.skipped_checks[]? | select((.check_result.suppress_comment // "") | length < 20)] | length' "$WORK/results_json.json")
[ "$unjustified" -eq 0 ] || die "$unjustified checkov skip(s) without a justification"

# The first-boot script and the host flake as Terraform renders them for a WebSocket host.
log "rendered user data: bash -n, shellcheck; host flake and NixOS files: parse, fmt, deadnix"
render() {
  terraform -chdir=modules/ws-host console -var name=ws-01 -var role=ws -var ami_id=ami-0123 \
    -var instance_type=c7i.large -var subnet_id=subnet-0a -var 'security_group_ids=["sg-0a"]' \
    -var instance_profile_name=ws -var root_volume_gb=40 \
    -var 'nixos={flake_ref="github:acme/concurrent-socket/0123abc", system="x86_64-linux", settings={fleet="f"}}' \
    -var 'binary_cache={url="https://cache.example.com", public_key="cache.example.com-1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}' \
    <<<"$1" | sed '1{/^<<EOT$/d}; ${/^EOT$/d}'
}
render 'local.user_data' > "$WORK/user-data.sh"
head -c 2 "$WORK/user-data.sh" | grep -q '#!' || die "user data does not start with #! (amazon-init would treat it as Nix)"
bash -n "$WORK/user-data.sh"
shellcheck -s bash "$WORK/user-data.sh"
sed -n "/<<'CACHE_OPTIONS'$/,/^CACHE_OPTIONS$/p" "$WORK/user-data.sh" | grep -qx 'https://cache.example.com' ||
  die "the rendered user data does not pass the binary cache to the first nixos-rebuild"
mkdir -p "$WORK/host" "$WORK/nixpkgs-stub"
render 'local.nixos_files["flake.nix"]' > "$WORK/host/flake.nix"
render 'local.nixos_files["fleet.json"]' | jq -r . > "$WORK/host/fleet.json"
nix-instantiate --parse "$WORK/host/flake.nix" > /dev/null

# The host flake's wiring, evaluated with this repository as the concurrent-socket, blue and
# green inputs and a stub nixpkgs whose nixosSystem returns its arguments (no nixpkgs offline):
# the output name, the system, fleet.json as specialArgs, both colour packages, and the
# modules, of which fleet-host.nix must exist in the repository's source.
log "host flake: evaluate its wiring with a stub nixpkgs"
echo '{ outputs = _: { lib.nixosSystem = args: { inherit args; }; }; }' > "$WORK/nixpkgs-stub/flake.nix"
overrides=()
for input in concurrent-socket blue green; do
  overrides+=(--override-input "$input" "git+file://$REPO" --override-input "$input/nixpkgs" "path:$WORK/nixpkgs-stub")
done
nix eval --json --no-write-lock-file "path:$WORK/host#nixosConfigurations.fleet-host.args" "${overrides[@]}" --apply '
  a: {
    inherit (a) system;
    fleet = a.specialArgs.fleet;
    colours = builtins.attrNames a.specialArgs.colourPackages;
    modules = map (m: if builtins.isFunction m then "function" else { path = toString m; exists = builtins.pathExists m; }) a.modules;
  }' > "$WORK/host-flake.json"
jq -e '.system == "x86_64-linux" and .fleet.role == "ws" and .colours == ["blue", "green"]
  and (.modules[0].path | endswith("/nixos/modules/virtualisation/amazon-image.nix"))
  and .modules[1] == "function"
  and (.modules[2].path | endswith("/terraform/nixos/fleet-host.nix")) and .modules[2].exists' \
  "$WORK/host-flake.json" > /dev/null || { cat "$WORK/host-flake.json"; die "the host flake is not wired as expected"; }
echo "RESULT host flake: nixosConfigurations.fleet-host wired (system, fleet.json, blue/green packages, 3 modules)"
mapfile -t nix_files < <(find nixos -name '*.nix' | sort)
for f in "${nix_files[@]}"; do nix-instantiate --parse "$f" > /dev/null; done
for tool in nixpkgs-fmt deadnix; do
  [ -x "$TOOLS_DIR/$tool" ] || die "$tool missing in $TOOLS_DIR (ci/setup installs it)"
done
"$TOOLS_DIR/nixpkgs-fmt" --check "${nix_files[@]}"
"$TOOLS_DIR/deadnix" --fail "${nix_files[@]}"
echo "RESULT fleet host files: user data passes shellcheck; flake.nix and ${#nix_files[@]} .nix files parse, fmt and deadnix clean"

log "fleet-lib.nix: pure assertions"
cases=$(nix-instantiate --eval --strict nixos/tests/fleet-lib.nix 2>/dev/null) ||
  { nix-instantiate --eval --strict nixos/tests/fleet-lib.nix; die "fleet-lib assertions failed"; }
echo "RESULT fleet-lib.nix: $(grep -oE '[0-9]+' <<<"$cases") cases passed"
set_paths=$(nix-instantiate --eval --strict --json nixos/tests/fleet-host-options.nix | jq -r .passed)
echo "RESULT fleet-host.nix: the $set_paths services.concurrent-socket options it sets are declared by nixos/module.nix"

log "the monitoring host's scrape configuration: promtool check config"
nix-instantiate --eval --strict --json -E 'let fleet = import ./nixos/fleet-lib.nix { }; in {
    global.scrape_interval = "15s";
    scrape_configs = fleet.scrapeConfigs {
      region = "eu-west-1";
      discoveryTags = { Fleet = "ws-prod"; Role = "ws"; };
      metricsPorts = { blue = 19464; green = 19465; traefik = 18082; node = 9100; };
    };
  }' > "$WORK/prometheus.yml"
promtool check config "$WORK/prometheus.yml"
echo "RESULT fleet prometheus config: promtool check config passed ($(jq '.scrape_configs | length' "$WORK/prometheus.yml") jobs)"

log "the NLB health check and proxy protocol through the real Traefik and server"
bash nixos/tests/nlb-health.sh

log "fleet-rollout: flake8, pytest (its contract tests run the release wsctl)"
[ -x "$BIN_DIR/wsctl" ] || die "$BIN_DIR/wsctl missing: the rollout's contract tests need the real wsctl (ci/test-all builds it)"
(cd rollout && "$VENV/bin/flake8")
(cd rollout && WSCTL_BIN="$BIN_DIR/wsctl" "$VENV/bin/pytest" -q -p no:cacheprovider -rs tests) | tee "$WORK/pytest.log"
rollout_summary=$(tail -1 "$WORK/pytest.log")
! grep -q skipped <<<"$rollout_summary" || die "fleet-rollout tests were skipped: $rollout_summary"
echo "RESULT fleet-rollout tests: $rollout_summary"
