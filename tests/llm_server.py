"""Run llama-cpp-python's OpenAI-compatible server on 127.0.0.1 for tests.

Not a test module: a helper for the ``realllm`` tests (and for ad-hoc
measurements). The model is set up by ``scripts/setup_local_llm.sh``.

    from llm_server import DEFAULT_MODEL_PATH, local_llama_server

    with local_llama_server(DEFAULT_MODEL_PATH) as base_url:
        llm = ChatOpenAI(base_url=base_url, api_key="x", model=MODEL_ALIAS)

Findings for this model (Qwen2.5-Coder-0.5B-Instruct Q4_K_M) with
llama-cpp-python 0.3.36 and the GGUF's own chat template (chat_format=None):

* ``with_structured_output(Schema, method="function_calling")`` works: the
  forced tool_choice makes llama.cpp constrain the output with a grammar built
  from the schema, and the reply comes back as a parsed tool call.
* ``method="json_mode"`` works (grammar forces some JSON object; the schema's
  keys must be named in the prompt) and so does a raw
  ``response_format={"type": "json_object", "schema": {...}}``, which is
  grammar-constrained to the schema.
* ``method="json_schema"`` (langchain's default) fails: the server answers 500,
  ``response_format.type`` must be 'text' or 'json_object'.
* ``bind_tools(...)`` with tool_choice "auto"/"required" returns no tool_calls
  (the model writes the call as JSON text); only a named tool_choice works.
* Calls sharing a prompt prefix reuse the KV cache: a ~1,600-token prompt costs
  ~50 CPU-seconds to evaluate once, then a ~33-token answer costs ~4 CPU-s.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
# YOUSHU_LLM_MODEL overrides where the GGUF is looked for.
DEFAULT_MODEL_PATH = Path(
    os.environ.get("YOUSHU_LLM_MODEL")
    or REPO_ROOT / "data" / "models" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
)
MODEL_ALIAS = "qwen2.5-coder-0.5b-instruct"

__all__ = [
    "DEFAULT_MODEL_PATH",
    "MODEL_ALIAS",
    "LlamaServerError",
    "free_port",
    "llama_cpp_available",
    "local_llama_server",
]


class LlamaServerError(RuntimeError):
    """The server could not be started (died, or never answered in time)."""


def llama_cpp_available() -> bool:
    """True if llama-cpp-python and its server extras can be imported."""
    try:
        import llama_cpp.server.app  # noqa: F401
    except Exception:  # ImportError, or OSError from a broken libllama
        return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _tail(path: Path, n_lines: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"<could not read server log: {exc}>"
    return "\n".join(text.splitlines()[-n_lines:])


try:  # resolved at import: nothing may be imported between fork and exec
    import ctypes

    _LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
except Exception:  # pragma: no cover
    _LIBC = None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    """Linux: have the server killed if the process that started it dies
    (e.g. a killed pytest), so no orphan server keeps a core busy."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _models_ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(base_url + "/models", timeout=2) as resp:
            if resp.status != 200:
                return False
            body = json.loads(resp.read().decode("utf-8"))
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return bool(body.get("data"))


@contextlib.contextmanager
def local_llama_server(
    model_path: str | os.PathLike[str],
    port: int | None = None,
    *,
    n_ctx: int = 8192,  # the agent prompt is ~3.9k tokens plus a correction round
    n_threads: int | None = None,
    n_batch: int = 512,
    chat_format: str | None = None,
    model_alias: str = MODEL_ALIAS,
    extra_args: Sequence[str] = (),
    startup_timeout: float = 120.0,
    log_path: str | os.PathLike[str] | None = None,
) -> Iterator[str]:
    """Start ``python -m llama_cpp.server`` on 127.0.0.1 and yield its base URL.

    Yields ``http://127.0.0.1:PORT/v1`` once ``GET /v1/models`` answers. The
    server is terminated (then killed if needed) on exit.

    ``chat_format=None`` keeps llama-cpp-python's default: the chat template
    embedded in the GGUF (Qwen2.5's ChatML template, which also lays out the
    tools). ``chatml`` and ``qwen`` gave the same structured results on our
    test question; ``chatml-function-calling`` adds ~150 prompt tokens and
    breaks tool_choice "auto" (no tool call) and "required" (HTTP 500).
    ``n_threads`` defaults to the machine's core count (2 here); the server
    gets ``OMP_WAIT_POLICY=passive`` unless the environment sets it. Server output goes to
    ``log_path`` (a temp file by default); its tail is put into the error if the
    server dies or does not come up within ``startup_timeout`` seconds.

    Raises FileNotFoundError if the model file is missing and LlamaServerError
    if the server cannot be started.
    """
    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"model file not found: {model_path} (run scripts/setup_local_llm.sh)")
    port = port or free_port()
    threads = n_threads or os.cpu_count() or 1
    cmd = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model_path),
        "--model_alias", model_alias,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", str(n_ctx),
        "--n_threads", str(threads),
        "--n_threads_batch", str(threads),
        "--n_batch", str(n_batch),
    ]
    if chat_format:
        cmd += ["--chat_format", chat_format]
    cmd += list(extra_args)

    own_log = log_path is None
    if own_log:
        fd, tmp = tempfile.mkstemp(prefix="llama-server-", suffix=".log")
        os.close(fd)
        log_file = Path(tmp)
    else:
        log_file = Path(log_path)
    base_url = f"http://127.0.0.1:{port}/v1"

    env = dict(os.environ)
    # llama.cpp's CPU backend runs on OpenMP threads. With the default (active)
    # wait policy the idle thread spins between per-token graph runs; on a busy
    # 2-core machine that cut generation to ~0.3-1.8 tok/s vs ~4-5 tok/s passive.
    env.setdefault("OMP_WAIT_POLICY", "passive")

    with open(log_file, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if _LIBC is not None else None,
        )
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            rc = proc.poll()
            if rc is not None:
                raise LlamaServerError(
                    f"llama_cpp.server exited with code {rc} before answering.\n"
                    f"command: {' '.join(cmd)}\n--- server output (tail) ---\n{_tail(log_file)}"
                )
            if _models_ready(base_url):
                break
            if time.monotonic() > deadline:
                raise LlamaServerError(
                    f"llama_cpp.server did not answer {base_url}/models within {startup_timeout:.0f} s.\n"
                    f"command: {' '.join(cmd)}\n--- server output (tail) ---\n{_tail(log_file)}"
                )
            time.sleep(0.25)
        yield base_url
    finally:
        if proc.poll() is None:
            # uvicorn shuts down gracefully on SIGTERM, but waits for a request
            # still being evaluated (which can take minutes): kill after 10 s.
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        if own_log:
            with contextlib.suppress(OSError):
                log_file.unlink()
