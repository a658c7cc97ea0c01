import sys

from evidence_dock.cli import main

sys.exit(main())
