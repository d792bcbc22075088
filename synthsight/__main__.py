from synthsight.cli import main

raise SystemExit(main())
