"""Streamlit-side helpers shared by the app's pages: widgets -> convattn -> pictures.

- ``pages``: the app's pages and their sections, which app.py routes.
- ``sidebar``: the shared sidebar (checkpoint, image source, test set), drawn by app.py.
- ``state``: the device, cached models and cached per-image work.
- ``sources``: the bundled sample, the full test set, predictions files.
- ``widgets``: number inputs the page can also set, and the click that sets the query.
- ``analysis``: what a page computes for one image (plain torch/numpy, no Streamlit).
- ``render``: enlarged images, colour-mapped overlays, colour bars and charts.
- ``export``: PNG figures and .npz arrays for the download buttons.
- ``session``: what the pages share: ``current()`` (what the sidebar chose),
  ``open_in_inspect(index)`` and the way back.
- ``setwork``: work over a whole test set, read from shipped files or computed once.
- ``gallery``: choosing, ordering and drawing thumbnails that open on the Inspect page.
- ``figures``: plotly charts of the Misclassifications, Ablation, Training and Compare
  pages.
- ``labelcheck``: known CIFAR-10 label errors (badges, corrected accuracy) and cleanlab's
  ranking of a set's labels, cached per (checkpoint, image set).
- ``calibrate``: a predictions file's temperatures, applied to a set or to one image.
- ``nearest``: Inspect's nearest training images (features cached on disk).
"""

import warnings

# Captum says this on every hook-based attribution (our copies take the hooks, see
# convattn.attribution); in a server log it buries everything else.
warnings.filterwarnings("ignore", message="Setting forward, backward hooks and attributes",
                        category=UserWarning)
