# The options nixos/module.nix declares, without nixpkgs: its `options` evaluated with a
# stand-in for nixpkgs' lib that only records where options are (its `config` is never
# evaluated). Used by nixos/tests/option-paths.nix (what the module reads) and
# terraform/nixos/tests/fleet-host-options.nix (what the fleet's hosts set).
#
#   known [ "traefik" "acme" "email" ]  true: an option, a group of options, or a path
#                                       below an option (instances.blue.port)
let
  inherit (builtins) attrNames concatLists elemAt foldl' genList length listToAttrs map;

  # Types are opaque: plain ones a value, type constructors a function to one.
  type = { };
  named = value: names: listToAttrs (map (name: { inherit name value; }) names);
  lib = {
    mkOption = _: { _isOption = true; };
    mkEnableOption = _: { _isOption = true; };
    literalExpression = text: text;
    types = named type [ "package" "str" "bool" "int" "port" "path" "attrs" ]
      // named (_: type) [ "nullOr" "listOf" "attrsOf" "oneOf" "submodule" ]
      // { ints = named type [ "positive" "unsigned" ]; };
  };

  declared = (import ../module.nix { inherit lib; config = { }; options = { }; pkgs = { }; }).options.services.concurrent-socket;

  # Option paths as lists of names.
  optionPaths = prefix: tree:
    concatLists (map
      (name:
        let node = tree.${name}; path = prefix ++ [ name ]; in
        if node ? _isOption then [ path ] else optionPaths path node)
      (attrNames tree));

  isPrefix = short: long:
    length short <= length long
    && foldl' (same: i: same && elemAt short i == elemAt long i) true (genList (i: i) (length short));
in
rec {
  options = optionPaths [ ] declared;
  isOption = path: builtins.any (option: isPrefix option path) options;
  known = path: builtins.any (option: isPrefix path option || isPrefix option path) options;
}
