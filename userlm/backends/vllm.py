"""vLLM in-process backend. UNTESTED HERE: vLLM's wheel is far over what this project's CI and the lent GPU
machine can install. Written against vLLM's documented offline API (LLM, SamplingParams, LoRARequest)."""

from __future__ import annotations

from userlm.backends import register_backend
from userlm.backends.base import BatchBackend, Generation, GenerationRequest
from userlm.chat import render


@register_backend("vllm")
class VLLMBackend(BatchBackend):
    def __init__(self, model: str, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.85,
                 max_lora_rank: int = 64, max_model_len: int = 4096):
        try:
            from vllm import LLM
            from vllm.lora.request import LoRARequest
        except ImportError:
            from userlm.io import UserError

            raise UserError("the vllm backend needs vLLM: pip install 'userlm[gpu]'") from None
        from userlm.models import load_tokenizer, materialize, resolve

        ref = resolve(model)
        # Prompts are rendered by userlm.chat.render, like training did; vLLM only continues them.
        self.tokenizer = load_tokenizer(model)
        self.lora = LoRARequest("user-model", 1, ref.location) if ref.kind == "adapter" else None
        self.llm = LLM(model=materialize(ref), tokenizer=materialize(ref), enable_lora=self.lora is not None,
                       max_lora_rank=max_lora_rank, tensor_parallel_size=tensor_parallel_size,
                       gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len)

    def generate_batch(self, requests: list[GenerationRequest]) -> list[Generation]:
        from vllm import SamplingParams

        prompts = [render(self.tokenizer, r.messages, add_generation_prompt=True) for r in requests]
        params = [SamplingParams(temperature=r.sampling.temperature, top_p=r.sampling.top_p,
                                 max_tokens=r.sampling.max_new_tokens, seed=r.seed, skip_special_tokens=True)
                  for r in requests]
        outputs = self.llm.generate(prompts, params, lora_request=self.lora, use_tqdm=False)
        return [Generation(text=o.outputs[0].text, tokens=len(o.outputs[0].token_ids),
                           finish_reason=o.outputs[0].finish_reason or "stop") for o in outputs]

    def masked_loglikelihood(self, encoded, batch_tokens=None, per_token=False):
        """The log-probabilities vLLM returns for the prompt's own tokens (`prompt_logprobs`); position i's is
        that of token i given the tokens before it, as the labels say."""
        from vllm import SamplingParams

        prompts = [{"prompt_token_ids": ids} for ids, _ in encoded]
        outputs = self.llm.generate(prompts, SamplingParams(max_tokens=1, prompt_logprobs=0), lora_request=self.lora,
                                    use_tqdm=False)
        results = []
        for out, (ids, labels) in zip(outputs, encoded):
            logps = [out.prompt_logprobs[i][ids[i]].logprob for i in range(1, len(ids)) if labels[i] != -100]
            results.append(logps if per_token else (sum(logps), len(logps)))
        return results
