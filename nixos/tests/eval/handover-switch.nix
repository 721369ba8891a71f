# What `nixos-rebuild switch` installs for a colour upgraded by handover (blue) whose package
# is the directory PACKAGE: `{ dropIn; activation; }`, the text of
# ws@blue.service.d/overrides.conf and the activation that points blue's profile at PACKAGE.
# ci/suites/31-handover.sh renders it for two builds and does in a real systemd what
# switch-to-configuration does between them. Run from the repository root:
#
#   nix-instantiate --eval --strict --json --argstr package /opt/build --arg limitNOFILE 20000 nixos/tests/eval/handover-switch.nix
{ package, limitNOFILE ? 1048576 }:
(import ./harness.nix).handoverSwitch { inherit package limitNOFILE; }
