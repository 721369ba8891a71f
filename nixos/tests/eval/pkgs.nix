# The few attributes of nixpkgs' `pkgs` that the evaluated modules touch, for evaluating them
# without nixpkgs (nixos/tests/eval/cases.nix). Nothing here is built: a package is a
# derivation-shaped attribute set with a store-like path, and a generated file also keeps
# the text it would hold (`text`), so that tests can read what a host would get.
#
# `formats.json` follows nixpkgs' pkgs/pkgs-lib/formats.nix: the same value type (JSON
# values merge as nixpkgs merges them); `generate` writes builtins.toJSON of the value where
# nixpkgs pretty-prints it with jq (the same document).
lib:
let
  inherit (lib) types;

  # A store path for NAME whose hash follows CONTENT, as a build output's would.
  storePath = name: content:
    "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" "${name}\n${content}")}-${name}";

  derivation = name: extra: {
    type = "derivation";
    inherit name;
    outPath = storePath name (builtins.toJSON extra);
  } // extra;

  file = name: text: derivation name { inherit text; };
in
rec {
  package = name: derivation name { };

  formats.json = {}: {
    type =
      let
        valueType = types.nullOr
          (types.oneOf [
            types.bool
            types.int
            types.float
            types.str
            types.path
            (types.attrsOf valueType)
            (types.listOf valueType)
          ]) // { description = "JSON value"; };
      in
      valueType;
    generate = name: value: file name (builtins.toJSON value);
  };

  writeText = file;
  writeShellScript = file;

  # What the flake's packages are built with: the arguments are kept (`args`) so that a test
  # can read how the flake builds a host's binaries, all but `src` (evaluating the flake's
  # source set would copy the working tree, build outputs included, into the store).
  rustPlatform.buildRustPackage = args:
    derivation "${args.pname}-${args.version}" { args = removeAttrs args [ "src" ]; };

  runCommand = name: env: script: derivation name { inherit env script; };

  writers.writePython3Bin = name: _: text: file name text;

  python3Packages.websockets = package "python3.13-websockets";
  curl = package "curl";
  jq = package "jq";
  systemd = package "systemd";
  traefik = package "traefik";
  prometheus = package "prometheus";
  grafana = package "grafana";
  grafana-loki = package "grafana-loki";
  grafana-alloy = package "grafana-alloy";
  redis = package "redis";
  awscli2 = package "awscli2";

  stdenv.hostPlatform.system = "x86_64-linux";
  inherit lib;
}
