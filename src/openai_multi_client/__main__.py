"""``python -m openai_multi_client`` is the ``omc`` command."""

from .cli import main

raise SystemExit(main())
