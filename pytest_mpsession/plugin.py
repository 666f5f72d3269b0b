"""pytest glue for pytest-mpsession: options, fixtures, markers and report hooks.

Hooks and fixtures only; the work is delegated to the session core.
"""
