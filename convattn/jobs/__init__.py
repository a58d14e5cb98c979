"""The jobs the command line runs, as functions of a config dataclass: training
(``training``), evaluation (``evaluation``), ablation (``ablation``) and the checks files
(``checks``). The CLIs in ``convattn.cli`` only parse flags and call these."""
