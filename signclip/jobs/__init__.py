"""The Ray entrypoints, one per job: parse the command line, build the pipeline from the packages of
``signclip``, run it, write outputs and a summary. Each has ``main(argv) -> int`` (callable from tests) and runs as
``python -m signclip.jobs.<name>`` or ``signclip <name>``; exit codes 0 (all ok or skipped), 1 (some items failed),
2 (usage or configuration error). May import anything in ``signclip``.
"""
