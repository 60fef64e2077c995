"""``python -m undertone``: the ``undertone`` command, for an environment whose scripts folder is not on PATH."""

import sys

from undertone.cli import main

sys.exit(main())
