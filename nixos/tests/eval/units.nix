# The text NixOS writes for an evaluated `systemd.services.<name>` (with overrideStrategy
# "asDropin": /etc/systemd/system/<name>.service.d/overrides.conf), rendered as nixpkgs'
# nixos/lib/systemd-lib.nix does it (NixOS/nixpkgs, nixos/lib/systemd-lib.nix at 0136356,
# `unitConfig` for [Unit], `serviceToUnit`, `commonUnitText`, `attrsToSection`, `toOption`),
# for the keys the modules tested here set. switch-to-configuration compares these files
# between generations (pkgs/by-name/sw/switch-to-configuration-ng, `compare_units`,
# `handle_modified_unit`), and ci/suites/31-handover.sh installs them in a real systemd.
#
# `lib` is nixpkgs' (nixos/tests/nixpkgs-lib), `pkgs` the stand-in of ./pkgs.nix.
{ lib, pkgs }:
let
  inherit (lib) concatStrings concatStringsSep flatten isList isPath mapAttrsToList optionalAttrs optionalString pipe;

  toOption = x: if x == true then "true" else if x == false then "false" else toString x;
  attrsToSection = as: concatStrings (lib.concatLists (mapAttrsToList
    (name: value: map (x: "${name}=${toOption x}\n") (if isList value then value else [ value ]))
    as));

  # X-Restart-Triggers / X-Reload-Triggers: a store file holding the triggers, space-joined.
  triggers = key: name: list: optionalAttrs (list != [ ]) {
    ${key} = "${pkgs.writeText "${key}-${name}" (pipe list [ flatten (map (x: if isPath x then "${x}" else x)) toString ])}";
  };

  unitSection = name: def: def.unitConfig
    // optionalAttrs (def.requires != [ ]) { Requires = toString def.requires; }
    // optionalAttrs (def.wants != [ ]) { Wants = toString def.wants; }
    // optionalAttrs (def.after != [ ]) { After = toString def.after; }
    // optionalAttrs (def.before != [ ]) { Before = toString def.before; }
    // optionalAttrs (def.partOf != [ ]) { PartOf = toString def.partOf; }
    // triggers "X-Restart-Triggers" name def.restartTriggers
    // triggers "X-Reload-Triggers" name def.reloadTriggers
    // optionalAttrs (def.description != "") { Description = def.description; };
in
{
  # service NAME DEF: the unit text of service NAME ("ws@blue") as NixOS writes it.
  service = name: def:
    ''
      [Unit]
      ${attrsToSection (unitSection name def)}
    ''
    + "[Service]\n"
    + concatStrings (mapAttrsToList (n: v: optionalString (v != null) "Environment=${builtins.toJSON "${n}=${v}"}\n") def.environment)
    + (if def.reloadIfChanged then "X-ReloadIfChanged=true\n"
    else if !def.restartIfChanged then "X-RestartIfChanged=false\n"
    else "")
    + optionalString (!def.stopIfChanged) "X-StopIfChanged=false\n"
    + attrsToSection def.serviceConfig
    + optionalString (def.wantedBy != [ ]) "\n[Install]\nWantedBy=${concatStringsSep " " def.wantedBy}\n";
}
