"""rerund: keeps DataLad datasets fresh by rerunning stale run records."""

__version__ = "0.1.0"
