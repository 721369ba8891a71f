# shellcheck shell=bash
# The body of redis-auth-token.service on a fleet WebSocket host (terraform/nixos/fleet-host.nix):
# reads the fleet Redis's auth token from Secrets Manager (the host's instance role may read
# that one secret, terraform/modules/ws-fleet/redis.tf) into a root-only file on tmpfs, which
# both colours load with LoadCredential= (docs/redis.md, ElastiCache). Retried: right after
# boot the network or the instance role's credentials may not be there yet.
#
# Environment: SECRET_ARN, AWS_REGION (from fleet.json), RUNTIME_DIRECTORY (systemd's).
set -euo pipefail
umask 077
token="$RUNTIME_DIRECTORY/token"
for attempt in 1 2 3 4 5 6 7 8 9 10; do
  if aws secretsmanager get-secret-value --region "$AWS_REGION" --secret-id "$SECRET_ARN" \
    --query SecretString --output text > "$token.new" && [ -s "$token.new" ]; then
    mv "$token.new" "$token"
    echo "auth token of $SECRET_ARN written to $token"
    exit 0
  fi
  echo "attempt $attempt of 10: no auth token from $SECRET_ARN; retrying in $((attempt * 3)) s" >&2
  sleep $((attempt * 3))
done
rm -f "$token.new"
echo "no auth token after 10 attempts: the colours cannot start (LoadCredential needs $token)" >&2
exit 1
