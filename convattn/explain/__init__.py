"""Explanations and their checks: attributions (``attribution``), deletion and insertion
(``faithfulness``, batched in ``faithfulness_batched``) with their verdicts (``verdict``),
model randomisation (``sanity``), attention switched off (``ablation``) and the checks
files that keep all of it (``checks``)."""
