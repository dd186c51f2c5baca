"""`python -m wa_auth`: the same front door as the `wa-auth` command."""

from __future__ import annotations

from wa_auth._cli import main

raise SystemExit(main())
