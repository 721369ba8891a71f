# The blue/green instances of concurrent-socket on one host, as plain data: their
# default ports (docs/architecture.md), the checks that reject a bad instance set, the
# socket listen addresses and the environment file of each instance.
#
# Pure Nix (builtins only, no nixpkgs): the NixOS module and the tests in
# nixos/tests/lib.nix both call it. From a shell, for example:
#
#   nix-instantiate --eval --strict --json -E \
#     '(import ./nixos/lib/instances.nix { }).envFile { MAX_CONNECTIONS = 20000; ALLOWED_ORIGINS = [ "https://a.example" ]; }'
{}:
let
  inherit (builtins)
    all
    attrNames
    concatStringsSep
    elem
    filter
    head
    isAttrs
    isBool
    isInt
    isList
    isString
    length
    mapAttrs
    match
    replaceStrings
    tail
    toJSON
    ;

  # Every value that occurs more than once in a list, once each.
  duplicates = values: filter (v: length (filter (x: x == v) values) > 1) (uniq values);

  uniq = values: if values == [ ] then [ ] else [ (head values) ] ++ uniq (filter (v: v != head values) (tail values));

  validPort = port: isInt port && port >= 1 && port <= 65535;

  concatMapList = f: list: builtins.concatLists (map f list);
in
rec {
  # Loopback only: the public side of a host is Traefik (docs/architecture.md).
  listenAddress = "127.0.0.1";

  # Each colour's profile: a symlink to the package the colour runs. The module creates it
  # when missing; afterwards `wsctl deploy` moves it (wsctl/src/profile.rs). ws@NAME.service
  # starts the server from it, so a crash restart or a reboot keeps the colour's build and a
  # rollback keeps the old code.
  profilesDir = "/var/lib/concurrent-socket/profiles";

  # The two colours of docs/architecture.md. `settings` are the server's environment
  # variables (docs/architecture.md, "Server configuration").
  defaultInstances = {
    blue = {
      port = 3001;
      metricsPort = 9464;
      settings = { };
    };
    green = {
      port = 3002;
      metricsPort = 9465;
      settings = { };
    };
  };

  # A colour names systemd units (ws@NAME) and Traefik services (ws-NAME).
  validName = name: match "[a-z][a-z0-9-]*" name != null;

  # Environment variable names the server reads are upper-case identifiers.
  validVariable = name: match "[A-Z][A-Z0-9_]*" name != null;

  # Every problem of an instance set, as messages naming the instance and the field;
  # [ ] when it is good. `active` (optional) is the colour that must receive traffic first.
  check =
    { instances
    , active ? null
    ,
    }:
    let
      names = attrNames instances;
      fieldErrors =
        name:
        let
          inst = instances.${name};
          badPort = field: if validPort (inst.${field} or null) then [ ] else [ "instance ${name}: ${field} must be an integer in 1..65535, got ${toJSON (inst.${field} or null)}" ];
          badVariables = filter (v: !(validVariable v)) (attrNames (inst.settings or { }));
        in
        (if validName name then [ ] else [ "instance name '${name}' must match [a-z][a-z0-9-]*" ])
        ++ badPort "port"
        ++ badPort "metricsPort"
        ++ map (v: "instance ${name}: setting '${v}' is not an environment variable name ([A-Z][A-Z0-9_]*)") badVariables
        ++ concatMapList (v: settingErrors name v inst.settings.${v}) (filter validVariable (attrNames (inst.settings or { })));
      allPorts = concatMapList (n: [ (instances.${n}.port or null) (instances.${n}.metricsPort or null) ]) names;
      clashes = duplicates (filter isInt allPorts);
    in
    (if names == [ ] then [ "at least one instance is required" ] else [ ])
    ++ (if active == null || elem active names then [ ] else [ "active colour '${active}' is not one of the instances (${concatStringsSep ", " names})" ])
    ++ concatMapList fieldErrors names
    ++ map (p: "port ${toString p} is used twice (every port and metricsPort must be distinct)") clashes;

  # The value of one setting must render to one line of an environment file.
  settingErrors =
    instance: variable: value:
    let
      problem =
        if isList value then
          (if all (v: isString v || isInt v) value then null else "a list may hold only strings and integers")
        else if isString value || isInt value || isBool value then
          null
        else
          "must be a string, integer, boolean or list, got ${builtins.typeOf value}";
      rendered = if problem == null then renderValue value else "";
    in
    if problem != null then
      [ "instance ${instance}: setting ${variable} ${problem}" ]
    else if match ".*[\n\r].*" rendered != null then
      [ "instance ${instance}: setting ${variable} must not contain a line break" ]
    else
      [ ];

  # Booleans as the server parses them, lists comma-joined (ALLOWED_ORIGINS, TRUSTED_PROXIES).
  renderValue =
    value:
    if isBool value then
      (if value then "true" else "false")
    else if isList value then
      concatStringsSep "," (map toString value)
    else
      toString value;

  # /etc/concurrent-socket/NAME.env, read by ws@NAME.service (EnvironmentFile=-). Values
  # are double-quoted so that spaces survive systemd's parser.
  envFile =
    settings:
    concatStringsSep "" (
      map
        (
          name:
          let
            escaped = replaceStrings [ "\\" "\"" ] [ "\\\\" "\\\"" ] (renderValue settings.${name});
          in
          "${name}=\"${escaped}\"\n"
        )
        (attrNames settings)
    );

  # What the NixOS module layers on the packaged template units for one instance:
  # listen addresses of ws@NAME.socket and ws-metrics@NAME.socket (the empty entry resets
  # any ListenStream= of the template), the server commands on the colour's profile, and
  # the environment file.
  unitSettings = name: inst: {
    socket = {
      unit = "ws@${name}.socket";
      listenStreams = [
        ""
        "${listenAddress}:${toString inst.port}"
      ];
    };
    metricsSocket = {
      unit = "ws-metrics@${name}.socket";
      listenStreams = [
        ""
        "${listenAddress}:${toString inst.metricsPort}"
      ];
    };
    service = "ws@${name}.service";
    profile = "${profilesDir}/${name}";
    # The service's command, on the profile (the empty entry resets the template's). The
    # template's ExecReload= (check-config, then the handover's SIGUSR2) runs the same path.
    serviceCommands = {
      ExecStart = [
        ""
        "${profilesDir}/${name}/bin/concurrent-socket"
      ];
    };
    envFileName = "concurrent-socket/${name}.env";
    envFileText = envFile (inst.settings or { });
  };

  # The upgrade paths of a colour (the module's instances.<name>.upgrade): `wsctl` (a rebuild
  # never touches a running colour) or `handover` (`nixos-rebuild switch` reloads it).
  upgradePaths = [ "wsctl" "handover" ];

  # For a colour upgraded by handover: the shell an activation runs to point the colour's
  # profile at `package`, atomically (a new symlink renamed over the old one, as wsctl pins
  # it). Activation runs before switch-to-configuration's daemon-reload and reloads, and at
  # boot before systemd, so the reload's check-config and the process it starts run `package`.
  pinProfileScript = name: package: ''
    mkdir -p ${profilesDir}
    ln -sfnT ${package} ${profilesDir}/${name}.nixos
    mv -fT ${profilesDir}/${name}.nixos ${profilesDir}/${name}
  '';

  # The loopback URL Traefik forwards to, and the metrics target Prometheus scrapes.
  upstreamUrl = inst: "http://${listenAddress}:${toString inst.port}";
  metricsTarget = inst: "${listenAddress}:${toString inst.metricsPort}";

  # Accepted for callers that pass a partial instance (ports only): fills the rest from
  # the defaults of the same colour, or empty settings.
  withDefaults =
    instances:
    if !(isAttrs instances) then
      throw "instances must be an attribute set of colours, got ${builtins.typeOf instances}"
    else
      mapAttrs
        (name: inst:
        if isAttrs inst then { settings = { }; } // (defaultInstances.${name} or { }) // inst
        else throw "instance ${name} must be an attribute set ({ port; metricsPort; settings; }), got ${builtins.typeOf inst}")
        instances;
}
