"""``python -m coverlookup`` runs the command line."""

from coverlookup.cli import main

raise SystemExit(main())
