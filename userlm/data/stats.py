"""`userlm data stats DIR`: what a prepared directory holds."""

from __future__ import annotations

from collections import Counter

from userlm.data.prepare import SPLITS, load_manifest, read_split


def percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = (len(sorted_values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def data_stats(data_dir) -> dict:
    manifest = load_manifest(data_dir)
    out = {}
    for split in SPLITS:
        examples = read_split(data_dir, split)
        langs, lengths = Counter(), []
        for ex in examples:
            for m in ex["messages"]:
                if m["role"] == "user" and m["target"]:
                    langs[ex["lang"]] += 1
                    lengths.append(len(m["content"].split()))
        lengths.sort()
        out[split] = {
            "trees": len({ex["tree_id"] for ex in examples}), "threads": len(examples), "examples": len(examples),
            "human_turns": len(lengths), "ended_conversations": sum(ex["ends_conversation"] for ex in examples),
            "turns_by_lang": dict(langs.most_common()),
            "human_turn_words": {f"p{int(q * 100)}": percentile(lengths, q) for q in (0.1, 0.5, 0.9, 0.99)},
        }
    return {"manifest": manifest, "splits": out}


def print_stats(stats: dict, console) -> None:
    from rich.table import Table

    table = Table(title="Prepared data")
    table.add_column("")
    for split in SPLITS:
        table.add_column(split, justify="right")
    s = stats["splits"]
    for key in ("trees", "threads", "examples", "human_turns", "ended_conversations"):
        table.add_row(key.replace("_", " "), *(f"{s[sp][key]:,}" for sp in SPLITS))
    for q in ("p10", "p50", "p90", "p99"):
        table.add_row(f"human turn words {q}", *(f"{s[sp]['human_turn_words'][q]:.0f}" for sp in SPLITS))
    langs = Counter()
    for sp in SPLITS:
        langs.update(s[sp]["turns_by_lang"])
    for lang, _ in langs.most_common(8):
        table.add_row(f"human turns ({lang})", *(f"{s[sp]['turns_by_lang'].get(lang, 0):,}" for sp in SPLITS))
    console.print(table)
    for src in stats["manifest"]["sources"]:
        dropped = {**src.get("dropped_trees", {}), **{f"message:{k}": v for k, v in src.get("dropped_messages", {}).items()},
                   **{f"record:{k}": v for k, v in src.get("dropped_records", {}).items()}}
        console.print(f"[dim]{src['source']}: {src['trees']:,} conversations, {src['skipped_records']} skipped, "
                      f"{src['empty_records']} empty, {src['duplicate_trees']} duplicate trees, "
                      f"{src.get('parts_joined', 0):,} parts joined, {src['dropped_bytes']:,} bytes dropped; "
                      f"end targets: {'recorded ends' if src.get('records_end') else 'none (no recorded ends)'}"
                      + (f"; dropped: {', '.join(f'{k} {v:,}' for k, v in sorted(dropped.items()))}" if dropped else "")
                      + "[/dim]")
    dedup = stats["manifest"].get("dedup")
    if dedup:
        console.print(f"[dim]dedup: {dedup['exact_duplicates_dropped']:,} exact duplicates dropped; "
                      f"{dedup['conversations_in_linked_units']:,} conversations in {dedup['linked_units']:,} units "
                      f"linked by a shared human turn of {dedup['min_words']}+ words (one split each)[/dim]")
