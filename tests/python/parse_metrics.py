"""Parses a /metrics scrape with prometheus_client's own parsers.

Usage: parse_metrics.py FORMAT FILE, FORMAT being `openmetrics` or `text`. Prints one
line per metric family, `name type`, sorted; fails if the parser rejects the text.
"""
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as om
from prometheus_client.parser import text_string_to_metric_families as text

fmt, path = sys.argv[1], sys.argv[2]
with open(path, encoding="utf-8") as f:
    body = f.read()
parse = om if fmt == "openmetrics" else text
families = sorted({(family.name, family.type) for family in parse(body)})
for name, kind in families:
    print(name, kind)
