import sys

from ticketbench.bench.cli import main

sys.exit(main())
