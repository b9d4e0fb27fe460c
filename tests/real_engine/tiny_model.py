"""Build, fully offline, a tiny random Llama and a random LoRA adapter for real-vLLM tests.

Run with the real-engine environment's Python (it needs torch, transformers, tokenizers
and peft, which the main test environment does not carry):

    python tests/real_engine/tiny_model.py OUT_DIR

writes ``OUT_DIR/model`` (config, random weights, a byte-level BPE tokenizer trained here
on generated text, a chat template) and ``OUT_DIR/lora`` (a PEFT LoRA on q/v projections
with real random weights, so it visibly changes outputs). head_dim is 32: vLLM's CPU
attention backend rejects 16. Seeds are fixed, so the same files come out every time.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

VOCAB = 2048
WORDS = (
    "select from where group order by join table column schema database users orders items price "
    "count sum avg the a of to in and is for on with as at by this that be are it or an"
).split()
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def corpus(n: int, rng: random.Random) -> list[str]:
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))) for _ in range(n)]


def build(out: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    rng = random.Random(7)
    torch.manual_seed(7)
    model_dir, lora_dir = out / "model", out / "lora"
    model_dir.mkdir(parents=True, exist_ok=True)

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "</s>", "<pad>"]
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus(4000, rng), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", model_max_length=2048
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(model_dir)

    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=32,
        max_position_embeddings=2048,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(model_dir, safe_serialization=True)

    lora = get_peft_model(
        model,
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False, lora_dropout=0.0),
    )
    lora.save_pretrained(lora_dir, safe_serialization=True)
    (out / "built.json").write_text(json.dumps({"vocab": VOCAB, "head_dim": 32}))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: tiny_model.py OUT_DIR")
    build(Path(sys.argv[1]))
