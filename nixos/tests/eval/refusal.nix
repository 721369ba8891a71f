# The evaluation of failing case N of ./harness.nix: it must fail, with the error that
# `(import ./cases.nix).failing` names for it. Run from the repository root:
#
#   nix-instantiate --eval --strict --arg n 0 nixos/tests/eval/refusal.nix
{ n }: (import ./harness.nix).refusal n
