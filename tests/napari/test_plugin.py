"""The napari plugin, headless: manifest, widget on an image layer, reader of predict outputs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip(
    "napari", reason="napari is not installed (pip install 'bayescellseg[napari]' or '.[dev]')"
)
npe2 = pytest.importorskip("npe2", reason="npe2 (installed with napari) is missing")

from napari.components import ViewerModel  # noqa: E402
from napari.layers import Layer  # noqa: E402

from bayescellseg.errors import InputError  # noqa: E402
from bayescellseg.export import ExportOptions, write_exports  # noqa: E402
from bayescellseg.napari.reader import get_reader, read_predict_output  # noqa: E402
from bayescellseg.napari.widget import segment_nuclei  # noqa: E402
from tests.export.results import synthetic_result  # noqa: E402
from tests.synthetic import synthetic_image, synthetic_labels  # noqa: E402

SRC = Path(__file__).resolve().parents[2] / "src" / "bayescellseg"
MAGENTA, GREEN = [1.0, 0.0, 1.0, 1.0], [0.0, 0.8, 0.0, 1.0]


def _add(viewer: ViewerModel, layers: list[tuple]) -> list[Layer]:
    return [viewer.add_layer(Layer.create(data, meta, kind)) for data, meta, kind in layers]


def test_manifest_declares_widget_and_reader_that_import() -> None:
    manifest = npe2.PluginManifest.from_file(SRC / "napari" / "napari.yaml")
    assert manifest.name == "bayescellseg"
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    assert commands == {
        "bayescellseg.segment_nuclei": "bayescellseg.napari.widget:segment_nuclei",
        "bayescellseg.get_reader": "bayescellseg.napari.reader:get_reader",
    }
    for command in manifest.contributions.commands:
        module, name = command.python_name.split(":")
        assert callable(getattr(__import__(module, fromlist=[name]), name))
    widget = manifest.contributions.widgets[0]
    assert widget.command == "bayescellseg.segment_nuclei" and widget.autogenerate
    reader = manifest.contributions.readers[0]
    assert reader.accepts_directories and reader.filename_patterns == ["*_labels.tif"]


def test_pyproject_entry_point_names_the_manifest() -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")
    pyproject = tomllib.loads((SRC.parents[1] / "pyproject.toml").read_text())
    entry = pyproject["project"]["entry-points"]["napari.manifest"]["bayescellseg"]
    assert entry == "bayescellseg.napari:napari.yaml"
    assert "napari/napari.yaml" in pyproject["tool"]["setuptools"]["package-data"]["bayescellseg"]


def test_widget_segments_the_selected_layer_into_labels_maps_and_features() -> None:
    labels = synthetic_labels((96, 96), n=6, seed=2)
    data = (synthetic_image(labels, seed=2)[..., 0] * 65535).astype(np.uint16)
    viewer = ViewerModel()
    image = viewer.add_image(data, name="cells", scale=(0.5, 0.5))
    image.metadata["pixel_size_um"] = 0.5
    layers = _add(viewer, segment_nuclei(image, samples=0, diameter="10um"))
    assert [layer.name for layer in viewer.layers] == [
        "cells",
        "cells probability",
        "cells epistemic",
        "cells nuclei",
    ]
    probability, epistemic, nuclei = layers
    assert isinstance(nuclei, napari.layers.Labels) and isinstance(probability, napari.layers.Image)
    assert nuclei.data.shape == data.shape and tuple(nuclei.scale) == (0.5, 0.5)
    assert 0 <= epistemic.data.min() and epistemic.data.max() <= 1
    ids = np.unique(nuclei.data)
    ids = ids[ids > 0]
    assert len(ids) >= 3  # the bundled model finds the synthetic nuclei
    table = nuclei.features
    assert table["index"].tolist() == ids.tolist() == table["label"].tolist()
    assert {"uncertainty", "needs_review", "area_um2", "mean_intensity", "solidity"} <= set(table)
    np.testing.assert_allclose(table["area_um2"], table["area"] * 0.25)
    # the bundled model's trust.json: p_correct, flagged below 0.5, as in predict
    assert table["needs_review"].tolist() == (table["p_correct"] < 0.5).tolist()
    assert 0 <= nuclei.metadata["summary"]["predicted_score"] <= 1
    colours = nuclei.colormap.map(ids)
    for colour, flagged in zip(colours, table["needs_review"], strict=True):
        np.testing.assert_allclose(colour, MAGENTA if flagged else GREEN)
    assert nuclei.metadata["summary"]["n_nuclei"] == len(ids)


def test_widget_refuses_a_stack_layer() -> None:
    layer = napari.layers.Image(np.zeros((3, 16, 16), np.uint8), name="stack")
    with pytest.raises(InputError, match=r"layer 'stack': has shape \(3, 16, 16\); choose a 2D"):
        segment_nuclei(layer)


def test_reader_opens_a_predict_folder_with_calibration_and_features(tmp_path: Path) -> None:
    result, image = synthetic_result()
    write_exports(result, image, "a", tmp_path, ExportOptions(pixel_size_um=0.25))
    (tmp_path / "notes.txt").write_text("not an output")
    assert get_reader(str(tmp_path)) is read_predict_output
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path / "a_labels.tif")) is read_predict_output
    viewer = ViewerModel()
    layers = _add(viewer, read_predict_output(str(tmp_path)))
    assert [layer.name for layer in layers] == ["a probability", "a epistemic", "a nuclei"]
    nuclei = layers[-1]
    np.testing.assert_array_equal(nuclei.data, result.labels)
    assert tuple(nuclei.scale) == (0.25, 0.25) and nuclei.metadata["pixel_size_um"] == 0.25
    assert nuclei.features["label"].tolist() == [r.label for r in result.nuclei]
    assert nuclei.features["needs_review"].tolist() == [r.needs_review for r in result.nuclei]
    np.testing.assert_allclose(nuclei.colormap.map(np.array([1])), [MAGENTA])
    np.testing.assert_array_equal(layers[0].data, result.probability)


def test_layers_and_reader_do_not_import_napari() -> None:
    import bayescellseg.napari.layers as layers
    import bayescellseg.napari.reader as reader

    for module in (layers, reader):
        imported = {v.__name__ for v in vars(module).values() if type(v) is type(sys)}
        assert not any(name.startswith("napari") for name in imported), module.__name__


def test_autogenerated_form_has_a_layer_choice_and_adds_the_returned_layers() -> None:
    from magicgui.signature import magic_signature
    from magicgui.type_map import get_widget_class, type2callback

    signature = magic_signature(segment_nuclei, raise_on_unknown=True)
    kinds = {
        p.name: get_widget_class(value=p.default, annotation=p.annotation, options=p.options)[0]
        for p in signature.parameters.values()
    }
    assert {name: kind.__name__ for name, kind in kinds.items()} == {
        "image": "ComboBox",
        "model": "LineEdit",
        "samples": "SpinBox",
        "diameter": "LineEdit",
        "tta": "CheckBox",
        "device": "LineEdit",
    }
    callbacks = type2callback(signature.return_annotation)
    assert [c.__name__ for c in callbacks] == ["add_layer_data_tuples_to_viewer"]


def test_installed_package_is_discovered_by_napari() -> None:
    from importlib.metadata import entry_points

    names = {e.name for e in entry_points(group="napari.manifest")}
    if "bayescellseg" not in names:
        pytest.skip("the installed bayescellseg metadata has no napari entry point (reinstall it)")
    manager = npe2.PluginManager.instance()
    manager.discover()
    manifest = manager.get_manifest("bayescellseg")
    assert [w.display_name for w in manifest.contributions.widgets] == ["Segment nuclei"]
    readers = manager.iter_compatible_readers([str(Path("out") / "a_labels.tif")])
    assert "bayescellseg.get_reader" in [r.command for r in readers]
