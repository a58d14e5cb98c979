"""Reading attention out of a model without touching it: maps and rows (``attention``),
what Inspect computes for one image (``analysis``), one query step by step
(``stepthrough``), statistics over many images (``stats``), and the lens's scores and
query/key space (``lens``)."""
