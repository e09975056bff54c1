"""Run `python app.py` as a subprocess on a free local port (`bench --app`, `soak`, the app and browser tests)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 90.0


def cleaner_period(age: float) -> float:
    """How often the app's cache cleaner looks for pictures older than `age` seconds (`soak` waits this long past
    `age` before it expects them gone)."""
    return max(1.0, min(60.0, age / 4))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_serving(url: str, proc: subprocess.Popen, log: Path, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url + "config", timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"app.py did not serve {url} within {timeout:.0f} s:\n{log.read_text()[-4000:]}")


@contextmanager
def serve_app(root: Path | None, timeout: float = START_TIMEOUT, env: dict | None = None) -> Iterator[str]:
    """Run app.py on `root` (None: the shipped checkpoints/) and yield its URL; always stop it. `env`: more
    environment for the app (e.g. MINDMAP_PREVIEW_INTERVAL; a value None unsets a variable)."""
    with app_process(root, timeout, env) as (url, _):
        yield url


@contextmanager
def client_downloads() -> Iterator[Path]:
    """A folder for a gradio_client's downloads (`Client(url, download_files=folder)`), deleted on exit with all in
    it. gradio_client (2.7) also makes a folder per file fetched in the system temp folder and leaves it there
    emptied (thousands in a test run); inside this block the process's temp folder (`tempfile.tempdir`) is this
    one, so those go with it."""
    with tempfile.TemporaryDirectory(prefix="mindmap-client-") as folder:
        before, tempfile.tempdir = tempfile.tempdir, folder
        try:
            yield Path(folder)
        finally:
            tempfile.tempdir = before


@contextmanager
def app_process(root: Path | None, timeout: float = START_TIMEOUT,
                env: dict | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """`serve_app`, yielding the URL and the app's process (`soak` reads its memory)."""
    app = REPO / "app.py"
    if not app.is_file():
        raise FileNotFoundError(f"{app}: the app is not beside this package (a source checkout has it)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="mindmap-app-") as tmp:
        # the pictures it sends go in a folder of its own, deleted with it (unless `env` names another)
        env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
               "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
               "GRADIO_TEMP_DIR": str(Path(tmp) / "gradio"), **(env or {})}
        env = {k: v for k, v in env.items() if v is not None and k != "MINDMAP_CHECKPOINTS"}   # None: unset
        if root is not None:
            env["MINDMAP_CHECKPOINTS"] = str(root)
        log = Path(tmp) / "app.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, str(app)], cwd=REPO, env=env, stdout=out,
                                    stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}/"
            _wait_until_serving(url, proc, log, timeout)
            yield url, proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
