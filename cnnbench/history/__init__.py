"""Performance history: results stored per commit, change points over commits, trend pages.

    store.py        the database (SQLite by default, PostgreSQL for a team), SQLAlchemy Core,
                    versioned schema migrations, idempotent append-only ingest
    series.py       per-case series over commits, built from stored per-process figures
    changepoints.py e-divisive means change points with Student's t-test significance (Otava's
                    split/merge), pure numpy
    baseline.py     a comparison baseline from the last N stored runs (`compare --baseline-db`)
    trend_html.py   the static trend page (`history --html DIR`)

Import-light: SQLAlchemy is imported by `store` only, numpy by `changepoints` only, no torch.
"""

DEFAULT_STORE_URL = "sqlite:///results/history.sqlite"

__all__ = ["DEFAULT_STORE_URL"]
