"""`minilm-np serve` as a subprocess on a free loopback port, for the server tests."""
import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Loading the model and compiling (or loading cached) numba kernels on a busy 2-core machine.
START_TIMEOUT_S = 600
STOP_TIMEOUT_S = 60
BANNER = re.compile(r"minilm-np serve: listening on (http://\S+)")


class ServerProcess:
    """A running server: ``url``, the process, and its stderr lines so far."""

    def __init__(self, args, env=None):
        self.proc = subprocess.Popen([sys.executable, "-m", "minilm_np", "serve", "--host", "127.0.0.1",
                                      "--port", "0", "--threads", "1", *args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, cwd=REPO, env=dict(os.environ, HF_HUB_OFFLINE="1", **(env or {})))
        self.lines = []
        self._lines = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = self._wait_for_banner()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def _wait_for_banner(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                raise RuntimeError(f"the server exited with {self.proc.wait()}:\n{''.join(self.lines)}")
            match = BANNER.search(line)
            if match:
                return match.group(1)
        self.kill()
        raise RuntimeError(f"no startup line within {START_TIMEOUT_S} s:\n{''.join(self.lines)}")

    def terminate(self):
        """SIGTERM, then the exit status (killed if it does not stop in time)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT_S)
        self._reader.join(STOP_TIMEOUT_S)


@contextlib.contextmanager
def running_server(*args, env=None):
    """A started server, always stopped on the way out."""
    server = ServerProcess(list(args), env)
    try:
        yield server
    finally:
        server.kill()
