from shared_context_server.cli import main

raise SystemExit(main())
