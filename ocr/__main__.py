from ocr.cli.main import main

raise SystemExit(main())
