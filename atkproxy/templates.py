"""Path templates (pure): `/{workflow}/{id}` and `/{workflow}/{id}/{rest:.*}` as regexes."""

from __future__ import annotations

import re

_PARAM = re.compile(r"\{(\w+)(?::((?:[^{}]|\{[^{}]*\})*))?\}")


def compile_template(template: str) -> re.Pattern[str]:
    """`{name}` matches one segment, `{name:regex}` the regex; raises re.error when invalid."""
    pattern, pos = "", 0
    for m in _PARAM.finditer(template):
        pattern += re.escape(template[pos : m.start()])
        pattern += f"(?P<{m.group(1)}>{m.group(2) or '[^/]+'})"
        pos = m.end()
    return re.compile(pattern + re.escape(template[pos:]) + r"/?\Z")
