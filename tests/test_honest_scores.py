"""Issue 22 items 6 and 7: degenerate text is not human, no ranked generator is in the classifier's training data,
length matching cuts both classes alike, and intent adherence tests constraints, not topic."""

import random

import numpy as np
import pytest

from evaluators.classifier_data import cut_to_words, length_matched, words
from evaluators.classifier_eval import auroc, auroc_ci
from evaluators.degenerate import conversation_flags, conversation_p_ai, degenerate_text, degenerate_variants


@pytest.mark.parametrize("text", ["please " * 50, "I see. " * 12, "Thank you so much for your help.\n" * 4,
                                  "can you can you can you can you can you can you help", "lol " * 13])
def test_loops_are_degenerate(text):
    assert degenerate_text(text)


@pytest.mark.parametrize("text", ["ok", "continue", "please please help me, the build fails on windows",
                                  "1. the the cat\n2. a dog\n3. I want a list of ten animals for my class, please",
                                  "Write a story about a cat. Make it short. Make it funny."])
def test_ordinary_turns_are_not(text):
    assert not degenerate_text(text)


def test_conversation_rules_repeats_and_filler_spam():
    assert conversation_flags(["how do i fix this error?", "ok", "How do I fix this error"]) == [None, None, "repeat"]
    assert conversation_flags(["ok", "?", "ok thanks"]) == ["fillers"] * 3
    assert conversation_flags(["hi, i need a budget for 2100 a month", "ok thanks"]) == [None, None]
    p = {"ok": 0.1, "?": 0.2, "ok thanks": 0.05, "a real question here": 0.3}
    assert conversation_p_ai(["ok", "?", "ok thanks"], p) == [1.0, 1.0, 1.0]
    assert conversation_p_ai(["a real question here", "ok"], p) == [0.3, 0.1]


def test_degenerate_users_score_below_people_on_human_likeness():
    """The 'ok'/'?' user and a repeating user get human_likeness 0 whatever the classifier says about the words
    (issue 22 measured 0.830 and 0.742 against people's 0.716)."""
    from evaluators import metrics as M

    ok_user = [{"user_turns": random.Random(i).choices(["ok", "?", "ok thanks"], k=3)} for i in range(10)]
    repeater = [{"user_turns": ["Can you tell me more about that?"] * 3} for _ in range(10)]
    people = [{"user_turns": ["my flight got cancelled, what are my rights in the EU?", "it was a 4 hour delay"]}]
    texts = M.distinct_turns(ok_user, repeater, people)
    inputs = M.Inputs(p_ai={t: 0.2 for t in texts})  # a classifier that finds every text human-ish
    likeness = M.METRICS["human_likeness"].statistic(inputs)
    rate = M.METRICS["ai_voice_rate"].statistic(inputs)
    assert likeness(people) == pytest.approx(0.8) and rate(people) == 0
    assert likeness(ok_user) == 0 and rate(ok_user) == 1
    assert likeness(repeater) == pytest.approx(0.8 / 3) and rate(repeater) == pytest.approx(2 / 3)


def test_degenerate_variants_are_loops():
    made = degenerate_variants(["Hello there. How are you today?", "fix my python code please"], 30, seed=0)
    assert len(made) == 30 and all(degenerate_text(t) for t in made)


def test_length_matching_cuts_both_classes_alike():
    """Humans and AI turns both end in a full stop; a 'classifier' that calls a turn AI when it does not end in
    one separated them perfectly when only AI turns were cut. Cut alike, it is at chance, and both classes have
    the same word counts."""
    rng = random.Random(0)
    sentence = lambda n: " ".join(["word"] * (n - 1)) + " end."
    humans = [{"text": sentence(rng.randint(5, 60)), "label": 0, "data": "d"} for _ in range(400)]
    ais = [{"text": sentence(rng.randint(20, 300)), "label": 1, "data": "d", "source": "d:assistant"} for _ in range(400)]
    h, a = length_matched(ais, humans, seed=0)
    assert len(h) == len(a) > 100
    assert sorted(words(r["text"]) for r in h) == sorted(words(r["text"]) for r in a)
    assert all(5 <= words(r["text"]) <= 40 for r in h + a) and sum(r["cut"] for r in h) > 50
    cut_detector = lambda rows: [float(not r["text"].endswith(".")) for r in rows]
    assert abs(auroc([0] * len(h) + [1] * len(a), cut_detector(h + a)) - 0.5) < 0.1
    assert cut_to_words("a b c. d e", 3) == "a b c."


def test_auroc_ci_contains_the_value_and_narrows_with_n():
    rng = np.random.default_rng(0)
    small = [rng.normal(0, 1, 20), rng.normal(1, 1, 20)]
    big = [rng.normal(0, 1, 2000), rng.normal(1, 1, 2000)]
    for h, a in (small, big):
        labels, scores = [0] * len(h) + [1] * len(a), np.concatenate([h, a])
        lo, hi = auroc_ci(labels, scores)
        assert lo <= auroc(labels, scores) <= hi
    width = lambda h, a: np.diff(auroc_ci([0] * len(h) + [1] * len(a), np.concatenate([h, a])))[0]
    assert width(*big) < width(*small) / 4


def test_no_ranked_generator_in_the_classifier_training_data():
    from evaluators.classifier_config import ClassifierConfig
    from evaluators.classifier_guard import check_held_out, training_generators
    from userlm.io import UserError

    assert training_generators(ClassifierConfig()) == []  # the default: data-only AI turns
    trained = {"generators": training_generators(ClassifierConfig(stock_turns=8))}
    assert trained["generators"] == ["embedded:smollm2-135m-instruct"]
    for run_info in ({"config": {"user": "prompted:embedded:smollm2-135m-instruct"}},
                     {"config": {"user": "base:HuggingFaceTB/SmolLM2-135M-Instruct"}},
                     {"config": {"user": "/work/adapters/u"}, "user_adapter_manifest": {
                         "base_model": "embedded:smollm2-135m-instruct"}}):
        with pytest.raises(UserError, match="trained on turns written by"):
            check_held_out(trained, run_info)
        check_held_out({"generators": []}, run_info)
    check_held_out(trained, {"config": {"user": "prompted:embedded:qwen2.5-0.5b-instruct"}})


INTENTS = [  # (intent, a user on its topic that says none of its constraints, a user that says them)
    ("You want to plan a week of vegetarian dinners, for about 40 dollars, without mushrooms",
     "plan dinners for the week", "vegetarian dinners for the week under 40 dollars, and no mushrooms please"),
    ("You want to plan a trip to Lisbon, travelling by train, with a budget of 500 euros",
     "help me plan a trip to Lisbon", "trip to Lisbon by train, I have 500 euros"),
    ("You want to write a cover letter for a nursing job, in under 200 words, mentioning your ICU experience",
     "can you write a cover letter for a nursing job", "cover letter for nursing, under 200 words, mention the ICU"),
    ("You want to fix a Python KeyError, without using defaultdict, keeping the code Python 2 compatible",
     "my python code throws a KeyError", "KeyError in python, I cannot use defaultdict and it must run on python 2"),
    ("You want to choose a laptop for video editing, under 1000 dollars, with at least 32 GB of RAM",
     "which laptop should I buy", "a laptop for editing videos, max 1000 dollars, 32 GB RAM minimum"),
    ("You want to make a monthly budget, with rent of 950 dollars, including a car loan",
     "help me make a budget", "monthly budget, rent is 950, and I pay a car loan"),
    ("You want to write a history essay on the French Revolution, focusing on women, with five sources",
     "essay on the french revolution", "french revolution essay about the role of women, need five sources"),
    ("You want to learn Spanish recipes, using only a slow cooker, without pork",
     "any spanish recipes?", "spanish recipes i can do in my slow cooker, no pork"),
    ("You want to write an SQL join of orders and customers, using PostgreSQL, without subqueries",
     "how do I join two tables in SQL", "join orders and customers in postgres, no subqueries"),
    ("You want to get a baby to sleep through the night, without sleep training, using a bedtime routine",
     "how do I get my baby to sleep", "baby sleep through the night but no sleep training, maybe a bedtime routine"),
    ("You want to train a dog to stop barking, using positive reinforcement, without a shock collar",
     "my dog barks a lot", "stop my dog barking with rewards, positive reinforcement, no shock collar"),
    ("You want to buy a gift for your mother, under 50 dollars, related to gardening",
     "gift ideas for my mom", "gift for my mum, gardening related, 50 dollars max"),
]


def test_intent_adherence_is_chance_for_a_user_on_topic_that_ignores_the_constraints():
    from evaluators.cache import embed
    from evaluators.intent import K_NEGATIVES, hard_negatives, mean_of, scenario_intents, score_units

    pool = [i for i, _, _ in INTENTS] + scenario_intents()
    scores = {}
    for who, column in (("topic only", 1), ("faithful", 2)):
        units = [{"intent": row[0], "user_turns": [row[column]]} for row in INTENTS]
        score_units(units, lambda texts: embed(texts), pool)
        scores[who] = {k: mean_of(k)(units) for k in ("intent_adherence", "intent_topic", "intent_checklist")}
    # The old, topic-only measure cannot tell them apart; the hard negatives can.
    assert scores["topic only"]["intent_topic"] == scores["faithful"]["intent_topic"] == 1.0
    assert 0.3 <= scores["topic only"]["intent_adherence"] <= 0.7, scores
    assert scores["faithful"]["intent_adherence"] >= 0.9, scores
    assert scores["topic only"]["intent_checklist"] < 0.2 < 0.8 < scores["faithful"]["intent_checklist"]
    negatives = hard_negatives([INTENTS[0][0]], pool, lambda texts: embed(texts))[INTENTS[0][0]]
    assert len(negatives) == K_NEGATIVES + 1 and all(n.startswith("You want to plan a week of vegetarian dinners")
                                                     for n in negatives)
