# NixOS VM test (pkgs.testers.runNixOSTest): boots the module with its defaults, connects
# through Traefik to the active colour, then switches the system to the specialisation
# `candidate` (green on another package with other settings, as `nixos-rebuild switch` of a
# new release would) and checks that nothing restarted and the routing stayed; then
# `wsctl deploy --to green` and checks that new connections land on the candidate green while
# Traefik keeps running, and that re-activating the system changes neither the routing nor
# the running colour. Also that Prometheus scrapes both colours and Traefik, and that Loki
# holds the instances' journal lines.
# The specialisation also makes the test possible at all: NixOS tests leave
# switch-to-configuration out of a node that has none.
# Run: nix build .#checks.x86_64-linux.vm-blue-green
# Without nixpkgs, nixos/tests/eval/cases.nix evaluates this node and its specialisation, and
# ci/suites/50-nix.sh lints the test script.
{ self }:
{
  name = "concurrent-socket-blue-green";

  nodes.machine = { pkgs, ... }:
    let
      wsServerId = pkgs.writers.writePython3Bin "ws-server-id"
        { libraries = [ pkgs.python3Packages.websockets ]; }
        (builtins.readFile ./ws-server-id.py);
      # Another build for green: the same binary under another store path, as a new release
      # would have.
      candidate = pkgs.runCommand "concurrent-socket-candidate" { }
        "cp -r ${self.packages.${pkgs.stdenv.hostPlatform.system}.default} $out";
    in
    {
      imports = [ self.nixosModules.default ];
      services.concurrent-socket.enable = true;
      environment.systemPackages = [ wsServerId pkgs.curl pkgs.jq ];
      virtualisation.memorySize = 2048;
      specialisation.candidate.configuration = {
        services.concurrent-socket.instances.green = {
          package = candidate;
          settings.SERVER_ID = "green-candidate";
        };
      };
    };

  testScript = ''
    import json

    routing = "/var/lib/concurrent-socket/traefik/routing.yml"

    def server_id(connection):
        return machine.succeed(f"ws-server-id ws://127.0.0.1/ws/chat/{connection}").strip()

    def weighted_services():
        doc = json.loads(machine.succeed(f"cat {routing}"))
        return [s["name"] for s in doc["http"]["services"]["ws-active"]["weighted"]["services"]]

    def main_pid(unit):
        pid = machine.succeed(f"systemctl show -P MainPID {unit}").strip()
        assert pid != "0", f"{unit} is not running"
        return pid

    start_all()
    machine.wait_for_unit("traefik.service")
    machine.wait_for_unit("sockets.target")
    machine.wait_until_succeeds("curl -fsS http://127.0.0.1/ready", timeout=60)

    with subtest("the seeded colour answers through Traefik"):
        assert weighted_services() == ["ws-blue"], weighted_services()
        assert server_id("before-switch") == "blue"
        traefik_pid = main_pid("traefik.service")

    with subtest("Prometheus scrapes both colours and Traefik (both run until the first deploy)"):
        machine.wait_for_unit("prometheus.service")
        query = "curl -fsS 'http://127.0.0.1:9090/api/v1/query' --data-urlencode 'query=up == 1'"
        machine.wait_until_succeeds(
            query + " | jq -e '[.data.result[].metric | .colour // .job] | index(\"blue\") and index(\"green\") and index(\"traefik\")'",
            timeout=60,
        )

    with subtest("switching to a system with another green restarts nothing and keeps the routing"):
        blue_pid, green_pid = main_pid("ws@blue.service"), main_pid("ws@green.service")
        machine.succeed("/run/current-system/specialisation/candidate/bin/switch-to-configuration test")
        assert "SERVER_ID=\"green-candidate\"" in machine.succeed("cat /etc/concurrent-socket/green.env")
        assert main_pid("ws@blue.service") == blue_pid
        assert main_pid("ws@green.service") == green_pid  # restartIfChanged = false
        assert main_pid("traefik.service") == traefik_pid
        assert weighted_services() == ["ws-blue"], weighted_services()
        assert server_id("after-rebuild") == "blue"

    with subtest("wsctl deploy --to green moves new connections to the candidate green"):
        machine.succeed("wsctl deploy --to green")
        assert weighted_services() == ["ws-green"], weighted_services()
        assert machine.succeed("cat /var/lib/concurrent-socket/active").strip() == "green"
        # Traefik's file provider picks the new routing.yml up within a moment.
        machine.wait_until_succeeds(
            "test \"$(ws-server-id ws://127.0.0.1/ws/chat/after-switch)\" = green-candidate", timeout=30
        )
        exe = machine.succeed(f"readlink /proc/{main_pid('ws@green.service')}/exe").strip()
        assert "-concurrent-socket-candidate/" in exe, exe

    with subtest("the switch did not restart Traefik"):
        assert machine.succeed("systemctl show -P MainPID traefik.service").strip() == traefik_pid

    with subtest("re-activating the system keeps wsctl's routing and the running colour"):
        green_pid = main_pid("ws@green.service")
        machine.succeed("/run/current-system/bin/switch-to-configuration test")
        assert weighted_services() == ["ws-green"], weighted_services()
        assert machine.succeed("cat /var/lib/concurrent-socket/active").strip() == "green"
        assert main_pid("ws@green.service") == green_pid
        assert main_pid("traefik.service") == traefik_pid

    with subtest("Loki holds the instances' journal lines"):
        machine.wait_for_unit("loki.service")
        machine.wait_for_unit("alloy.service")
        machine.wait_until_succeeds(
            "curl -fsS -G http://127.0.0.1:3100/loki/api/v1/query_range"
            " --data-urlencode 'query={instance=\"green\", unit=\"ws@green.service\"}'"
            " | jq -e '.data.result | length > 0'",
            timeout=90,
        )
  '';
}
