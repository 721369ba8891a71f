# Every option nixos/module.nix reads (`cfg.PATH`, `inherit (cfg.PATH) NAME ...;`) is one it
# declares. Without nixpkgs the module cannot be evaluated here, so an option read under
# another path than it is declared at would otherwise only fail on a real host. The module's
# `options` are evaluated with a stand-in for nixpkgs' lib that only records where options
# are; its `config` is never evaluated. Evaluates to { passed = N; } (N references checked),
# or fails naming each unknown path. Run from the repository root:
#
#   nix-instantiate --eval --strict --json nixos/tests/option-paths.nix
let
  inherit (builtins)
    attrNames
    concatLists
    concatStringsSep
    filter
    foldl'
    head
    isAttrs
    isList
    length
    map
    split
    ;

  # What the options part of the module calls: an option is a marked leaf, a type is opaque.
  type = { };
  anyType = _: type;
  lib = {
    mkOption = _: { _isOption = true; };
    mkEnableOption = _: { _isOption = true; };
    literalExpression = text: text;
    types = {
      package = type;
      str = type;
      bool = type;
      int = type;
      port = type;
      path = type;
      attrs = type;
      ints = {
        positive = type;
        unsigned = type;
      };
      nullOr = anyType;
      listOf = anyType;
      attrsOf = anyType;
      oneOf = anyType;
      submodule = anyType;
    };
  };

  module = import ../module.nix { inherit lib; config = { }; pkgs = { }; };
  declared = module.options.services.concurrent-socket;

  # Option paths as lists of names, and the groups above them.
  optionPaths = prefix: tree:
    concatLists (map
      (name:
        let node = tree.${name}; path = prefix ++ [ name ]; in
        if node ? _isOption then [ path ] else optionPaths path node)
      (attrNames tree));
  options = optionPaths [ ] declared;

  isPrefix = short: long:
    length short <= length long
    && foldl' (same: i: same && builtins.elemAt short i == builtins.elemAt long i) true
      (builtins.genList (i: i) (length short));
  # Known when it names an option or a group of options, or reads below an option whose
  # value is an attribute set (instances.NAME.package).
  known = path: builtins.any (option: isPrefix path option || isPrefix option path) options;

  source = builtins.readFile ../module.nix;
  matches = regex: filter isList (split regex source);
  # `cfg.a.b` up to the first character that cannot continue a path (`}`, `${`, space).
  dotted = map (m: head m) (matches "cfg\\.([A-Za-z][A-Za-z0-9_-]*(\\.[A-Za-z][A-Za-z0-9_-]*)*)");
  inherited = concatLists (map
    (m: map (name: "${head m}.${name}")
      (filter (w: builtins.isString w && w != "") (split " +" (builtins.elemAt m 1))))
    (matches "inherit \\(cfg\\.([A-Za-z0-9_.-]+)\\) ([A-Za-z0-9_ -]+);"));
  references = dotted ++ inherited;

  toPath = text: filter builtins.isString (split "\\." text);
  unknown = filter (text: !(known (toPath text))) references;
in
assert isAttrs declared && options != [ ];
if unknown == [ ] then
  { passed = length references; }
else
  throw "nixos/module.nix reads options it does not declare: ${concatStringsSep ", " (map (r: "cfg.${r}") unknown)}"
