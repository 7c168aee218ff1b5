from ocr.cli import main

raise SystemExit(main())
