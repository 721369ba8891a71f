# Every services.concurrent-socket option that terraform/nixos/fleet-host.nix sets on a
# WebSocket host is one nixos/module.nix declares (no nixpkgs here to evaluate the host).
# fleet-host.nix is called with a stand-in lib whose mkMerge/mkIf keep their parts, and a
# fleet.json of role "ws"; only the attribute names it gives services.concurrent-socket are
# walked. Evaluates to { passed = N; } (N option paths set), or fails naming each unknown one:
#
#   nix-instantiate --eval --strict terraform/nixos/tests/fleet-host-options.nix
let
  inherit (builtins) attrNames concatLists concatStringsSep filter isAttrs length map;
  inherit (import ../../../nixos/tests/declared-options.nix) known isOption;

  lib = {
    mkMerge = parts: parts;
    mkIf = condition: content: { inherit condition content; };
  };
  fleet = {
    role = "ws";
    domain = "ws.example.com";
    monitoringAddress = "10.0.0.10";
    proxyProtocolTrustedIPs = [ "10.40.0.0/24" ];
    serverSettings = { MAX_CONNECTIONS = "50000"; };
  };
  host = import ../fleet-host.nix {
    inherit lib fleet;
    config = { };
    pkgs = { };
    colourPackages = { blue = "blue-package"; green = "green-package"; };
  };
  wsPart = builtins.head (filter (part: part ? condition && part.condition && part.content ? services) host.config);
  set = wsPart.content.services.concurrent-socket;

  # Paths down to an option (below it, values are the option's), or to an unknown name.
  setPaths = prefix: tree:
    concatLists (map
      (name:
        let path = prefix ++ [ name ]; value = tree.${name}; in
        if isOption path || !(known path) || !(isAttrs value) then [ path ] else setPaths path value)
      (attrNames tree));
  paths = setPaths [ ] set;
  unknown = filter (path: !(isOption path)) paths;
in
if unknown == [ ] then
  { passed = length paths; }
else
  throw "fleet-host.nix sets options nixos/module.nix does not declare: ${concatStringsSep ", " (map (concatStringsSep ".") unknown)}"
