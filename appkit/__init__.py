"""Streamlit-side helpers shared by the app's pages: widgets -> convattn -> pictures.

- ``state``: the sidebar's model choice, device, cached models and cached per-image work.
- ``sources``: the bundled sample, the full test set, predictions files, uploads.
- ``analysis``: what the page computes for one image (plain torch/numpy, no Streamlit).
- ``render``: enlarged images, colour-mapped overlays, colour bars and charts.
- ``export``: PNG figures and .npz arrays for the download buttons.
"""
