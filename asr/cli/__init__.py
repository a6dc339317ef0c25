"""Command lines: one module per command, each ``main(argv) -> exit status``.

``scripts/<command>.py`` and the ``asr-<command>`` entry points (``pip install`` puts them on the
PATH) call them: ``train``, ``evaluate``, ``decode``, ``prepare``, ``make_manifest``, ``build_lm``,
``tune_lm``, ``export``. ``common`` holds what they share: one-line errors and exit statuses, and
the decoding, model and window flags.
"""
