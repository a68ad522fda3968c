"""The trust section of the report: its figures, table and the note when signals are absent."""

from __future__ import annotations

import numpy as np

from bayescellseg.evaluation.trust_report import trust_section, trust_table
from bayescellseg.report.html import ReportContent, Section, Table, render_report
from bayescellseg.report.trust_plots import interval_scatter, ood_strip

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_trust_plots_render_with_and_without_values():
    p, lo, hi, t = np.array([0.5, 0.2]), np.array([0.3, 0.0]), np.array([0.7, 0.4]), [0.6, 0.9]
    assert interval_scatter(p, lo, hi, t, ["a", "b"], 0.9)[:8] == PNG_MAGIC
    assert interval_scatter(np.full(2, np.nan), lo, hi, t, ["a", "a"])[:8] == PNG_MAGIC
    assert ood_strip(np.array([1.0, 2.0, 8.0]), ["a", "a", "b"], 5.0)[:8] == PNG_MAGIC
    assert ood_strip(np.zeros(0), [], None)[:8] == PNG_MAGIC


def test_section_is_rendered_after_the_figures_and_escaped():
    section = Section("Trust <signals>", ("p < 0.5",), (Table("t", ("a",), ((1.5,),)),),
                      (("cap", PNG_MAGIC),))  # fmt: skip
    page = render_report(ReportContent("r", figures=(("fig", PNG_MAGIC),), sections=(section,)))
    assert "<h2>Trust &lt;signals&gt;</h2><p>p &lt; 0.5</p>" in page
    assert page.index("<h2>Figures</h2>") < page.index("Trust &lt;signals&gt;")
    assert "<td>1.500</td>" in page and page.count("<figure>") == 2


def _group(mae, coverage, rate=None):
    return {
        "score": {"n_images": 2, "mae": mae, "bias": 0.0, "pearson": None, "coverage": coverage,
                  "mean_width": 0.4},
        "budget": {"oracle_gain_share": 0.75},
        "nucleus": {"ece": 0.04, "error_auroc": 0.9},
        "ood_flagged": 0.5,
        "ood_auroc_vs_others": 1.0,
        **({"review": {"realised_rate": rate}} if rate is not None else {}),
    }  # fmt: skip


def test_table_has_a_row_per_dataset_and_the_stated_rates():
    block = {"available": True, "overall": _group(0.1, 0.5, 0.9), "review_fraction": 0.2,
             "datasets": {"a": _group(0.2, 1.0, 1.0), "b": _group(0.0, 0.0, 0.8)},
             "stated_coverage": 0.9, "min_quality": 0.6, "alpha": 0.1}  # fmt: skip
    table = trust_table(block)
    assert [row[0] for row in table.rows] == ["all images", "a", "b"]
    assert table.rows[1][2] == 0.2 and table.rows[1][5] == 1.0 and table.rows[2][7] == 0.8
    assert table.columns[8] == "oracle-gain share @ 20%"
    assert "(stated 90%)" in table.note and "score >= 0.6, stated 90%" in table.note


def test_absent_signals_give_a_note_only():
    section = trust_section({"available": False, "reason": "no trust.json"}, {})
    assert section.paragraphs == ("Trust signals are absent: no trust.json.",)
    assert section.tables == () and section.figures == ()
