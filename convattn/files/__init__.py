"""Data and files: datasets (``data``, ``loader``, ``download``), uploaded images
(``images``), checkpoints (``checkpoint``, ``info``), training histories (``history``),
predictions files (``predictions``) and the files shipped with convattn (``shipped``)."""
