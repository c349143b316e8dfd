"""The pure core: read run records, index history, decide what is stale and in which order.

Synchronous and free of asyncio and HTTP, so `rerund plan` imports only this
(and ``rerund.errors``). Nothing here imports from the rest of the package.
"""
