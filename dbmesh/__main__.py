"""`python -m dbmesh` runs the command line."""

import sys

from dbmesh.cli import main

sys.exit(main())
