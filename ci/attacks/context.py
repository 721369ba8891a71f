"""What an attack gets to work with: servers it starts (all stopped when it ends, whatever
happens), the honest clients echoing alongside, the measure of the server's memory and CPU,
and the report its checks go to.
"""

from .harness import Measure, Server
from .honest import HonestClients


class Context:
    def __init__(self, binary, workdir, report):
        self.binary, self.workdir, self.report = binary, workdir, report
        self.servers = []

    def server(self, label="", nofile=None, watchdog_pid=False, **env):
        """A started server with `env` (values stringified) on top of the defaults."""
        name = f"attack{self.report.number:02d}{'-' + label if label else ''}"
        server = Server(self.binary, self.workdir, name, env, nofile, watchdog_pid)
        self.servers.append(server)
        return server.start()

    def honest(self, server, count=4, interval=0.05):
        """The honest clients of this attack (`async with`); their failures fail the attack."""
        clients = HonestClients(server.port, count, interval)
        self.report.honest = clients
        return clients

    def measure(self, server):
        """The RSS/CPU window reported on the RESULT line (`with`)."""
        self.report.measure = Measure(server)
        return self.report.measure

    async def steps(self, server, *steps):
        """Runs each step (async, called with this context and the server's port) in turn,
        with the honest clients echoing and the measure on."""
        async with self.honest(server):
            with self.measure(server):
                for step in steps:
                    await step(self, server.port)

    def check(self, what, ok, detail=""):
        return self.report.check(what, ok, detail)

    def answered(self, text):
        self.report.answered(text)

    def close(self):
        for server in self.servers:
            server.kill()
