"""A scripted OpenAI-compatible chat server for tests (a helper module, not a test file).

A real HTTP server (stdlib ``http.server``, one thread per request) on 127.0.0.1 and a free
port, speaking the parts of OpenAI's API that ``langchain_openai.ChatOpenAI`` uses:

* ``GET  /v1/models``            — one model;
* ``POST /v1/chat/completions``  — a chat completion answered from a script.

Replies come from the script, not from a model. Each reply is one of:

* a ``str``: the assistant message's content, as is (so a test can send malformed JSON,
  prose, a fenced block …);
* a ``dict`` / ``list``: JSON-encoded into the content; when the request carries ``tools``
  (function calling) it is sent as a call of the requested tool instead, like a model
  obeying ``tool_choice``;
* ``Reply(content=..., tool_args=..., usage=...)``: full control;
* ``Delay(seconds, then)``: sleep first (for client timeouts), then answer ``then``;
* ``HTTPError(status, message)``: an HTTP error (500, 429, 401 …) with OpenAI's error body;
* ``RawBody(body, status)``: bytes sent as they are (a body that is not JSON at all).

Which reply: rules added with ``when(pattern, *replies)`` are tried first, against the last
user message (substring, or a compiled regex); a rule's replies are used in order and its last
reply repeats. Otherwise the next reply of the ordered script (``script(*replies)``). When
nothing is left the server answers HTTP 500 "script exhausted", so a test sees the surprise.

Every request body is recorded (``server.requests``; ``server.user_messages()`` for the last
user message of each), so tests can assert what the client sent — e.g. that an error message
was fed back to the model. Replies carry ``usage`` (prompt/completion tokens, estimated from
the text like a tokenizer would roughly count: one token per CJK character, one per four other
characters).

    with ScriptedLLMServer() as server:
        server.script({"query": {...}})
        agent = LLMAgent(assistant, base_url=server.base_url, model=server.model)
"""
from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Pattern

__all__ = ["ScriptedLLMServer", "Reply", "Delay", "HTTPError", "RawBody", "estimate_tokens"]


@dataclass
class Reply:
    content: str | None = None
    tool_args: dict | None = None  # send as a tool call (function calling)
    usage: dict | None = None  # override the estimated usage
    finish_reason: str = "stop"


@dataclass
class Delay:
    seconds: float
    then: Any = "{}"


@dataclass
class HTTPError:
    status: int = 500
    message: str = "Internal Server Error"


@dataclass
class RawBody:
    body: bytes | str
    status: int = 200
    content_type: str = "application/json"


@dataclass
class _Rule:
    pattern: str | Pattern
    replies: list
    used: int = 0

    def matches(self, text: str) -> bool:
        if isinstance(self.pattern, str):
            return self.pattern in text
        return bool(self.pattern.search(text))

    def next(self):
        reply = self.replies[min(self.used, len(self.replies) - 1)]
        self.used += 1
        return reply


_CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")


def estimate_tokens(text: str) -> int:
    cjk = len(_CJK.findall(text or ""))
    return cjk + max(0, len(text or "") - cjk) // 4


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


@dataclass
class ScriptedLLMServer:
    model: str = "scripted-model"
    requests: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._queue: list = []
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    # ------------------------------------------------------------------ script
    def script(self, *replies) -> "ScriptedLLMServer":
        """Append replies to the ordered script."""
        with self._lock:
            self._queue.extend(replies)
        return self

    def when(self, pattern: str | Pattern, *replies) -> "ScriptedLLMServer":
        """Answer requests whose last user message matches ``pattern`` with these replies."""
        if not replies:
            raise ValueError("when() needs at least one reply")
        with self._lock:
            self._rules.append(_Rule(pattern, list(replies)))
        return self

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self._rules.clear()
            self.requests.clear()

    def user_messages(self) -> list[str]:
        """The last user message of every request received, in order."""
        out = []
        for body in list(self.requests):
            users = [m for m in body.get("messages", []) if m.get("role") in ("user", "human")]
            out.append(_text_of(users[-1].get("content")) if users else "")
        return out

    def all_text(self, index: int) -> str:
        """Every message of request ``index`` joined (system, user, assistant, tool)."""
        body = self.requests[index]
        return "\n".join(_text_of(m.get("content")) for m in body.get("messages", []))

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def _pick(self, body: dict):
        users = [m for m in body.get("messages", []) if m.get("role") in ("user", "human")]
        last = _text_of(users[-1].get("content")) if users else ""
        with self._lock:
            for rule in self._rules:
                if rule.matches(last):
                    return rule.next()
            if self._queue:
                return self._queue.pop(0)
        return HTTPError(500, "script exhausted: no scripted reply left for this request")

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "ScriptedLLMServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _send(self, status: int, payload: bytes, ctype: str = "application/json") -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

            def _json(self, status: int, obj: Any) -> None:
                self._send(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"))

            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/").endswith("/models"):
                    self._json(200, {"object": "list", "data": [
                        {"id": server.model, "object": "model", "created": 0, "owned_by": "scripted"}]})
                else:
                    self._json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
                    return
                try:
                    body = json.loads(raw.decode("utf-8"))
                except ValueError:
                    self._json(400, {"error": {"message": "request body is not JSON", "type": "invalid_request_error"}})
                    return
                with server._lock:
                    server.requests.append(body)
                if body.get("stream"):
                    self._json(400, {"error": {"message": "streaming is not supported by the scripted server",
                                               "type": "invalid_request_error"}})
                    return
                reply = server._pick(body)
                while isinstance(reply, Delay):
                    time.sleep(reply.seconds)
                    reply = reply.then
                if isinstance(reply, HTTPError):
                    self._json(reply.status, {"error": {"message": reply.message, "type": "server_error",
                                                        "code": reply.status}})
                    return
                if isinstance(reply, RawBody):
                    data = reply.body.encode("utf-8") if isinstance(reply.body, str) else reply.body
                    self._send(reply.status, data, reply.content_type)
                    return
                self._json(200, server._completion(body, reply))

        self.port = _free_port()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="scripted-llm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "ScriptedLLMServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ completions
    def _completion(self, body: dict, reply: Any) -> dict:
        if not isinstance(reply, Reply):
            if isinstance(reply, (dict, list)):
                reply = Reply(tool_args=reply) if body.get("tools") else Reply(content=json.dumps(reply, ensure_ascii=False))
            else:
                reply = Reply(content=str(reply))
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        finish = reply.finish_reason
        out_text = reply.content or ""
        if reply.tool_args is not None:
            tools = body.get("tools") or []
            choice = body.get("tool_choice")
            name = None
            if isinstance(choice, dict):
                name = (choice.get("function") or {}).get("name")
            if not name and tools:
                name = tools[0].get("function", {}).get("name")
            args = json.dumps(reply.tool_args, ensure_ascii=False)
            message = {"role": "assistant", "content": None, "tool_calls": [{
                "id": f"call_{uuid.uuid4().hex[:12]}", "type": "function",
                "function": {"name": name or "answer", "arguments": args}}]}
            finish = "tool_calls"
            out_text = args
        prompt = "\n".join(_text_of(m.get("content")) for m in body.get("messages", []))
        if body.get("tools"):
            prompt += json.dumps(body["tools"], ensure_ascii=False)
        usage = reply.usage or {
            "prompt_tokens": estimate_tokens(prompt),
            "completion_tokens": estimate_tokens(out_text),
        }
        usage.setdefault("total_tokens", usage["prompt_tokens"] + usage["completion_tokens"])
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": usage,
        }
