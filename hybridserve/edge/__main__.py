import sys

from hybridserve.edge.cli import main

sys.exit(main())
