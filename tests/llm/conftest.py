"""Fixtures for the LLM tests: a loopback chat-completions server with scriptable misbehaviour."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class ChatServer:
    """An OpenAI-compatible ``/v1/chat/completions`` server on 127.0.0.1 (random port).

    ``mode``: ``"ok"`` answers with ``answer(messages)``; ``"stall"`` never replies (until closed);
    ``"error"`` returns HTTP 500; ``"malformed"`` answers text without a label; ``"trickle"`` sends the
    headers, then one byte every 0.2 s for a minute. ``respond(messages)`` may return ``(status, body)``
    to send instead (fault injection per request), or None for the mode's behaviour.
    """

    def __init__(
        self,
        answer: Callable[[list[dict]], str] | None = None,
        mode: str = "ok",
        respond: Callable[[list[dict]], tuple[int, bytes] | None] | None = None,
    ) -> None:
        self.answer = answer or (lambda messages: "best_description: 1\nhelpful: yes")
        self.mode = mode
        self.respond = respond
        self.requests: list[list[dict]] = []
        self.lock = threading.Lock()
        self.closing = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(body["messages"])
                custom = server.respond(body["messages"]) if server.respond else None
                if custom is not None:
                    self.send_response(custom[0])
                    self.send_header("Content-Length", str(len(custom[1])))
                    self.end_headers()
                    self.wfile.write(custom[1])
                    return
                if server.mode == "trickle":
                    self.send_response(200)
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    for _ in range(300):
                        if server.closing.wait(0.2):
                            return
                        try:
                            self.wfile.write(b" ")
                            self.wfile.flush()
                        except OSError:
                            return
                    return
                if server.mode == "stall":
                    server.closing.wait(60)
                    return
                if server.mode == "error":
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"boom")
                    return
                text = (
                    "I think both are interesting." if server.mode == "malformed" else server.answer(body["messages"])
                )
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def num_requests(self) -> int:
        with self.lock:
            return len(self.requests)

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chat_server() -> Iterator[Callable[..., ChatServer]]:
    servers: list[ChatServer] = []

    def start(
        answer: Callable[[list[dict]], str] | None = None,
        mode: str = "ok",
        respond: Callable[[list[dict]], tuple[int, bytes] | None] | None = None,
    ) -> ChatServer:
        servers.append(ChatServer(answer, mode, respond))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def gold_judge(messages: list[dict]) -> str:
    """A rule-based judge: prefers the message that mentions gold (Motif) / calls gold helpful (ONI)."""
    text = messages[1]["content"]
    if 'Message 1: "' in text:
        first = text.split('Message 1: "')[1].split('"\n')[0]
        second = text.split('Message 2: "')[1].split('"\n')[0]
        g1, g2 = "gold" in first, "gold" in second
        best = "1" if g1 and not g2 else "2" if g2 and not g1 else "None"
        return f"Some analysis.\nbest_description: {best}"
    caption = text.split('message:\n"')[1].split('"\n')[0]
    return f"Thinking.\nhelpful: {'yes' if 'gold' in caption else 'no'}"


def chat_body(text: str) -> bytes:
    """A chat-completions response body answering ``text``."""
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()


def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


@pytest.fixture(name="gold_judge")
def gold_judge_fixture() -> Callable[[list[dict]], str]:
    return gold_judge


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., bool]:
    return wait_until


@pytest.fixture(scope="session")
def smollm2_dir():
    """SmolLM2-135M-Instruct as a plain transformers folder (dequantised once, cached); skips if absent."""
    from rove.llm import smollm2

    if not smollm2.available():
        pytest.skip(f"SmolLM2-135M (a real LLM on CPU) is not installed: {smollm2.INSTALL_HINT}")
    return smollm2.dequantised_folder()


@pytest.fixture(scope="session")
def smollm2_backend(smollm2_dir):
    """One in-process SmolLM2 for the whole session (loading it is the expensive part)."""
    import torch

    from rove.llm.backends import TransformersBackend

    torch.manual_seed(0)
    return TransformersBackend(smollm2_dir, max_new_tokens=24, batch_size=8, device="cpu")
