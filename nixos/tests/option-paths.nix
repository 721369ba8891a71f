# Every option nixos/module.nix reads (`cfg.PATH`, `inherit (cfg.PATH) NAME ...;`) is one it
# declares. Without nixpkgs the module cannot be evaluated here, so an option read under
# another path than it is declared at would otherwise only fail on a real host. Evaluates to
# { passed = N; } (N references checked), or fails naming each unknown path. Run from the
# repository root:
#
#   nix-instantiate --eval --strict --json nixos/tests/option-paths.nix
let
  inherit (builtins) concatLists concatStringsSep elemAt filter head isList isString length map split;
  inherit (import ./declared-options.nix) options known;

  source = builtins.readFile ../module.nix;
  matches = regex: filter isList (split regex source);
  # `cfg.a.b` up to the first character that cannot continue a path (`}`, `${`, space).
  dotted = map head (matches "cfg\\.([A-Za-z][A-Za-z0-9_-]*(\\.[A-Za-z][A-Za-z0-9_-]*)*)");
  inherited = concatLists (map
    (m: map (name: "${head m}.${name}") (filter (w: isString w && w != "") (split " +" (elemAt m 1))))
    (matches "inherit \\(cfg\\.([A-Za-z0-9_.-]+)\\) ([A-Za-z0-9_ -]+);"));
  references = dotted ++ inherited;

  toPath = text: filter isString (split "\\." text);
  unknown = filter (text: !(known (toPath text))) references;
in
assert options != [ ];
if unknown == [ ] then
  { passed = length references; }
else
  throw "nixos/module.nix reads options it does not declare: ${concatStringsSep ", " (map (r: "cfg.${r}") unknown)}"
