"""Drills: failures injected under load, and what callers saw (:mod:`.heal`, ``loadtest heal-drill``)."""
