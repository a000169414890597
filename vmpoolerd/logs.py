"""Logging set-up for the daemon: stdlib logging, one line per event, to stderr, or to `logfile` alone when
the config names one (under systemd or supervisord stderr is kept too, and a line belongs in one place)."""

from __future__ import annotations

import logging
import sys

from vmpooler_core.audit import FORMAT


def configure(level: str, logfile: str | None = None) -> None:
    handler = logging.FileHandler(logfile) if logfile else logging.StreamHandler(sys.stderr)
    handlers: list[logging.Handler] = [handler]
    logging.basicConfig(level=level, format=FORMAT, handlers=handlers, force=True)
    # uvicorn's per-request access lines cost more than the request itself; its errors still show.
    logging.getLogger("uvicorn.access").disabled = True


log = logging.getLogger("vmpooler.daemon")


def reopen() -> None:
    """SIGHUP: close the log file so the next line opens it again, at its path (after logrotate moved it).
    A FileHandler in append mode reopens its file by itself on the next record once closed: the line
    saying so is the new file's first."""
    files = [handler for handler in logging.getLogger().handlers if isinstance(handler, logging.FileHandler)]
    for handler in files:
        handler.close()  # takes the handler's lock itself
    if files:
        log.info("SIGHUP: log file reopened: %s", ", ".join(handler.baseFilename for handler in files))
    else:
        log.info("SIGHUP: logging to stderr, no log file to reopen")
