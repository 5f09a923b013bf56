"""``RunFinder``: which batch runs in the predictions experiment are new, without trusting clocks.

The first look lists every FINISHED batch run. After that each writer (a spool, listed on
the experiment as ``nutrilearn.writer.<id>``) is asked only for its runs numbered from the
lowest number it still had open when it last wrote (``spool.WritePosition``): every run is
found exactly once whatever the writers' clocks say. See docs/tracking.md.

The finder's memory (``FinderState``) can be kept between processes (the mirror does), so
a new process does not list the whole history again. A writer re-marks its experiment tag
after every run it finishes (``store.writer_mark``); a writer whose mark has not changed
since the finder last asked it has written nothing since, and is not asked again: picking
up a new batch costs one experiment read and one search, however many writers there are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nutrilearn.tracking import store
from nutrilearn.tracking.spool import KINDS

WRITE_SEQ_METRIC = "write_seq"


@dataclass(frozen=True)
class BatchRun:
    run_id: str
    kind: str
    batch_id: str
    run_name: str
    end_time_ms: int
    artifact_uri: str
    tags: dict


@dataclass
class FinderState:
    listed_all: bool = False  # the first full listing happened
    floors: dict[str, int] = field(default_factory=dict)  # writer id -> lowest number that may still appear
    marks: dict[str, str] = field(default_factory=dict)  # writer id -> its tag value when last asked


class RunFinder:
    """New FINISHED batch runs of one experiment; ``known`` run ids are never returned."""

    def __init__(self, tracking_uri: str, experiment_name: str, state: FinderState | None = None):
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.state = state or FinderState()
        self._client = None
        self._experiment_id: str | None = None

    @property
    def client(self):
        if self._client is None:
            self._client = store.make_client(self.tracking_uri)
        return self._client

    def experiment_id(self) -> str | None:
        if self._experiment_id is None:
            self._experiment_id = store.get_experiment_id(self.client, self.experiment_name, None, False)
        return self._experiment_id

    def new_runs(self, known: set[str] | frozenset[str]) -> list[BatchRun]:
        if self.experiment_id() is None:
            return []
        # Only ids and numbers we checked go into the filter strings.
        finished = "attributes.status = 'FINISHED'"
        if not self.state.listed_all:
            found = self._search(finished)
            self.state.listed_all = True
        else:
            found = []
            for writer, mark in self.writer_marks().items():
                if store.is_run_mark(mark) and self.state.marks.get(writer) == mark:
                    continue  # nothing finished there since we last asked
                found += self._search(f"{finished} AND tags.`{store.TAG_WRITER}` = '{writer}' "
                                      f"AND metrics.`{WRITE_SEQ_METRIC}` >= {int(self.state.floors.get(writer, 0))}")
                # The mark read *before* the search: a run finished meanwhile changes it again.
                self.state.marks[writer] = mark
        for run in found:
            writer, open_from = run.tags.get(store.TAG_WRITER), run.tags.get(store.TAG_OPEN_FROM, "")
            if writer and open_from.isdigit():
                self.state.floors[writer] = max(self.state.floors.get(writer, 0), int(open_from))
        return [run for run in found if run.run_id not in known]

    def writers(self) -> list[str]:
        """The spools that write to this experiment (each lists itself on the experiment)."""
        return sorted(self.writer_marks())

    def writer_marks(self) -> dict[str, str]:
        """Writer id -> its experiment tag's value (changes with every run it finishes)."""
        tags = self.client.get_experiment(self.experiment_id()).tags or {}
        marks = {}
        for key, value in tags.items():
            if key.startswith(store.WRITER_TAG_PREFIX):
                try:
                    marks[store.check_writer_id(key[len(store.WRITER_TAG_PREFIX):])] = str(value)
                except ValueError:
                    continue  # not one of ours
        return dict(sorted(marks.items()))

    def _search(self, flt: str) -> list[BatchRun]:
        found: list[BatchRun] = []
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id()], filter_string=flt, max_results=10_000,
                                           order_by=["attributes.end_time ASC"], page_token=token)
            for run in page:
                kind = run.data.tags.get(store.TAG_KIND)
                if kind in KINDS:
                    found.append(BatchRun(run.info.run_id, kind, run.data.tags.get(store.TAG_BATCH_ID, ""),
                                          run.info.run_name or "", int(run.info.end_time or 0),
                                          run.info.artifact_uri, dict(run.data.tags)))
            token = page.token
            if not token:
                return found
