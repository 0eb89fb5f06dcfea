"""`python -m lenspipe ...`: the same as the `lenspipe` console script."""

from lenspipe.cli import main

raise SystemExit(main())
