from jamrec.cli import main

raise SystemExit(main())
