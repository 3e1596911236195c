"""Evaluation throughput, batched against one item at a time, measured side by side in one run:
- perplexity: tokens/s scoring real held-out human turns with the embedded model (batch 1; batch 16 in the
  given order; batches cut from length-sorted examples up to a token budget, as `perplexity_units` does);
- AI-voice classifier: turns/s of featurize + predict (MiniLM embeddings + TF-IDF, logistic regression), all
  turns in one call against one call per turn. Caches are pointed at an empty folder so nothing is reused."""

import argparse
import os
import random
import tempfile
import time

os.environ["USERLM_CACHE"] = tempfile.mkdtemp(prefix="bench-eval-cache-")


def perplexity_rates(examples, batch_sizes=(1, 16)):
    from evaluators.perplexity import perplexity_units
    from userlm.backends import get_backend
    from userlm.chat import USER_MODEL_SYSTEM, encode_for_training
    from userlm.models import DEFAULT_ASSISTANT

    backend = get_backend("hf", DEFAULT_ASSISTANT, quantization="none", max_batch=16)
    encoded = [encode_for_training(backend.tokenizer, ex, speaker="user", system=USER_MODEL_SYSTEM, max_length=384)
               for ex in examples]
    encoded = [(e["input_ids"], e["labels"]) for e in encoded if any(x != -100 for x in e["labels"])]
    tokens = sum(len(ids) for ids, _ in encoded)
    rates = {}
    for size in batch_sizes:  # the given order: what the code did before length sorting
        started = time.perf_counter()
        for start in range(0, len(encoded), size):
            backend.loglikelihood_batch(encoded[start: start + size])
        rates[f"batch {size}, given order"] = tokens / (time.perf_counter() - started)
    for budget in (512, 4096):
        started = time.perf_counter()
        perplexity_units(DEFAULT_ASSISTANT, USER_MODEL_SYSTEM, examples, max_length=384, batch_tokens=budget)
        rates[f"length-sorted, up to {budget} tokens a batch (perplexity_units)"] = tokens / (time.perf_counter() - started)
    return len(encoded), tokens, rates


def classifier_rates(texts, train_per_class: int):
    from evaluators.classifier import AIVoiceClassifier, ClassifierConfig, train_classifier

    out = tempfile.mkdtemp(prefix="bench-clf-")
    train_classifier(ClassifierConfig(out=out, stock_turns=0, adversary_turns=0, held_out_generators=False,
                                      max_per_class_per_source=train_per_class, features="both"))
    clf = AIVoiceClassifier(out)
    predict = clf.model.p_ai  # featurize + logistic regression, no cache
    predict(texts[:4])  # load the encoder before timing
    started = time.perf_counter()
    for t in texts:
        predict([t])
    one = len(texts) / (time.perf_counter() - started)
    started = time.perf_counter()
    predict(texts)
    batched = len(texts) / (time.perf_counter() - started)
    started = time.perf_counter()
    clf.p_ai(texts)  # what `evaluate` calls: batched, through the (empty) vector cache
    through_cache = len(texts) / (time.perf_counter() - started)
    return one, batched, through_cache


def main():
    from userlm.data.prepare import PrepareConfig, prepare, read_split

    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=160, help="held-out conversations scored for perplexity")
    parser.add_argument("--turns", type=int, default=400, help="turns the classifier scores")
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="bench-eval-data-") + "/sharegpt"
    prepare(PrepareConfig(sources=["sharegpt"], out=data, max_trees_per_source=3000, seed=1))
    test = read_split(data, "test")
    examples = random.Random(0).sample(test, min(args.examples, len(test)))
    n, tokens, rates = perplexity_rates(examples)
    print(f"perplexity: {n} held-out conversations, {tokens:,} tokens (SmolLM2-135M, fp32, 2 CPU threads)")
    base = rates["batch 1, given order"]
    for label, rate in rates.items():
        print(f"  {label}: {rate:,.0f} tok/s = {rate / base:.2f}x batch 1")
    turns = [m["content"] for ex in test for m in ex["messages"] if m["content"].strip()]
    turns = random.Random(1).sample(turns, min(args.turns, len(turns)))
    one, batched, through_cache = classifier_rates(turns, train_per_class=400)
    print(f"classifier (MiniLM + TF-IDF, logistic regression): {len(turns)} turns")
    print(f"  one turn per call: {one:,.1f} turns/s")
    print(f"  all turns in one call: {batched:,.1f} turns/s = {batched / one:.1f}x")
    print(f"  p_ai (batched, through an empty cache): {through_cache:,.1f} turns/s = {through_cache / one:.1f}x")


if __name__ == "__main__":
    from userlm.threads import machine_line

    print(machine_line(), flush=True)
    main()
