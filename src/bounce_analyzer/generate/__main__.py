"""`python -m bounce_analyzer.generate`: see `bounce_analyzer.generate.cli`."""

from bounce_analyzer.generate.cli import main

raise SystemExit(main())
