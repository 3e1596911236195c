"""vLLM in-process backend. UNTESTED HERE: vLLM's wheel is far over what this project's CI and the lent GPU
machine can install. Written against vLLM's documented offline API (LLM, SamplingParams, LoRARequest)."""

from __future__ import annotations

from userlm.backends.base import Backend, Generation, GenerationRequest
from userlm.chat import render


class VLLMBackend(Backend):
    name = "vllm"

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

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        from vllm import SamplingParams

        prompts = [render(self.tokenizer, r.messages, add_generation_prompt=True) for r in requests]
        params = [SamplingParams(temperature=r.sampling.temperature, top_p=r.sampling.top_p,
                                 max_tokens=r.sampling.max_new_tokens, seed=r.seed, skip_special_tokens=True)
                  for r in requests]
        outputs = self.llm.generate(prompts, params, lora_request=self.lora, use_tqdm=False)
        return [Generation(text=o.outputs[0].text, tokens=len(o.outputs[0].token_ids),
                           finish_reason=o.outputs[0].finish_reason or "stop") for o in outputs]

    def loglikelihood(self, requests):
        from vllm import SamplingParams

        texts, starts = [], []
        for messages, continuation in requests:
            prompt = render(self.tokenizer, messages, add_generation_prompt=True)
            starts.append(len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"]))
            texts.append(prompt + continuation)
        outputs = self.llm.generate(texts, SamplingParams(max_tokens=1, prompt_logprobs=0), lora_request=self.lora,
                                    use_tqdm=False)
        results = []
        for out, start in zip(outputs, starts):
            ids = out.prompt_token_ids
            logps = [out.prompt_logprobs[i][ids[i]].logprob for i in range(start, len(ids))]
            results.append((sum(logps), len(logps)))
        return results
