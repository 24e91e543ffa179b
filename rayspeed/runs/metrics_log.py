"""metrics.jsonl: the run's committed metrics, one JSON row per logged step, steps strictly increasing.

Rows are committed with one append of complete lines (a rewrite of the whole object on object
stores), so after any kill the file ends at a complete row.
"""

import json

from rayspeed.runs.layout import METRICS_FILE
from rayspeed.runs.storage import RunStorage


class MetricsLog:
    """The committed rows of one run, loaded once and kept in memory by the one process that writes."""

    def __init__(self, storage: RunStorage):
        self._storage = storage
        text = storage.read_text(METRICS_FILE) or ""
        if not text.endswith("\n") and text:  # a writer killed mid-write(2) left part of a line: the next
            storage.write(text[:text.rfind("\n") + 1], METRICS_FILE)  # append would glue a row to it
        self.rows = read_metrics(storage)

    @property
    def last_step(self) -> int:
        return self.rows[-1]["step"] if self.rows else 0

    def append(self, rows: list[dict]) -> list[dict]:
        """Commits the rows after the last committed step; returns those (earlier ones are repeats
        from a restart and are dropped, so every step is recorded once)."""
        last = self.last_step if self.rows else -1  # step 0: the score before training (`model.init_from`)
        new = [row for row in rows if row["step"] > last]
        if new:
            self._storage.append("".join(json.dumps(row) + "\n" for row in new), METRICS_FILE)
            self.rows.extend(new)
        return new


def read_metrics(storage: RunStorage) -> list[dict]:
    """The committed rows; a last line without its newline (a file written by something else that
    was killed mid-line) is not a committed row and is ignored."""
    text = storage.read_text(METRICS_FILE) or ""
    lines = text.split("\n")[:-1]  # complete lines only
    return [json.loads(line) for line in lines if line.strip()]
