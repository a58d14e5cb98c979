"""Can a prediction, a label or an image be trusted? Calibration (``calibration``), known
and likely label errors (``label_errors``, ``label_issues``), nearest training images
(``neighbours``) and the out-of-distribution flag (``ood``, tested on ``ood_images``)."""
