"""LLM backends: an OpenAI-compatible HTTP client and an in-process Hugging Face ``transformers`` model.

Every backend answers a batch of chat conversations (``complete``: one text each, or
:class:`BackendError`); :func:`complete_each` asks a backend for per-item outcomes, so that one bad item
never costs the answers of the others. Choose one by configuration with :func:`make_backend`::

    make_backend({"type": "openai", "base_url": "http://localhost:8000/v1", "model": "meta-llama/..."})
    make_backend({"type": "transformers", "path": "/models/llama-3.1-8b-instruct"})

Failures come in two kinds. :class:`RequestError`: this request cannot be answered (a 4xx, an answer that
is not UTF-8 JSON with ``choices[0].message.content``); other requests may still succeed.
:class:`ServerError`: the server is unreachable, hung or failing (after the retries), so no request can
succeed now.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from rove.llm.prompts import Conversation


class BackendError(RuntimeError):
    """The LLM could not answer."""


class RequestError(BackendError):
    """This request cannot be answered (rejected, or the answer is unreadable); others may be."""


class ServerError(BackendError):
    """The server is unreachable, hung or failing after every retry: nothing can be answered now."""


class Backend(Protocol):
    """Anything that turns chat conversations into answers."""

    def complete(self, conversations: Sequence[Conversation]) -> list[str]:
        """One answer per conversation, in order; raises :class:`BackendError` if any cannot be answered."""
        ...


Outcome = str | BackendError


def complete_each(backend: Backend, conversations: Sequence[Conversation]) -> list[Outcome]:
    """One answer or :class:`BackendError` per conversation.

    Uses the backend's own ``complete_each`` when it has one (the HTTP backend: every request on its own);
    otherwise, when ``complete`` fails on a batch, each conversation is asked on its own.
    """
    own = getattr(backend, "complete_each", None)
    if callable(own):
        return list(own(conversations))
    try:
        return list(backend.complete(conversations))
    except Exception as err:  # a user function or a local model failing: the items failed, not the caller
        first: BackendError = err if isinstance(err, BackendError) else BackendError(f"{type(err).__name__}: {err}")
    if len(conversations) == 1:
        return [first]
    # Which item failed? Ask one at a time, so that the others keep their answers.
    return [outcome for c in conversations for outcome in complete_each(backend, [c])]


class FunctionBackend:
    """Wraps a Python function ``conversation -> answer`` (rule-based judges, tests, benchmarks)."""

    def __init__(self, fn: Callable[[Conversation], str]) -> None:
        self.fn = fn

    def complete(self, conversations: Sequence[Conversation]) -> list[str]:
        return [self.fn(c) for c in conversations]


class _Cancelled(Exception):
    pass


class OpenAIBackend:
    """Client for an OpenAI-compatible ``/chat/completions`` endpoint (vLLM, ``transformers serve``, llama.cpp).

    Requests of a batch run concurrently on at most ``concurrency`` daemon threads (they never keep the
    interpreter from exiting). Each attempt has a *total* deadline of ``timeout`` seconds (connect, send and
    the whole response: a watchdog closes the socket, so a server that trickles bytes cannot stretch it).
    A timeout, a refused or reset connection, a 429 or a 5xx is retried with exponential backoff; when a
    request has failed ``max_retries + 1`` times so, it is a :class:`ServerError`, and the requests of the
    batch not yet sent fail with it at once instead of waiting in turn. A hung server is therefore reported
    within ``(max_retries + 1) * timeout + backoff * (2 ** max_retries - 1)`` seconds of a call.
    Other failures (4xx, a body that is not UTF-8 JSON with ``choices[0].message.content``) are a
    :class:`RequestError` for that request alone.

    Args:
        base_url: Server root including the API prefix, e.g. ``http://localhost:8000/v1``.
        model: Model name the server expects.
        api_key: Sent as a Bearer token when given (``$OPENAI_API_KEY`` is *not* read implicitly).
        temperature, top_p: Sampling (Motif: 0.1 and 0.95); ``top_p=None`` leaves the server's default.
        max_tokens: Answer length limit (analysis-first prompts need several hundred).
        timeout: Seconds one attempt may take in total.
        max_retries: Retries per request after the first attempt.
        backoff: First retry delay in seconds, doubled each retry.
        concurrency: Requests in flight at once.
    """

    def __init__(
        self,
        base_url: str = "http://localhost:8000/v1",
        model: str = "default",
        *,
        api_key: str | None = None,
        temperature: float = 0.1,
        top_p: float | None = 0.95,
        max_tokens: int = 512,
        timeout: float = 60.0,
        max_retries: int = 2,
        backoff: float = 1.0,
        concurrency: int = 16,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        parsed = urllib.parse.urlsplit(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        self._parsed = parsed
        self.model = model
        self.api_key = api_key
        self.temperature = temperature
        self.top_p = top_p
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.concurrency = concurrency
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cancel = threading.Event()
        self._closed = False
        self.num_requests = 0

    @property
    def worst_case_seconds(self) -> float:
        """The longest one request can take before it is answered or fails."""
        return (self.max_retries + 1) * self.timeout + self.backoff * (2**self.max_retries - 1)

    def complete(self, conversations: Sequence[Conversation]) -> list[str]:
        answers = []
        for outcome in self.complete_each(conversations):
            if isinstance(outcome, BackendError):
                raise outcome
            answers.append(outcome)
        return answers

    def complete_each(self, conversations: Sequence[Conversation]) -> list[Outcome]:
        """One answer or :class:`BackendError` per conversation; never raises for a single item."""
        if self._closed:
            return [BackendError(f"the client for {self.url} is closed")] * len(conversations)
        self._cancel.clear()
        outcomes: list[Outcome | None] = [None] * len(conversations)
        down: list[ServerError] = []
        next_index = iter(range(len(conversations)))
        take = threading.Lock()

        def work() -> None:
            while True:
                with take:
                    i = next(next_index, None)
                if i is None:
                    return
                if down or self._cancel.is_set():
                    outcomes[i] = down[0] if down else BackendError("cancelled")
                    continue
                try:
                    outcomes[i] = self._request(list(conversations[i]))
                except ServerError as err:
                    down.append(err)
                    outcomes[i] = err
                except BackendError as err:
                    outcomes[i] = err

        threads = [
            threading.Thread(target=work, name="rove-llm-http", daemon=True)
            for _ in range(min(self.concurrency, len(conversations)))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return [o if o is not None else BackendError("cancelled") for o in outcomes]

    def _request(self, conversation: Conversation) -> str:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": conversation,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self.top_p is not None:
            payload["top_p"] = self.top_p
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = "no attempt made"
        for attempt in range(self.max_retries + 1):
            if attempt and self._cancel.wait(self.backoff * 2 ** (attempt - 1)):
                raise BackendError("cancelled")
            if self._cancel.is_set():
                raise BackendError("cancelled")
            with self._lock:
                self.num_requests += 1
            try:
                status, reason, data = self._attempt(body, headers)
            except _Cancelled:
                raise BackendError("cancelled") from None
            except TimeoutError:
                last = f"no response within {self.timeout}s (the total deadline of one attempt)"
                continue
            except ConnectionRefusedError:
                last = "connection refused (is the server running?)"
                continue
            except (OSError, http.client.HTTPException) as err:
                last = f"cannot reach server: {type(err).__name__}: {err}"
                continue
            if status == 200:
                return _answer_text(data, self.url)
            last = f"HTTP {status} {reason}"
            if status != 429 and status < 500:
                # 4xx other than rate limiting: this request is wrong (too long, bad model name); retrying won't help.
                detail = data[:300].decode(errors="replace")
                raise RequestError(f"{self.url} rejected the request ({last}): {detail}")
        raise ServerError(f"LLM server at {self.url} failed after {self.max_retries + 1} attempts: {last}")

    def _attempt(self, body: bytes, headers: dict[str, str]) -> tuple[int, str, bytes]:
        """One POST under a total deadline; returns ``(status, reason, body)``."""
        p = self._parsed
        cls = http.client.HTTPSConnection if p.scheme == "https" else http.client.HTTPConnection
        conn = cls(p.hostname or "", p.port, timeout=self.timeout)
        expired = threading.Event()
        held: list[socket.socket] = []

        def kill() -> None:
            expired.set()
            for sock in held:
                _shut(sock)

        timer = threading.Timer(self.timeout, kill)
        timer.daemon = True
        timer.start()
        try:
            conn.connect()  # bounded by the socket timeout; the watchdog covers everything after it
            # http.client drops conn.sock once the response owns it: hold it so that it can be shut.
            held.append(conn.sock)
            with self._lock:
                self._open.add(conn.sock)
            if expired.is_set():
                raise TimeoutError
            path = p.path + (f"?{p.query}" if p.query else "")
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            status, reason = response.status, response.reason
        except (OSError, http.client.HTTPException):
            if self._cancel.is_set():
                raise _Cancelled from None
            if expired.is_set():
                raise TimeoutError from None
            raise
        finally:
            timer.cancel()
            with self._lock:
                for sock in held:
                    self._open.discard(sock)
            conn.close()
        if self._cancel.is_set():
            raise _Cancelled
        if expired.is_set():
            raise TimeoutError
        return status, reason, data

    def cancel(self) -> None:
        """Aborts the requests in flight and the ones not yet sent (they fail with :class:`BackendError`)."""
        self._cancel.set()
        with self._lock:
            socks = list(self._open)
        for sock in socks:
            _shut(sock)

    def close(self) -> None:
        """Cancels everything and refuses new requests."""
        self._closed = True
        self.cancel()


def _shut(sock: socket.socket) -> None:
    """Unblocks any thread reading from ``sock`` (its read fails at once)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _answer_text(data: bytes, url: str) -> str:
    try:
        payload = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise RequestError(f"{url} answered with a body that is not UTF-8: {data[:100]!r}") from err
    except json.JSONDecodeError as err:
        raise RequestError(f"{url} answered with a body that is not JSON: {data[:300]!r}") from err
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as err:
        raise RequestError(f"{url} returned no choices[0].message.content: {str(payload)[:300]}") from err
    return content if isinstance(content, str) else ""


class TransformersBackend:
    """A local causal LM run in-process with Hugging Face ``transformers`` (needs ``rove[llm]``, >= 4.56).

    Loads ``AutoModelForCausalLM.from_pretrained(path)`` and its tokenizer (``gguf_file=`` loads a GGUF
    file in ``path``, dequantised; needs ``gguf``, in ``rove[llm-cpu]``). Conversations are formatted with the
    tokenizer's chat template when it has one (the template already holds the BOS token, so the text is
    tokenised with ``add_special_tokens=False``), else as a plain ``System:/User:/Assistant:`` transcript.

    Args:
        path: A local model folder (nothing is downloaded; ``local_files_only=True``).
        gguf_file: A GGUF file name inside ``path`` to load instead of safetensors weights.
        max_new_tokens: Answer length limit (analysis-first prompts need several hundred tokens).
        temperature, top_p, top_k: Sampling; Motif's defaults (0.1, 0.95, 50). ``temperature=0``: greedy.
        batch_size: Conversations generated together (left-padded).
        device: ``"auto"`` picks CUDA when available; ignored when ``device_map`` is given.
        device_map: Passed to ``from_pretrained`` (e.g. ``"auto"`` to spread a large model over GPUs).
        dtype: ``"auto"``, ``"float16"``, ``"bfloat16"`` or ``"float32"``.

    Sampling draws from torch's global RNG, as ``generate`` does. A failure inside ``generate`` (out of
    memory, a bad input) is a :class:`BackendError`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        gguf_file: str | None = None,
        max_new_tokens: int = 512,
        temperature: float = 0.1,
        top_p: float = 0.95,
        top_k: int = 50,
        batch_size: int = 8,
        device: str = "auto",
        device_map: str | dict[str, Any] | None = None,
        dtype: str = "auto",
    ) -> None:
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as err:  # pragma: no cover - transformers is an optional extra
            raise ImportError("the transformers backend needs `pip install rove[llm]`") from err
        if not Path(path).exists():
            raise FileNotFoundError(f"model folder {str(path)!r} does not exist")
        if gguf_file is not None and not (Path(path) / gguf_file).is_file():
            raise FileNotFoundError(f"GGUF file {gguf_file!r} not found in {str(path)!r}")
        if dtype != "auto" and dtype not in ("float16", "bfloat16", "float32"):
            raise ValueError(f"unknown dtype {dtype!r}; choose from ['auto', 'float16', 'bfloat16', 'float32']")
        self.torch = torch
        extra: dict[str, Any] = {"local_files_only": True}
        if gguf_file is not None:
            extra["gguf_file"] = gguf_file
        self.tokenizer: Any = AutoTokenizer.from_pretrained(str(path), **extra)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
        if device_map is not None:
            extra["device_map"] = device_map
        model: Any = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype, **extra)
        if device_map is None:
            dev = "cuda" if device == "auto" and torch.cuda.is_available() else "cpu" if device == "auto" else device
            model = model.to(dev)
        self.model: Any = model.eval()
        self.device = next(self.model.parameters()).device
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.batch_size = batch_size

    @property
    def uses_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def format(self, conversation: Conversation) -> str:
        """The prompt text the model sees."""
        if self.uses_chat_template:
            return str(self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True))
        lines = [f"{m['role'].capitalize()}: {m['content']}" for m in conversation]
        return "\n\n".join([*lines, "Assistant:"])

    def encode(self, texts: Sequence[str]) -> Any:
        """Token batch of formatted prompts; no second BOS after a chat template's own."""
        return self.tokenizer(
            list(texts), return_tensors="pt", padding=True, add_special_tokens=not self.uses_chat_template
        )

    def complete(self, conversations: Sequence[Conversation]) -> list[str]:
        torch = self.torch
        answers: list[str] = []
        sample = self.temperature > 0
        kwargs: dict[str, Any] = {
            "do_sample": sample,
            "max_new_tokens": self.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        else:  # greedy: unset the model's own sampling defaults so generate does not warn about them
            kwargs.update(temperature=None, top_p=None, top_k=None)
        for start in range(0, len(conversations), self.batch_size):
            batch = self.encode([self.format(c) for c in conversations[start : start + self.batch_size]])
            batch = batch.to(self.device)
            try:
                with torch.no_grad():
                    out = self.model.generate(**batch, **kwargs)
            except (RuntimeError, ValueError, IndexError) as err:  # OOM, bad input, too long a prompt
                raise BackendError(f"local model failed to generate: {type(err).__name__}: {err}") from err
            new_tokens = out[:, batch["input_ids"].shape[1] :]
            answers.extend(self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
        return answers


_BACKENDS: dict[str, Callable[..., Backend]] = {
    "openai": OpenAIBackend,
    "transformers": TransformersBackend,
}


def make_backend(config: dict[str, Any] | str | Backend) -> Backend:
    """Builds a backend from ``{"type": "openai" | "transformers", ...options}``, a JSON string of that, or
    ``"openai:<base_url>"`` / ``"transformers:<path>"`` shorthands; a backend object is returned as is."""
    if hasattr(config, "complete"):
        return config  # type: ignore[return-value]
    if isinstance(config, str):
        text = config.strip()
        if text.startswith("{"):
            config = json.loads(text)
        else:
            kind, _, rest = text.partition(":")
            key = "path" if kind == "transformers" else "base_url"
            config = {"type": kind, **({key: rest} if rest else {})}
    options = dict(config)  # type: ignore[arg-type]
    kind = options.pop("type", None)
    if kind not in _BACKENDS:
        raise ValueError(f"unknown LLM backend type {kind!r}; choose from {sorted(_BACKENDS)}")
    return _BACKENDS[kind](**options)
