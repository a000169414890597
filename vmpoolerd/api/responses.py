"""The API's one response type: JSON, rendered as Starlette's JSONResponse renders it, but by one shared
encoder. (`json.dumps` with keyword arguments builds a new encoder for every call, about a microsecond
a response that every checkout and return would pay.)"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse

_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))


class JsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return _ENCODER.encode(content).encode("utf-8")
