"""Running steps: one step in a work tree (``execute``), a plan in order (``replay``),
a plan as a shell script (``script``), and the executor backends (``local``).
"""
