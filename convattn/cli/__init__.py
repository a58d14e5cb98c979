"""The command-line entry points, one module per command: ``train``, ``evaluate``,
``ablation``, ``checks``, ``data``; ``flags`` turns a job's config dataclass into flags.

Nothing in the library or the app imports this package: a module here parses arguments
and calls a job from ``convattn.jobs``, nothing more.
"""
