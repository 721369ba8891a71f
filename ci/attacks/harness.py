"""The server under attack and what is measured of it: the real binary started on free
loopback ports with an attack's settings, its resident memory (current, and the kernel's peak
mark, which can be reset) and CPU time from /proc, its Prometheus metrics, its log lines, its
exit; and the report of one attack (checks, what the server answered, the RESULT line).
"""

import asyncio
import json
import os
import resource
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

KiB, MiB = 1024, 1024 * 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_open_files_limit():
    """Thousands of attacking sockets live in this process: take the hard open-files limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_check_config(binary, env):
    """`concurrent-socket check-config` with `env` added: (exit code, stdout + stderr)."""
    done = subprocess.run([str(binary), "check-config"], env={**base_env(), **env},
                          capture_output=True, text=True, timeout=30)
    return done.returncode, done.stdout + done.stderr


def base_env():
    """The suite's environment without anything that would change the server's behaviour."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env["RUST_BACKTRACE"] = "1"
    return env


class Server:
    """The release binary, started by `start()`, with HOST/PORT/METRICS_ADDR on free loopback
    ports and `env` on top. `nofile` sets the soft and hard open-files limits of the process;
    `watchdog_pid` exports WATCHDOG_PID as systemd does (the pid of the server itself)."""

    def __init__(self, binary, workdir, name, env, nofile=None, watchdog_pid=False):
        self.binary, self.name = Path(binary), name
        self.log_path = Path(workdir) / f"{name}.server.log"
        self.port, self.metrics_port = free_port(), free_port()
        self.env = {**base_env(), "HOST": "127.0.0.1", "PORT": str(self.port),
                    "METRICS_ADDR": f"127.0.0.1:{self.metrics_port}", "SERVER_ID": name,
                    **{k: str(v) for k, v in env.items()}}
        self.nofile, self.watchdog_pid = nofile, watchdog_pid
        self.process = None
        self.exit_code = None

    @property
    def pid(self):
        return self.process.pid

    def start(self):
        command = [str(self.binary)]
        if self.watchdog_pid:
            # sh execs the server in place: $$ is the server's pid, as systemd sets it.
            command = ["sh", "-c", 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$0"', str(self.binary)]
        nofile = self.nofile

        def limit():
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, preexec_fn=limit)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name}: the server exited with {self.process.returncode} "
                                   f"at start-up: {self.log_tail()}")
            if self.http_status("/ready") == 200:
                return self
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: /ready did not answer 200 within 30 s: {self.log_tail()}")

    def http_status(self, path, timeout=1.0):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except (OSError, ValueError):
            return None

    def health(self):
        """/health's JSON (connections, status, ...), or None when it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return None

    # -- /proc -------------------------------------------------------------------------------

    def _status_kib(self, field_name):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * KiB
        raise RuntimeError(f"no {field_name} in /proc/{self.pid}/status")

    def rss(self):
        return self._status_kib("VmRSS")

    def peak_rss(self):
        return self._status_kib("VmHWM")

    def reset_peak_rss(self):
        """Resets the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)."""
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def cpu_seconds(self):
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    # -- metrics and logs ----------------------------------------------------------------------

    def metrics_text(self, timeout=5):
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read().decode()

    async def metrics(self):
        """{(sample name, frozenset of label items): value} of one scrape."""
        text = await asyncio.to_thread(self.metrics_text)
        return {(s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def log_size(self):
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_records(self, start=0, end=None):
        """The log lines written between byte offsets `start` and `end`: JSON objects (the
        server's format when stdout is not a terminal), or {"raw": line} for anything else."""
        with open(self.log_path, "rb") as f:
            f.seek(start)
            data = f.read() if end is None else f.read(max(0, end - start))
        records = []
        for line in data.decode("utf-8", "replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            records.append(record if isinstance(record, dict) else {"raw": line})
        return records

    def log_tail(self, lines=8):
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- the end -------------------------------------------------------------------------------

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout=20):
        """SIGTERM and wait: (exit code, seconds from the signal to exit). SIGKILL after
        `timeout` (the exit code is then -9)."""
        if not self.alive():
            return (self.process.returncode if self.process else None), 0.0
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.exit_code = code
        return code, time.monotonic() - started

    def kill(self):
        if self.alive():
            self.process.kill()
            self.process.wait()


def level(record):
    return str(record.get("level", "")).upper()


def metric(samples, name, **labels):
    """The value of one series of a scrape, or None when the series is absent."""
    return samples.get((name, frozenset(labels.items())))


class Measure:
    """The server's resident memory and CPU over a stretch of an attack: RSS before, the peak
    (the kernel's VmHWM, reset at the start, and a 20 Hz sampler as a fallback), and the CPU
    used, as a percentage of one core."""

    def __init__(self, server):
        self.server = server
        self.before = self.peak = self.after = None
        self.cpu_percent = None
        self._stop = threading.Event()

    def _sample(self):
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, self.server.rss())
            except (OSError, RuntimeError):
                return

    def __enter__(self):
        self.hwm_reset = self.server.reset_peak_rss()
        self.before = self.peak = self.server.rss()
        self._cpu0, self._t0 = self.server.cpu_seconds(), time.monotonic()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        if self.server.alive():
            if self.hwm_reset:
                self.peak = max(self.peak, self.server.peak_rss())
            self.after = self.server.rss()
            elapsed = max(1e-6, time.monotonic() - self._t0)
            self.cpu_percent = 100 * (self.server.cpu_seconds() - self._cpu0) / elapsed
        return False


@dataclass
class Check:
    what: str
    ok: bool
    detail: str


@dataclass
class Report:
    """What one attack found: its checks, what the server answered, the measures."""
    number: int
    name: str
    checks: list = field(default_factory=list)
    answers: list = field(default_factory=list)
    measure: Measure = None
    honest: object = None
    seconds: float = 0.0

    def check(self, what, ok, detail=""):
        self.checks.append(Check(what, bool(ok), str(detail)))
        return bool(ok)

    def answered(self, text):
        self.answers.append(text)

    @property
    def passed(self):
        return bool(self.checks) and all(c.ok for c in self.checks)

    def result_line(self):
        m = self.measure
        if m and m.before is not None and m.after is not None:
            memory = f"server RSS before/peak/after {m.before / MiB:.1f}/{m.peak / MiB:.1f}/{m.after / MiB:.1f} MiB"
            cpu = f"CPU during {m.cpu_percent:.0f}% of a core"
        else:
            memory, cpu = "server RSS n/a", "CPU n/a"
        honest = self.honest.summary() if self.honest else "honest clients n/a"
        answered = "; ".join(self.answers) or "nothing recorded"
        return f"RESULT attack {self.number} {self.name}: {memory}, {cpu}, answered: {answered}, {honest}"


def mib(value):
    return f"{value / MiB:.1f} MiB"
