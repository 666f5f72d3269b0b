"""Board pools and farms: routing each test to a board that can run it, the firmware matrix
(``--mp-dist each``), and boards taken from a labgrid coordinator (``labgrid://``).

- :mod:`.requirements`: what a test asks of a board, and whether a board meets it (the one
  function the plugin's skips, the routing and the matrix all use);
- :mod:`.pool`: every board of a pool identified at once, in parallel;
- :mod:`.scheduler`: the pytest-xdist scheduler that routes by per-worker collections;
- :mod:`.labgrid`: places reserved, acquired and released through labgrid's client API;
- :mod:`.hooks`: the pytest glue.
"""

from __future__ import annotations
