"""A small random Llama and a locally trained tokenizer, saved as a real checkpoint directory.

The default run and the tests need a model without hub access. Rather than a special code path,
`TinyLlama` builds a checkpoint once, saves it with `save_pretrained` under the cache, and then
behaves exactly like `HFCheckpoint` on that directory, so the tiny model exercises the same
loading code as a user's Llama.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from lit_prefopt.models.checkpoint import HFCheckpoint
from lit_prefopt.paths import default_cache_dir, sample_data_path

SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}

# The chat template of the tiny tokenizer: plain role headers, so chat records can be tested
# without a downloaded template.
TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def build_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on `texts` (deterministic for the same texts).

    It has BOS, EOS, PAD and UNK tokens and a chat template, like a real instruct tokenizer, and
    adds BOS itself (as Llama's does) so data code can rely on `add_special_tokens=True`.
    """
    tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)
    bos = SPECIAL_TOKENS["bos_token"]
    fast._tokenizer.post_processor = _bos_post_processor(bos, fast.convert_tokens_to_ids(bos))
    fast.chat_template = TINY_CHAT_TEMPLATE
    return fast


def _bos_post_processor(bos: str, bos_id: int):
    from tokenizers import processors

    return processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, bos_id)]
    )


def sample_texts(paths: Iterable[Path]) -> Iterable[str]:
    """Every prompt and completion of JSONL preference files, to train the tiny tokenizer on."""
    for path in paths:
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                record = json.loads(line)
                yield from (record["src"], record["tgt_chosen"], record["tgt_rejected"])


class TinyLlama(HFCheckpoint):
    """A random Llama of a few hundred thousand parameters, built and saved on first use.

    The directory is keyed by a hash of the architecture, seed and tokenizer corpus, so changing
    any of them builds a new checkpoint and reusing them reuses the files (the reference cache
    and every sweep job see the same model).
    """

    def __init__(
        self,
        hidden_size: int = 64,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 4,
        num_key_value_heads: int = 2,
        intermediate_size: int = 128,
        vocab_size: int = 1024,
        max_position_embeddings: int = 2048,
        seed: int = 0,
        tokenizer_corpus: list[str] | None = None,
        path: str | None = None,
        reference_path: str | None = None,
        cache_dir: str | None = None,
        dtype: str = "float32",
        gradient_checkpointing: bool = False,
        **checkpoint_kwargs,
    ) -> None:
        self.architecture = dict(
            hidden_size=hidden_size,
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads,
            num_key_value_heads=num_key_value_heads,
            intermediate_size=intermediate_size,
            vocab_size=vocab_size,
            max_position_embeddings=max_position_embeddings,
        )
        self.seed = seed
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.corpus = [Path(p) for p in tokenizer_corpus] if tokenizer_corpus else [sample_data_path("train.jsonl")]
        # Built only in the cache: a given path is loaded, so a mistyped one cannot become a new random model.
        self.builds = not path
        if path:
            self._check_given_checkpoint(Path(path))
        target = Path(path) if path else self._default_dir()
        super().__init__(
            path=str(target), reference_path=reference_path, dtype=dtype, gradient_checkpointing=gradient_checkpointing,
            **checkpoint_kwargs,
        )

    def _check_given_checkpoint(self, path: Path) -> None:
        """`model.path` on the tiny model must hold a tiny model (an earlier tiny run's hf/, say).

        Anything else is refused: a path with no checkpoint is most likely a typo, and a real
        checkpoint would train at the tiny preset's learning rate (3e-3, for a random model).
        """
        fix = (f"to train a checkpoint of your own use model=llama model.path={path} (or model=qwen, model=mistral); "
               "leave model.path unset for the tiny model")
        config = path / "config.json"
        if not config.is_file():
            raise FileNotFoundError(
                f"model.path={str(path)!r} holds no checkpoint (no config.json there); the tiny model is built only "
                f"under cache_dir, never at a given path: {fix}"
            )
        saved = json.loads(config.read_text())
        differences = {key: saved.get(key) for key, value in self.architecture.items() if saved.get(key) != value}
        if saved.get("model_type") != "llama" or differences:
            found = ", ".join(f"{k}={v}" for k, v in differences.items()) or f"model_type={saved.get('model_type')}"
            raise ValueError(
                f"model.path={str(path)!r} holds a checkpoint that is not the tiny model ({found}), and the tiny "
                f"model's settings (optimizer.lr=3e-3, for a random model) would wreck it: {fix}"
            )

    def _default_dir(self) -> Path:
        key = json.dumps(
            {"arch": self.architecture, "seed": self.seed, "corpus": [_file_digest(p) for p in self.corpus]},
            sort_keys=True,
        )
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        return self.cache_dir / "tiny_llama" / digest

    def prepare(self) -> None:
        """Build and save the checkpoint in the cache unless a complete one is already there."""
        target = Path(self.path)
        if self.builds and not (target / "config.json").exists():
            save_tiny_llama(target, self.architecture, self.seed, sample_texts(self.corpus))
        super().prepare()


def save_tiny_llama(target: Path, architecture: dict, seed: int, texts: Iterable[str]) -> None:
    """Write a random Llama and its tokenizer to `target` atomically (a temp dir, then rename).

    Atomic so two processes (DDP ranks, parallel sweep jobs) can race to build it safely.
    """
    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(texts, vocab_size=architecture["vocab_size"])
    # Untied unless the architecture says otherwise (Llama-3.2-1B's shape ties them).
    config = LlamaConfig(
        **{"tie_word_embeddings": False, **architecture},
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    staging = target.parent / f".{target.name}.{os.getpid()}.tmp"
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    try:
        os.rename(staging, target)
    except OSError:
        # Another process finished first: its files are identical, keep them.
        import shutil

        shutil.rmtree(staging, ignore_errors=True)


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
