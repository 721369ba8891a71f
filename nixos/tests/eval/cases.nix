# Every case of ./harness.nix: { passed = N; cases = [ names ]; failing = [ ... ]; }, or the
# first failure. Run from the repository root:
#
#   nix-instantiate --eval --strict --json nixos/tests/eval/cases.nix
(import ./harness.nix).summary
