# The direct data path of a concurrent-socket host, as plain data (docs/deploy.md, "The
# direct data path"): clients reach the colours' servers without a proxy. Every colour's
# ws-public@COLOUR.socket binds the same public address with SO_REUSEPORT, so that the kernel
# spreads new connections over the colours whose listener is open, and with
# net.ipv4.tcp_migrate_req=1 a listener that closes hands its queued connections to the
# others: `wsctl deploy` flips colours by starting green's sockets and stopping blue's.
# What Traefik did on the WebSocket path (the upgrade rate limit per client, the client
# address behind an L4 load balancer) the server does itself, through the variables below.
#
# Pure Nix (builtins only, no nixpkgs): nixos/module.nix and nixos/tests/lib.nix call it.
#
#   nix-instantiate --eval --strict --json -E '(import ./nixos/lib/direct.nix { }).serverSettings {
#     upgradeRateLimit = { average = 5; burst = 10; }; proxyProtocolFrom = [ "10.0.0.0/24" ]; }'
{}:
let
  inherit (builtins) concatStringsSep elem isInt match replaceStrings;
in
rec {
  dataPaths = [ "traefik" "direct" ];

  # The public socket of one colour on the direct path (the template ws-public@.socket of
  # systemd/ sets ReusePort= and names it `ws`, as the loopback one).
  publicSocketUnit = colour: "ws-public@${colour}.socket";

  # The original design's limit for WebSocket upgrades, 5 per second per client with a burst
  # of 10: what Traefik's ws-ratelimit middleware applies on the Traefik path.
  defaultUpgradeRateLimit = {
    average = 5;
    burst = 10;
  };

  # The server's variables for what Traefik did on the WebSocket path (src/config, the
  # `direct` change of issue 20; docs/architecture.md lists them).
  variables = {
    upgradeRate = "UPGRADE_RATE_PER_IP";
    upgradeBurst = "UPGRADE_BURST_PER_IP";
    proxyProtocol = "PROXY_PROTOCOL";
    proxyProtocolFrom = "PROXY_PROTOCOL_TRUSTED";
  };

  # The instances' settings on the direct path: the upgrade rate limit (off in the server by
  # default, as Traefik limits on its path), and PROXY protocol v2 required from
  # `proxyProtocolFrom` only (none: the peer address is the client's).
  serverSettings =
    { upgradeRateLimit ? defaultUpgradeRateLimit
    , proxyProtocolFrom ? [ ]
    }:
    {
      ${variables.upgradeRate} = upgradeRateLimit.average;
      ${variables.upgradeBurst} = upgradeRateLimit.burst;
    }
    // (if proxyProtocolFrom == [ ] then { } else {
      ${variables.proxyProtocol} = "v2";
      ${variables.proxyProtocolFrom} = proxyProtocolFrom;
    });

  # `address:port` as systemd's ListenStream= and URLs want it: an IPv6 address in brackets.
  hostPort = address: port:
    let bare = replaceStrings [ "[" "]" ] [ "" "" ] address;
    in (if match ".*:.*" bare != null then "[${bare}]" else bare) + ":${toString port}";

  # The URL wsctl opens new connections on to see which colour they land on: the public
  # address itself, or loopback when it is a wildcard.
  probeUrl = { address, port }:
    let host = if elem address [ "0.0.0.0" "::" "[::]" "" ] then "127.0.0.1" else address;
    in "ws://${hostPort host port}";

  # The problems of a direct-path configuration, as messages naming the option.
  check =
    { port
    , upgradeRateLimit
    , otherPorts
    }:
    (if isInt port && port >= 1 && port <= 65535 then [ ] else [ "direct.port must be a port (1..65535)" ])
    ++ (if elem port otherPorts then [ "direct.port ${toString port} is already one of the host's listeners (${concatStringsSep ", " (map toString otherPorts)})" ] else [ ])
    ++ (if upgradeRateLimit.burst >= upgradeRateLimit.average then [ ] else [ "direct.upgradeRateLimit.burst must be at least its average (a second's worth)" ]);
}
