"""Paper reproductions: each runs its experiments through the engine and writes its block of
``docs/results.md`` (``python -m repro.results``). Not part of the installed package."""
