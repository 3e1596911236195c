"""The one place where a conversation becomes a model's prompt.

A conversation keeps its original roles: "user" is the human, "assistant" the AI. A model always speaks in
its chat template's assistant slot, so `speaker_view` puts the speaker's turns there and the other side's
turns in the user slot. For the user model that is the role flip; for the stock assistant it changes
nothing. Training (`encode_for_training`) and inference (`prompt_for`) both call `render` on the same
view, so the simulator builds the user model's prompt byte for byte as training saw it.
"""

from __future__ import annotations

from userlm import END_OF_CONVERSATION

USER_MODEL_SYSTEM = "You are a human user talking to an AI assistant. Write the user's next message."
PROMPTED_USER_SYSTEM = (
    "You are role-playing a human user who is chatting with an AI assistant. You are NOT the assistant. "
    "Write only the user's next message: short, informal, the way real people type. {intent}"
    f"When your need is met or you want to stop, reply with exactly {END_OF_CONVERSATION}"
)
# Used when a tokenizer has no chat template (some base models): ChatML, as Qwen2.5 and SmolLM2 use.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Gemma's turn format, for Gemma base models whose GGUF carries no template. The system prompt is a user turn
# of its own (so that a conversation the user model opens still renders prefix by prefix); <end_of_turn> is a
# real token, so the model learns to stop on it.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else 'user') + '\n' }}"
    "{{ message['content'] + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
END_OF_TURN_TOKENS = ("<|im_end|>", "<end_of_turn>")


def user_model_system(base: str, intent: str = "", persona: str = "") -> str:
    """The user model's system prompt, with the conversation's intent (and persona) when it has one.
    Training (examples with written intents) and simulation (a scenario's intent) both build it here, so an
    intent-trained model sees the same wording in both."""
    parts = [base]
    if persona:
        parts.append(f"You are {persona.strip().rstrip('.')}.")
    if intent:
        intent = intent.strip()
        parts.append(intent if intent.lower().startswith("you ") else f"Your goal: {intent.rstrip('.')}.")
    return " ".join(parts)


def speaker_view(conversation: list[dict], speaker: str, system: str | None = None) -> list[dict]:
    """Messages as `speaker` sees them: its own turns in the assistant slot, the other side's in the user slot."""
    messages = [{"role": "system", "content": system}] if system else []
    for turn in conversation:
        messages.append({"role": "assistant" if turn["role"] == speaker else "user", "content": turn["content"]})
    return messages


def _has_token(tokenizer, token: str) -> bool:
    return tokenizer.convert_tokens_to_ids(token) not in (None, tokenizer.unk_token_id)


def ensure_chat_template(tokenizer) -> None:
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = GEMMA_TEMPLATE if _has_token(tokenizer, "<start_of_turn>") else CHATML_TEMPLATE


def stop_token_ids(tokenizer) -> list[int]:
    """The tokens that end a turn: EOS and whichever end-of-turn token the chat format has."""
    ids = {tokenizer.eos_token_id, *(tokenizer.convert_tokens_to_ids(t) for t in END_OF_TURN_TOKENS
                                     if _has_token(tokenizer, t))}
    return sorted(i for i in ids if isinstance(i, int))


def render(tokenizer, messages: list[dict], add_generation_prompt: bool) -> str:
    ensure_chat_template(tokenizer)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def render_ids(tokenizer, messages: list[dict], add_generation_prompt: bool) -> list[int]:
    """The token ids of `render`'s text (the template places its own special tokens)."""
    return render_ids_batch(tokenizer, [messages], add_generation_prompt)[0]


def render_ids_batch(tokenizer, conversations: list[list[dict]], add_generation_prompt: bool) -> list[list[int]]:
    """`render_ids` of each conversation, tokenized in one call: a fast tokenizer encodes a batch on its own
    threads (128 prompts of ~1,200 tokens: 208 ms one by one, 142 batched on a 2-core CPU; the same ids)."""
    texts = [render(tokenizer, messages, add_generation_prompt) for messages in conversations]
    return tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []


def prompt_for(tokenizer, conversation: list[dict], speaker: str, system: str | None = None) -> str:
    """The text a model continues to produce `speaker`'s next turn."""
    return render(tokenizer, speaker_view(conversation, speaker, system), add_generation_prompt=True)


def with_end_marker(example: dict) -> list[dict]:
    """The example's turns, plus the human's end-of-conversation turn when the conversation ended."""
    turns = [dict(t) for t in example["messages"]]
    if example.get("ends_conversation"):
        turns.append({"role": "user", "content": END_OF_CONVERSATION, "target": True})
    return turns


def target_spans(tokenizer, turns: list[dict], speaker: str, system: str | None) -> tuple[str, list[tuple[int, int]]]:
    """Full rendered text and the character spans of the speaker's target turns (with their end-of-turn
    token, so the model learns to stop). Each span starts exactly where `prompt_for` on the preceding
    turns ends."""
    full = render(tokenizer, speaker_view(turns, speaker, system), add_generation_prompt=False)
    spans = []
    for i, turn in enumerate(turns):
        if turn["role"] != speaker or not turn.get("target", True):
            continue
        prefix = prompt_for(tokenizer, turns[:i], speaker, system)
        upto = render(tokenizer, speaker_view(turns[: i + 1], speaker, system), add_generation_prompt=False)
        if not (upto.startswith(prefix) and full.startswith(upto)):
            raise ValueError("the chat template does not render conversations prefix by prefix; cannot mask targets")
        spans.append((len(prefix), len(upto)))
    return full, spans


def training_turns(example: dict, speaker: str) -> list[dict]:
    """The turns a model is trained on as `speaker`: the user model's with the end marker where the person
    stopped; the assistant's (negative control) every AI turn."""
    if speaker == "user":
        return with_end_marker(example)
    return [{**t, "target": True} for t in example["messages"]]


def encode_for_training(
    tokenizer, example: dict, *, speaker: str = "user", system: str | None = USER_MODEL_SYSTEM, max_length: int = 1024
) -> dict:
    """input_ids and labels (-100 outside the speaker's target turns) of the conversation from its start,
    truncated to max_length."""
    return encode_turns(tokenizer, training_turns(example, speaker), speaker, system, max_length)


def encode_turns(tokenizer, turns: list[dict], speaker: str, system: str | None, max_length: int) -> dict:
    """input_ids and labels (-100 outside the speaker's target turns) of `turns`, truncated to max_length.

    TRL's `assistant_only_loss` needs `{% generation %}` markers that few chat templates have, so the
    labels are computed here from the same rendering the simulator uses.
    """
    text, spans = target_spans(tokenizer, turns, speaker, system)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = []
    span_index = 0
    for token_id, (start, _end) in zip(enc["input_ids"], enc["offset_mapping"]):
        while span_index < len(spans) and start >= spans[span_index][1]:
            span_index += 1
        inside = span_index < len(spans) and spans[span_index][0] <= start < spans[span_index][1]
        labels.append(token_id if inside else -100)
    return {"input_ids": enc["input_ids"][:max_length], "labels": labels[:max_length]}


def strip_end_marker(text: str) -> tuple[str, bool]:
    """(text without the marker, whether the speaker ended the conversation)."""
    if END_OF_CONVERSATION in text:
        return text.split(END_OF_CONVERSATION, 1)[0].strip(), True
    return text.strip(), False
