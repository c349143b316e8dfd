"""The daemon: its queue (``store``), one job from plan to push (``jobs``, ``workspace``,
``publish``, ``retry``), and its life (``lifecycle``, ``notify``, ``logs``, ``metrics``).
"""
