"""Any OpenAI-compatible chat endpoint (e.g. `vllm serve --enable-lora --lora-modules user=ADAPTER`), with
bounded concurrency, timeouts and retries. The server applies its own chat template: the messages sent are
already in the speaking model's view, so a user model served there still sees the flipped roles."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from userlm.backends import register_backend
from userlm.backends.base import BatchBackend, Generation, GenerationRequest


@register_backend("openai")
class OpenAIBackend(BatchBackend):
    def __init__(self, model: str, base_url: str = "http://127.0.0.1:8000/v1", api_key: str = "EMPTY",
                 concurrency: int = 8, timeout_s: float = 120.0, retries: int = 3):
        try:
            from openai import OpenAI
        except ImportError:
            from userlm.io import UserError

            raise UserError("the openai backend needs the openai package: pip install 'userlm[openai]'") from None
        from userlm.config import check_bounds

        for name, value, lo in (("concurrency", concurrency, 1), ("timeout_s", timeout_s, 0.001), ("retries", retries, 0)):
            check_bounds(value, lo, None, f"openai backend option '{name}' (--backend-arg {name}=...)")
        self.model = model
        self.client = OpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=retries)
        self.concurrency = concurrency

    def _one(self, request: GenerationRequest) -> Generation:
        from openai import OpenAIError

        from userlm.io import UserError

        try:
            response = self.client.chat.completions.create(
                model=self.model, messages=request.messages, temperature=request.sampling.temperature,
                top_p=request.sampling.top_p, max_tokens=request.sampling.max_new_tokens, seed=request.seed)
        except OpenAIError as e:
            raise UserError(f"openai backend ({self.client.base_url}): {type(e).__name__}: {e}") from None
        choice = response.choices[0]
        tokens = response.usage.completion_tokens if response.usage else len((choice.message.content or "").split())
        return Generation(text=choice.message.content or "", tokens=tokens, finish_reason=choice.finish_reason or "stop")

    def generate_batch(self, requests: list[GenerationRequest]) -> list[Generation]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._one, requests))

    def masked_loglikelihood(self, encoded, batch_tokens=None, per_token=False):
        from userlm.io import UserError

        raise UserError("the openai backend cannot score log-likelihoods (a chat endpoint returns no prompt "
                        "log-probabilities); score perplexity with the hf backend")
