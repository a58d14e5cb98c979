"""Streamlit-side helpers shared by the app's pages: widgets -> convattn -> pictures.

- ``sidebar``: the shared sidebar (checkpoint, image source, test set); ``choose()``.
- ``state``: the device, cached models and cached per-image work.
- ``sources``: the bundled sample, the full test set, predictions files.
- ``widgets``: number inputs the page can also set (e.g. from a click).
- ``analysis``: what a page computes for one image (plain torch/numpy, no Streamlit).
- ``render``: enlarged images, colour-mapped overlays, colour bars and charts.
- ``export``: PNG figures and .npz arrays for the download buttons.
"""
