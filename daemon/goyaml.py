"""YAML read the way Go's ``yaml.v2`` ``UnmarshalStrict`` reads it (the exporter-toolkit).

Two differences from ``yaml.safe_load`` matter for a security config:

- **A duplicate key is an error**, with its line and the line of the first one. PyYAML
  lets the last one win silently: a second, empty ``tls_server_config:`` would serve
  plain HTTP, a second ``basic_auth_users: {}`` would turn auth off.
- **A scalar keeps the text it was written with.** Go decodes a scalar into the field's
  type: an unquoted ``1`` into a ``string`` field is ``"1"`` (``X-XSS-Protection: 1``),
  into a ``time.Duration`` it is 1 ns (``interval: 0``). So a scalar that YAML resolves
  to a bool, number or timestamp is a :class:`GoScalar`: a ``str`` with its source text,
  and its YAML value in :attr:`GoScalar.typed` for fields that want the number.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, ScalarNode


class GoScalar(str):
    """An unquoted bool/number/timestamp: its text (``str(self)``) and YAML value."""

    typed: object

    def __new__(cls, text: str, typed: object) -> GoScalar:
        self = super().__new__(cls, text)
        self.typed = typed
        return self


class DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: object, line: int, first_line: int) -> None:
        self.key, self.line, self.first_line = key, line, first_line
        super().__init__(
            f"duplicate key {key!r} at line {line} (first at line {first_line}): "
            "refused, as the exporter-toolkit refuses it (the last one would win silently)"
        )


class _GoLoader(yaml.SafeLoader):
    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[object, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # a merged mapping's keys may be overridden: not duplicates
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: SafeLoader reports it below
            if first is not None:
                raise DuplicateKeyError(key, line, first)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _keep_text(method: Any) -> Any:
    def construct(loader: SafeConstructor, node: ScalarNode) -> GoScalar:
        return GoScalar(node.value, method(loader, node))

    return construct


for _tag, _method in (
    ("bool", SafeConstructor.construct_yaml_bool),
    ("int", SafeConstructor.construct_yaml_int),
    ("float", SafeConstructor.construct_yaml_float),
    ("timestamp", SafeConstructor.construct_yaml_timestamp),
):
    _GoLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _keep_text(_method))


def load(text: str) -> Any:
    """The document in ``text``; raises :class:`DuplicateKeyError` or ``yaml.YAMLError``."""
    return yaml.load(text, Loader=_GoLoader)  # noqa: S506 -- a SafeLoader subclass
