"""The ``rerund`` command line (``main``) and its client for a running daemon (``client``)."""
