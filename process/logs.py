"""Logging for the served process: one format for every logger, and tracebacks that carry no
exception message.

The app's own error logging already leaves messages out (api.errors.describe_failure); this
formatter is the net under everything else that logs a traceback (uvicorn's "Exception in ASGI
application", a library's warning with exc_info), since an exception's message may quote SQL
parameters or GraphQL variables, that is, patients' data (DESIGN.md invariant 6).

`PATIENTPOOL_LOG_FORMAT=json` (production's default) writes each record as one JSON object:
`time`, `level`, `logger`, `message`, any structured `fields` a record carries (the request
lines of api.signals) at the top level, and `exception` (classes and frames only).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from api.errors import describe_failure

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class PrivateFormatter(logging.Formatter):
    def formatException(self, ei: Any) -> str:
        return describe_failure(ei[1])


class JsonFormatter(PrivateFormatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update({k: v for k, v in fields.items() if k not in line})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def log_config(level: str = "INFO", fmt: str = "text") -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn and the app: everything to stderr, through
    PrivateFormatter, or JsonFormatter for `fmt="json"`."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter} if fmt == "json" else {"()": PrivateFormatter, "fmt": FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"private": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "private",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            **{
                name: {"handlers": [], "level": level, "propagate": True}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
            },
            # Casbin writes the whole policy at INFO on every load.
            "casbin": {"handlers": [], "level": "WARNING", "propagate": True},
            # httpx writes each outgoing URL at INFO, query included: WeChat's code2Session
            # and token calls carry the app secret and the patient's one-time code there.
            **{
                name: {"handlers": [], "level": "WARNING", "propagate": True}
                for name in ("httpx", "httpcore")
            },
        },
    }
