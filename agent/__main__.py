"""`python -m agent` is the `cpagent` command."""

from agent.cli import main

raise SystemExit(main())
