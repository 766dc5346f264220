from shared_context_server.entry import main

raise SystemExit(main())
