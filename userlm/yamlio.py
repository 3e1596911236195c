"""YAML as this project reads it: PyYAML's safe loader, except that a mapping with a repeated key is an error
(PyYAML keeps the last value silently; a config or scenario with two `samples:` lines means a mistake)."""

from __future__ import annotations

import yaml
from yaml import YAMLError  # noqa: F401 - re-exported for the readers' except clauses


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys in a mapping, naming the key and both lines."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:  # the mapping's own keys: one may override a merged (<<) one
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                try:
                    key = self.construct_object(key_node, deep=True)
                    hash(key)
                except (TypeError, yaml.YAMLError):
                    continue  # an unhashable key: PyYAML's own error follows
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key '{key}' on line {key_node.start_mark.line + 1} (first on "
                        f"line {seen[key].line + 1})", key_node.start_mark)
                seen.setdefault(key, key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str):
    """The document in `text` (yaml.safe_load's result) with duplicate keys refused (a yaml.YAMLError)."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
