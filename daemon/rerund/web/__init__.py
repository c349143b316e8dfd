"""The daemon's HTTP side: webhooks and the JSON API. It sees the daemon only through
the narrow ``api.Daemon`` interface.
"""
