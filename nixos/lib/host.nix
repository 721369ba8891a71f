# Host-level settings of a concurrent-socket host, as plain data: the kernel's reserved
# local ports (so that no outgoing connection takes a port a socket unit must bind again)
# and each instance's stop timeout (above its drain).
#
# Pure Nix (builtins only, no nixpkgs): the NixOS module and nixos/tests/lib.nix call it.
#
#   nix-instantiate --eval --strict --json -E '(import ./nixos/lib/host.nix { }).reservedPortsValue [ 3002 3001 9464 ]'
{}:
let
  inherit (builtins) concatStringsSep filter foldl' head isInt sort tail;
in
rec {
  # net.ipv4.ip_local_reserved_ports as the kernel reads it: sorted, each port once, runs of
  # consecutive ports as ranges ("3001-3002,9464"). The kernel never hands these out as
  # ephemeral ports (connect() or bind() to port 0), but an explicit bind() still gets them.
  reservedPortsValue = ports:
    let
      bad = filter (p: !(isInt p && p >= 1 && p <= 65535)) ports;
      sorted = sort (a: b: a < b) ports;
      # [ { from; to; } ... ] in order, consecutive and repeated ports folded in.
      runs = foldl'
        (acc: p:
          if acc != [ ] && p <= (head acc).to + 1
          then [ ((head acc) // { to = if p > (head acc).to then p else (head acc).to; }) ] ++ tail acc
          else [{ from = p; to = p; }] ++ acc)
        [ ]
        sorted;
      render = run: if run.from == run.to then toString run.from else "${toString run.from}-${toString run.to}";
    in
    if bad != [ ] then throw "reserved ports must be integers in 1..65535, got ${builtins.toJSON bad}"
    # The fold prepends: put the runs back in ascending order.
    else concatStringsSep "," (map render (sort (a: b: a.from < b.from) runs));

  # The unit's TimeoutStopSec for a server draining for `shutdownMs` milliseconds
  # (SHUTDOWN_TIMEOUT; null = the server's default of 10 s): the drain plus `marginSeconds`,
  # so that systemd never SIGKILLs a colour in the middle of its drain. ws@.service's own
  # 20 s is the default drain plus the same margin.
  defaultShutdownMs = 10000;
  stopMarginSeconds = 10;
  stopTimeoutSeconds = shutdownMs:
    let
      ms = if shutdownMs == null then defaultShutdownMs else shutdownMs;
      # Rounded up: a drain of 10.5 s needs 11 s.
      seconds = (ms + 999) / 1000;
    in
    if !(isInt ms) || ms <= 0 then throw "SHUTDOWN_TIMEOUT must be a positive integer of milliseconds, got ${builtins.toJSON ms}"
    else seconds + stopMarginSeconds;
}
