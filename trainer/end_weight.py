"""`end_loss_weight` (issue 24 item 3): the training loss of the end-of-conversation marker's tokens multiplied by a
weight, so the one decision a conversation has to end (a few tokens among hundreds of a window's targets) counts
more. The weighted tokens are the marker's own (END_OF_CONVERSATION as the human turn's whole content, as
userlm/chat.py with_end_marker writes it; the first is the decision), not the end-of-turn token after it.

TRL 1.16's SFTTrainer.compute_loss takes the per-token log-probabilities of its fused LM head (`model(...,
fused_lm_head=True).log_probs`, zero where labels are -100) and divides their sum by the step's target-token count.
The subclass here hands it the model wrapped so those log-probabilities come back multiplied by the weight at the
marker's positions: TRL's normalisation (sum / num_items_in_batch), its metrics (entropy, token accuracy, tokens)
and its other paths stay its own. Evaluation is not weighted (eval_loss stays the plain per-token loss)."""

from __future__ import annotations

from userlm import END_OF_CONVERSATION
from userlm.io import UserError


def check_end_weight(cfg) -> None:
    """A one-line error before the model loads: only the user model's turns carry the end marker."""
    if cfg.end_loss_weight != 1.0 and cfg.target_role != "user":
        raise UserError("end_loss_weight needs target_role=user (the assistant's turns carry no end marker)")


def marker_ids(tokenizer) -> list[int]:
    """The end marker's token ids as a training row holds them: tokenized inside a rendered conversation (the
    shortest start of the end turn's target tokens that decodes to the marker), not alone."""
    from userlm.chat import encode_turns

    turns = [{"role": "assistant", "content": "Done."}, {"role": "user", "content": END_OF_CONVERSATION}]
    row = encode_turns(tokenizer, turns, "user", None, 10**6)
    target = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
    for n in range(1, len(target) + 1):
        if END_OF_CONVERSATION in tokenizer.decode(target[:n]):
            return target[:n]
    raise ValueError(f"the end marker is not among the end turn's target tokens: {target}")


def end_marker_mask(labels, marker: list[int], shifted: bool = False):
    """Bool tensor: True at the end marker's tokens, where a target run (consecutive labels != -100) starts with
    the marker's ids. `labels` unshifted (B, L) gives the fused head's (B, L-1) positions (its log_probs score
    labels[:, 1:]); pre-shifted labels (TRL's shift_labels) give (B, L)."""
    import torch

    target = labels != -100
    start = target.clone()
    start[:, 1:] &= ~target[:, :-1]
    match, length = start, labels.shape[1]
    for i, token in enumerate(marker):
        at = torch.zeros_like(target)
        at[:, :length - i] = labels[:, i:] == token
        match = match & at
    marked = torch.zeros_like(target)
    for i in range(len(marker)):
        marked[:, i:] |= match[:, :length - i]
    return marked if shifted else marked[:, 1:]


class _Weighted:
    """The model, with the fused head's per-token log-probabilities multiplied by `weights` (its other outputs
    and its unfused forward untouched)."""

    def __init__(self, model, weights):
        self.model, self.weights = model, weights

    def __call__(self, *args, **kwargs):
        out = self.model(*args, **kwargs)
        if kwargs.get("fused_lm_head"):
            out.log_probs = out.log_probs * self.weights.to(out.log_probs.dtype)
        return out


def with_end_weight(base, weight: float):
    """`base` (an SFTTrainer class) unchanged at weight 1; else a subclass whose training loss weights the end
    marker's tokens by `weight`."""
    if weight == 1.0:
        return base

    class EndWeightedTrainer(base):
        end_loss_weight = weight

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not self.model.training:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if self.compute_loss_func is not None or self.label_smoother is not None or getattr(self.args, "loss_type", "nll") != "nll":
                raise UserError("end_loss_weight works on TRL's plain NLL loss only (no custom loss, label "
                                "smoothing or loss_type other than nll)")
            if not hasattr(self, "_end_marker"):
                self._end_marker = marker_ids(self.processing_class)
            shifted = inputs.get("shift_labels") is not None
            mask = end_marker_mask(inputs["shift_labels" if shifted else "labels"], self._end_marker, shifted)
            # this process's count (under DDP the manifest, written by process 0, holds process 0's)
            self.end_tokens_weighted = getattr(self, "end_tokens_weighted", 0) + int(mask.sum())
            weights = 1.0 + (self.end_loss_weight - 1.0) * mask.float()
            return super().compute_loss(_Weighted(model, weights), inputs, return_outputs, num_items_in_batch)

    return EndWeightedTrainer
