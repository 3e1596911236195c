"""Put ShareGPT conversations back together.

The ShareGPT "split" release cuts long conversations into records `<stem>_<offset>`, where offset is the index
of the part's first turn in the whole conversation. A part either starts right after its predecessor or
repeats the predecessor's last (AI) turn first. Left apart, every non-final part would end in an
end-of-conversation target where the person went on, and every continuation would be trained as an opening.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from userlm.data.trees import Message, ReadReport, Tree


def _chain(root: Message) -> list[Message]:
    out = [root]
    while out[-1].children:
        out.append(out[-1].children[0])
    return out


def _link(messages: list[Message]) -> Message:
    for parent, child in zip(messages, messages[1:]):
        parent.children = [child]
    messages[-1].children = []
    return messages[0]


def _continues(segment: list[Tree], part: Tree) -> str | None:
    """'exact' or 'overlap' when `part` carries on where the segment stopped, else None."""
    last = segment[-1].part
    if part.part["offset"] is None or last["offset"] is None:
        return None
    expected = last["offset"] + last["length"]
    if part.part["offset"] == expected:
        return "exact"
    if part.part["offset"] == expected - 1 and part.part["first"] == last["last"]:
        return "overlap"
    return None


def _join(segment: list[Tree], modes: list[str]) -> Tree:
    messages = _chain(segment[0].root)
    for tree, mode in zip(segment[1:], modes):
        more = _chain(tree.root)
        if mode == "overlap":  # the part repeats the turn the previous one ended on: drop the copy
            _role, repeated = tree.part["first"]
            head = more[0]
            if head.text.startswith(repeated):
                head.text = head.text[len(repeated):].strip()
            if not head.text:
                more = more[1:]
        if more and more[0].role == messages[-1].role:  # the reader merges a side's consecutive turns too
            messages[-1].text += "\n\n" + more[0].text
            more = more[1:]
        messages += more
    first = segment[0]
    part = {**first.part, "parts": [t.tree_id for t in segment], "opens": first.part["offset"] in (None, 0)}
    return Tree(first.tree_id, first.source, _link(messages), first.group_id, records_end=True, part=part)


def join_parts(trees: Iterable[Tree], report: ReadReport) -> Iterator[Tree]:
    """Whole conversations from parts. A part that does not continue its predecessor starts a new segment
    of the same group (same split): the earlier segment gets no end (the person went on), and the new one
    does not open the conversation (its first human turn had context we do not have)."""
    groups: dict[str, list[Tree]] = {}
    for tree in trees:
        if tree.part is None:  # not a part of a cut conversation
            yield tree
        else:
            groups.setdefault(tree.group_id, []).append(tree)
    last_group = next(reversed(groups), None)
    for group_id, parts in groups.items():
        parts.sort(key=lambda t: -1 if t.part["offset"] is None else t.part["offset"])
        segments: list[tuple[list[Tree], list[str]]] = []
        for part in parts:
            if segments and segments[-1][0][-1].part["offset"] == part.part["offset"]:
                report.duplicate_trees += 1  # the same part twice
                continue
            mode = _continues(segments[-1][0], part) if segments else None
            if mode:
                segments[-1][0].append(part)
                segments[-1][1].append(mode)
                report.parts_joined += 1
            else:
                report.part_breaks += bool(segments)
                segments.append(([part], []))
        joined = [_join(s, m) for s, m in segments]
        for tree in joined[:-1]:
            tree.records_end = False
        # A file cut off mid-record may have lost this conversation's later parts.
        if group_id == last_group and report.dropped_bytes:
            joined[-1].records_end = False
        yield from joined
