from .drivers.cli import main

raise SystemExit(main())
