"""The Streamlit app's side: what the pages (app_pages/) share. widgets -> convattn ->
pictures and plots. One line per module:

Pages and what they share
- ``pages``: the app's pages and their sections, which app.py routes and the pages link to.
- ``session``: what a page gets from the router: ``current()`` (the sidebar's choices),
  ``open_in_inspect(index)`` and the way back.
- ``sidebar``: the shared sidebar (model, test set, image), a package with one module per
  section, drawn by app.py before each page.
- ``loaded_model``: the model a page works on (``Loaded``): checkpoints, uploads, the
  device, and its cached answers for one image (analysis, attributions).
- ``sources``: where the images come from: the bundled sample, the full test set, the
  training split, predictions files.
- ``roots``: which folders a browser may name (the operator's allowed roots), and where
  the app may write.
- ``serving``: what the operator allowed, said once in the server's log: roots, the
  private upload folder, the upload cap, the address.
- ``preload``: Inspect's first run (imports, model, analysis, lens data, attributions), done on a
  thread when the server starts, into the caches the pages read.
- ``allocator``: freed tensors go back to the system (glibc's mmap threshold, fixed at
  the server's start), so that a session keeps no memory of its passes.

Widgets
- ``widgets``: number inputs whose value the page can also set.
- ``pinned_query``: the session's pinned query pixel: the only reader and writer of it.
- ``choose``: choosing an attention module, a head, and the query through the lens.
- ``lens``: the attention lens, a Streamlit component that paints attention as the mouse
  moves (with mass outlines and a log scale as options).
- ``guess``: Predict, then reveal: the series of images, the guesses and their scores.
- ``gallery``: choosing, ordering and drawing thumbnails that open on the Inspect page.

Work, cached
- ``teaching_work``: the teaching pages' library calls, cached per checkpoint and in
  chunks of the balanced order.
- ``set_results``: probabilities and ablations over a whole image set, read from shipped
  files or computed once.
- ``progress_cache``: the one hand-written cache, for work that moves a progress bar as it
  runs (st.cache_* would replay the bar's updates).
- ``work_speed``: how long live work will take, said before it starts, from the speed
  measured on this server (Faithfulness).
- ``checkfiles``: the checks file beside a checkpoint, used where it matches the page.
- ``temperature``: a predictions file's temperatures, applied to a set or to one image.
- ``label_doubts``: known CIFAR-10 label errors (badges, corrected accuracy) and
  cleanlab's ranking of a set's labels.
- ``similar_images``: Inspect's nearest training images (features cached on disk).
- ``ood_notice``: Inspect's notice when an image looks unlike the training data.

Output
- ``pictures``: enlarged images, colour-mapped overlays and colour bars (numpy and PIL).
- ``bars``: Inspect's probability bars as plain HTML, so that its first screen loads no
  chart library; the colours of right and wrong.
- ``plots``: every plotly chart of the pages.
- ``markdown``: text from files shown literally in Markdown, and small Markdown tables.
- ``downloads``: the PNG figures (matplotlib) and .npz arrays of the download buttons.
"""

import warnings

# Captum says this on every hook-based attribution (our copies take the hooks, see
# convattn.explain.attribution); in a server log it buries everything else.
warnings.filterwarnings("ignore", message="Setting forward, backward hooks and attributes",
                        category=UserWarning)
