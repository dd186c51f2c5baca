"""`python -m wa_auth._cli`: the same front door as `wa-auth` and `python -m wa_auth`."""

from __future__ import annotations

from wa_auth._cli import main

raise SystemExit(main())
