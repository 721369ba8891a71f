{
  description = "concurrent-socket: a WebSocket server with its operations as code (blue/green behind Traefik, Prometheus, Grafana, Loki)";

  # NixOS 26.05: the module needs its Grafana (a secret key is mandatory; the module makes
  # one). Its Traefik module may have either shape (staticConfigFile, or the refactored
  # static.file): nixos/module.nix hands it its own static file under the name declared;
  # nixos/tests/eval/cases.nix evaluates both.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      # builtins only: the outputs' names evaluate without nixpkgs (ci/suites/50-nix.sh).
      forAllSystems = f: builtins.listToAttrs (map (system: { name = system; value = f system; }) systems);
      pkgsFor = system: nixpkgs.legacyPackages.${system};
      version = (builtins.fromTOML (builtins.readFile ./Cargo.toml)).package.version;

      # The repository without what no Rust build reads, so that editing docs, CI, Terraform
      # or the NixOS module does not rebuild the binaries.
      rustSource = lib: lib.fileset.toSource {
        root = ./.;
        fileset = lib.fileset.difference ./. (lib.fileset.unions [
          ./ci
          ./docs
          ./nixos
          ./terraform
          ./flake.nix
          (lib.fileset.maybeMissing ./flake.lock)
        ]);
      };

      # One binary of the Cargo workspace, built from the committed Cargo.lock.
      workspaceBinary = pkgs: { member, description, postInstall ? "" }:
        pkgs.rustPlatform.buildRustPackage {
          pname = member;
          inherit version postInstall;
          src = rustSource pkgs.lib;
          cargoLock.lockFile = ./Cargo.lock;
          cargoBuildFlags = [ "--package" member ];
          # A host builds this when no binary cache has it: its `cargo test` would build
          # every test binary with the release profile's fat LTO, while a colour serves.
          # The tests run in checks.tests (a debug build) instead.
          doCheck = false;
          meta = {
            inherit description;
            license = pkgs.lib.licenses.mit;
            mainProgram = member;
            platforms = pkgs.lib.platforms.linux;
          };
        };

      server = pkgs: workspaceBinary pkgs {
        member = "concurrent-socket";
        description = "WebSocket server (protocol v1) with its systemd units, dashboards and alert rules";
        # Units as docs/architecture.md names them (ws@.service runs each colour's profile,
        # /var/lib/concurrent-socket/profiles/COLOUR, which the NixOS module creates); the
        # dashboards, which the NixOS module provisions from here, and the rules for other
        # Prometheus hosts (the module loads them from the source tree: a list of files in a
        # build output cannot be read at evaluation without import-from-derivation).
        postInstall = ''
          install -Dm644 -t $out/lib/systemd/system systemd/*.socket systemd/*.service
          install -Dm644 -t $out/share/concurrent-socket/grafana/dashboards grafana/dashboards/*.json
          install -Dm644 -t $out/share/concurrent-socket/alerts alerts/*.yml
        '';
      };

      # The server package rebuilt to run one cargo command instead of the build.
      cargoCheck = pkgs: name: command: (server pkgs).overrideAttrs (old: {
        pname = "concurrent-socket-${name}";
        nativeBuildInputs = old.nativeBuildInputs ++ [ pkgs.clippy ];
        buildPhase = ''
          runHook preBuild
          ${command}
          runHook postBuild
        '';
        doCheck = false;
        installPhase = "touch $out";
        postInstall = "";
      });
    in
    {
      packages = forAllSystems (system:
        let pkgs = pkgsFor system; in
        {
          default = server pkgs;
          loadtest = workspaceBinary pkgs {
            member = "loadtest";
            description = "Load generator for concurrent-socket (ramp, stress, spike, smoke, soak)";
          };
          wsctl = workspaceBinary pkgs {
            member = "wsctl";
            description = "Blue/green deploy command for concurrent-socket hosts";
          };
          # For container platforms: the server alone, as nobody, listening on all
          # interfaces (no systemd sockets there).
          dockerImage = pkgs.dockerTools.buildLayeredImage {
            name = "concurrent-socket";
            tag = version;
            config = {
              Entrypoint = [ "${server pkgs}/bin/concurrent-socket" ];
              User = "65534:65534";
              Env = [ "HOST=0.0.0.0" "PORT=3001" "METRICS_ADDR=0.0.0.0:9464" ];
              ExposedPorts = {
                "3001/tcp" = { };
                "9464/tcp" = { };
              };
            };
          };
        });

      nixosModules.default = { lib, pkgs, ... }: {
        imports = [ ./nixos/module.nix ];
        services.concurrent-socket = {
          package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
          wsctlPackage = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.wsctl;
          loadtestPackage = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.loadtest;
        };
      };

      devShells = forAllSystems (system:
        let pkgs = pkgsFor system; in
        {
          # The toolchain and every tool the CI suites drive.
          default = pkgs.mkShell {
            inputsFrom = [ self.packages.${system}.default ];
            packages = with pkgs; [
              clippy
              rustfmt
              rust-analyzer
              traefik
              prometheus
              prometheus.cli
              prometheus-alertmanager
              redis
              shellcheck
              yamllint
              jq
              curl
              wrk
              hyperfine
              nixpkgs-fmt
              deadnix
              nodejs
              chromium
              (python3.withPackages (ps: [ ps.websockets ps.jsonschema ps.prometheus-client ]))
            ];
          };
        });

      checks = forAllSystems (system:
        let pkgs = pkgsFor system; in
        {
          build = self.packages.${system}.default; # the build alone; its tests are `tests`
          clippy = cargoCheck pkgs "clippy" "cargo clippy --offline --workspace --all-targets -- -D warnings";
          tests = cargoCheck pkgs "tests" "cargo test --offline --workspace";
          # The pure library's assertions run while this check is evaluated.
          nixos-lib = pkgs.runCommand "concurrent-socket-nixos-lib"
            { passed = (import ./nixos/tests/lib.nix).passed; }
            ''echo "$passed cases passed" > $out'';
          vm-blue-green = pkgs.testers.runNixOSTest (import ./nixos/tests/blue-green.nix { inherit self; });
        });

      formatter = forAllSystems (system: (pkgsFor system).nixpkgs-fmt);
    };
}
