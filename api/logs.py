"""Logging for the served process: one format for every logger, and tracebacks that carry no
exception message.

The app's own error logging already leaves messages out (api.errors.describe_failure); this
formatter is the net under everything else that logs a traceback (uvicorn's "Exception in ASGI
application", a library's warning with exc_info), since an exception's message may quote SQL
parameters or GraphQL variables, that is, patients' data (DESIGN.md invariant 6).
"""

from __future__ import annotations

import logging
from typing import Any

from api.errors import describe_failure

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class PrivateFormatter(logging.Formatter):
    def formatException(self, ei: Any) -> str:
        return describe_failure(ei[1])


def log_config(level: str = "INFO") -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn and the app: everything to stderr, through
    PrivateFormatter."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"private": {"()": PrivateFormatter, "fmt": FORMAT}},
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
