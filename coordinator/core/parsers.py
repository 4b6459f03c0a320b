"""Request parsers: DRF's JSON parser, hardened against hostile nesting."""

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class SafeJSONParser(JSONParser):
    """Deeply nested JSON makes ``json.loads`` raise ``RecursionError``, which DRF does not
    catch; a few kilobytes of brackets must be a 400, not a 500."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as error:
            raise ParseError("JSON parse error - nested too deeply") from error
