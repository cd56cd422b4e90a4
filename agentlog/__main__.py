import sys

from agentlog.cli.main import main

sys.exit(main())
