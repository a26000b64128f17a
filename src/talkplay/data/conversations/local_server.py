"""A real OpenAI-compatible LLM server on 127.0.0.1, for the LLM generator without an API key.

``LocalServer`` starts llama.cpp's server (``python -m llama_cpp.server`` from the
``llama-cpp-python[server]`` package) on the packaged SmolLM2-135M-Instruct GGUF (or any GGUF),
on a free port of 127.0.0.1, waits until ``/v1/models`` answers, and stops it on exit. llama.cpp
turns a request's JSON schema (``response_format``) into a grammar, so even this small model
answers with well-formed JSON whose music ids come from the request's playlist.

Why llama.cpp and not ``transformers serve`` (installed with transformers): transformers 5.24's
server accepts ``response_format`` but ignores it (HTTP 200, a log line), and ignores
``temperature`` unless the checkpoint's generation config samples, so a small model answers in
prose and every retry is the same answer. llama.cpp's Python package is a source
distribution: ``pip install 'llama-cpp-python[server]'`` compiles llama.cpp (C/C++; cmake and a
compiler needed), which took about 11 minutes on one core of a 2-core machine; pip caches
the built wheel for later installs.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from talkplay.data.errors import DataError

log = logging.getLogger(__name__)
INSTALL = "pip install 'llama-cpp-python[server]==0.3.36'"
MODEL_ALIAS = "smollm2-135m-instruct"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_available() -> bool:
    """llama.cpp's server and its web dependencies are importable."""
    return all(importlib.util.find_spec(m) is not None
               for m in ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context",
                         "pydantic_settings"))


class LocalServer:
    """llama.cpp's OpenAI-compatible server on 127.0.0.1, as a context manager.

    Args:
        model: a GGUF file (default: the packaged SmolLM2-135M-Instruct).
        threads: CPU threads for generation (default: all cores).
        context: the context window in tokens (prompt + answer).
        startup_s: seconds to wait for the server to answer.
        log_path: where the server's output goes (default: a temporary file, named in errors).
    """

    def __init__(self, model: str | Path | None = None, *, threads: int | None = None,
                 context: int = 4096, startup_s: float = 120.0, log_path: Path | None = None):
        self.model_name = MODEL_ALIAS if model is None else Path(model).stem
        """The name requests use (the server's alias for the model)."""
        if model is None:
            from talkplay.packaged import smollm2_gguf

            try:
                model = smollm2_gguf()
            except FileNotFoundError as e:
                raise DataError(str(e)) from None
        self.model = Path(model)
        if not self.model.is_file():
            raise DataError("no such GGUF model file", file=str(self.model))
        self.threads = threads or os.cpu_count() or 1
        self.context, self.startup_s = context, startup_s
        self.log_path = log_path
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.started_s: float | None = None
        """Seconds from launch until the server answered."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> LocalServer:
        """Launch the server and wait until it answers.

        Raises:
            DataError: llama-cpp-python's server is not installed, or the server exited or did
                not answer in time (the end of its log is in the message).
        """
        if not server_available():
            raise DataError(f"--serve-local needs llama.cpp's server: {INSTALL} (compiles "
                            "llama.cpp; cmake and a C++ compiler needed)")
        self.port = _free_port()
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="talkplay-llama-server-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model),
               "--model_alias", self.model_name, "--host", "127.0.0.1", "--port", str(self.port),
               "--n_ctx", str(self.context), "--n_threads", str(self.threads),
               "--n_threads_batch", str(self.threads)]
        log.info("starting %s", " ".join(cmd))
        t0 = time.perf_counter()
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        deadline = t0 + self.startup_s
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise DataError(f"the llama.cpp server exited with code {self.proc.returncode}:"
                                f"\n{self._log_tail()}", file=str(self.log_path))
            try:
                if httpx.get(self.base_url + "/models", timeout=2.0).status_code == 200:
                    self.started_s = time.perf_counter() - t0
                    log.info("llama.cpp server ready on %s in %.1f s", self.base_url,
                             self.started_s)
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise DataError(f"the llama.cpp server did not answer within {self.startup_s:.0f} s:\n"
                        f"{self._log_tail()}", file=str(self.log_path))

    def stop(self) -> None:
        """Stop the server (terminate, then kill after 10 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(Path(self.log_path).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


__all__ = ["INSTALL", "LocalServer", "server_available"]
