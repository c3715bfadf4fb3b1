"""``python -m reconciler.cli``: the same as the ``odooops`` command."""

import sys

from reconciler.cli.main import main

sys.exit(main())
