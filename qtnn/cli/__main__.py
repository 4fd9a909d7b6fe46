"""``python -m qtnn.cli``: the ``qtnn`` command (also what ``torchrun -m qtnn.cli`` runs)."""

import sys

from qtnn.cli import main

sys.exit(main())
