"""How rerund hears about pushes: webhooks, the post-receive hook spool, and a watcher."""
