"""Create a model with a real architecture and random weights, plus a BPE tokenizer trained on real turns,
for machines that cannot download weights (the lent GPU machine). Shapes follow the published configs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SHAPES = {  # Qwen2.5 configs (hidden, intermediate, layers, heads, kv heads, vocab, tied embeddings)
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "qwen2.5-7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                       num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
}


def build_tokenizer(texts, vocab_size: int = 32000):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from userlm.chat import CHATML_TEMPLATE

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=specials[1:])
    fast.chat_template = CHATML_TEMPLATE
    return fast


def main():
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", choices=SHAPES, default="qwen2.5-0.5b")
    parser.add_argument("--data", help="prepared data dir (its turns train the tokenizer); default: the scenarios' text")
    parser.add_argument("--tokenizer", help="a tokenizer saved by an earlier run (its --out): reused, not trained; "
                                            "for a machine the prepared data is too large to carry to")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    else:
        if args.data:
            texts = [m["content"] for split in ("train", "validation")
                     for line in open(Path(args.data) / f"{split}.jsonl", encoding="utf-8")
                     for m in json.loads(line)["messages"]]
        else:  # as tests/conftest.py's tiny model: no data needed on a machine that cannot download
            texts = [p.read_text(encoding="utf-8") for p in sorted(Path(__file__).parents[1].glob("scenarios/**/*.yaml"))]
        tokenizer = build_tokenizer(texts)
    config = Qwen2Config(**SHAPES[args.shape], max_position_embeddings=32768, rope_theta=1e6, rms_norm_eps=1e-6,
                         bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
                         eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"))
    torch.manual_seed(0)
    # initialized on the GPU where there is one: 7B's random init takes minutes on the CPU, seconds there
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    print(f"{args.shape}: {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters -> {args.out}")


if __name__ == "__main__":
    main()
