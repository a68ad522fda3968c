"""The self-contained HTML report: escaping, inlined images, tables."""

from __future__ import annotations

import base64
import re

from bayescellseg.report.html import (
    GalleryEntry,
    ReportContent,
    Table,
    format_cell,
    png_data_uri,
    render_report,
    render_table,
)

PNG = b"\x89PNG\r\n\x1a\nfake"


def test_format_cell():
    assert format_cell(0.12345) == "0.123"
    assert format_cell(0.001234) == "0.001234"
    assert format_cell(0.0) == "0.000"
    assert format_cell(float("nan")) == "&ndash;" == format_cell(None)
    assert format_cell(True) == "yes"
    assert format_cell(7) == "7"
    assert format_cell("<b>") == "&lt;b&gt;"


def test_data_uri_round_trip():
    uri = png_data_uri(PNG)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == PNG
    assert png_data_uri(b"\xff\xd8\xff\xe0jpeg").startswith("data:image/jpeg;base64,")


def test_table_escapes_and_formats():
    text = render_table(Table("cap & co", ("name", "x"), (("<img src=x>", 0.5),), note="a<b"))
    assert "<img src=x>" not in text and "&lt;img src=x&gt;" in text
    assert "<td>0.500</td>" in text and "cap &amp; co" in text and "a&lt;b" in text


def test_report_is_self_contained_and_escaped():
    evil = '"><script>alert(1)</script>'
    content = ReportContent(
        title="t",
        intro=("hello",),
        warnings=(f"missing {evil}",),
        tables=(Table("scores", ("", "DSB"), (("all", 0.9),)),),
        figures=(("fig " + evil, PNG),),
        galleries={"Worst": [GalleryEntry(evil, "dsb 0.1", (("image", PNG), ("truth", PNG)))]},
        details_table=Table("per image", ("image",), ((evil,),)),
        config={"pred": evil},
    )
    html = render_report(content)
    assert html.startswith("<!DOCTYPE html>")
    assert "<script" not in html
    srcs = re.findall(r'src="([^"]*)"', html)
    assert len(srcs) == 3 and all(s == png_data_uri(PNG) for s in srcs)
    assert "href=" not in html and "<link" not in html
    assert "Show all 1 images" in html and "<h2>Worst</h2>" in html


def test_empty_gallery_says_so():
    html = render_report(ReportContent(title="t", galleries={"Most uncertain": []}))
    assert "No images." in html
