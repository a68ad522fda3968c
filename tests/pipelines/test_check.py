"""The data-check pipeline: one report per folder, progress per folder."""

from __future__ import annotations

from bayescellseg.pipelines.check import check_datasets
from bayescellseg.samples import sample_root


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def start(self, total: int, what: str) -> None:
        self.calls.append(("start", total, what))

    def advance(self, name: str) -> None:
        self.calls.append(("advance", name))

    def close(self) -> None:
        self.calls.append(("close",))


def test_reports_per_folder_and_progress(tmp_path) -> None:
    progress = Recorder()
    reports = check_datasets([sample_root(), tmp_path / "missing"], progress)
    assert len(reports) == 2 and not reports[0].problems
    assert any("dataset folder not found" in p for p in reports[1].problems)
    assert progress.calls == [
        ("start", 2, "data check"),
        ("advance", str(sample_root())),
        ("advance", str(tmp_path / "missing")),
        ("close",),
    ]
