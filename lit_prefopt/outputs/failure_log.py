"""A failed job's error in its own log file (`<run_dir>/<job name>.log`).

Hydra prints a failed job's traceback to stderr only, so a sweep job's directory would show an
empty log and a scheduler's log (or a scrolled-away terminal) would be the only record of why
it stopped. This Hydra callback hands the error to the log's file handlers alone: the terminal
already shows Hydra's own report of it.
"""

from __future__ import annotations

import logging
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class FailureInJobLog(Callback):
    """Write a failed job's exception, with its traceback, to the root logger's log files."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status != JobStatus.FAILED:
            return
        error = job_return._return_value  # the return_value property re-raises it
        record = log.makeRecord(
            log.name, logging.ERROR, __file__, 0, "The job failed: %s", (error,),
            (type(error), error, error.__traceback__),
        )
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler):
                handler.handle(record)
