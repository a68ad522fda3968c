"""Make docs/images/napari_plugin.png: napari with the Segment nuclei widget and its layers.

Needs napari with a Qt binding (``pip install ".[napari]"``) and a display; on a headless
machine: ``xvfb-run -a -s "-screen 0 1600x900x24" python experiments/napari_screenshot.py``.
The plugin is registered from its manifest, so the package need not be installed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "src" / "bayescellseg" / "samples" / "dsb2018"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=0, help="index of the bundled sample")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "napari_plugin.png")
    args = parser.parse_args()

    import napari
    from napari.settings import get_settings
    from npe2 import PluginManager, PluginManifest

    from bayescellseg.io.images import load_image
    from bayescellseg.napari.widget import segment_nuclei

    manifest = REPO / "src" / "bayescellseg" / "napari" / "napari.yaml"
    PluginManager.instance().register(PluginManifest.from_file(manifest))
    sample = sorted(SAMPLES.glob("*/images/*.png"))[args.sample]
    get_settings().application.gui_notification_level = "error"  # no toast over the canvas
    viewer = napari.Viewer(show=True, title="bayescellseg in napari")
    image = viewer.add_image(load_image(sample).intensity[..., 0], name="cells", colormap="gray")
    viewer.window.add_plugin_dock_widget("bayescellseg", "Segment nuclei")
    for data, meta, kind in segment_nuclei(image, samples=0):  # what the widget's Run adds
        viewer._add_layer_from_data(data, meta, kind)
    viewer.layers["cells probability"].visible = False
    viewer.layers.selection.active = viewer.layers["cells nuclei"]
    viewer.window._qt_window.resize(1400, 760)
    for _ in range(5):
        napari.qt.get_qapp().processEvents()
    viewer.reset_view()
    napari.qt.get_qapp().processEvents()
    viewer.screenshot(str(args.out), canvas_only=False, flash=False)
    print(f"wrote {args.out} ({sample.parent.parent.name})")


if __name__ == "__main__":
    main()
